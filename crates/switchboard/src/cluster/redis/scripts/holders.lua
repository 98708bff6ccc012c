-- Applies one node's holding changes in order (cluster/holders.rs).
-- KEYS[1]: the node's index (the set of holder sets it is in); KEYS[2..]: holder sets.
-- ARGV[1]: the node id; ARGV[2..]: "+" (gained) or "-" (lost), one per holder set.
-- Returns one integer per change: 1 when it took the set from empty to this node (the
-- cluster's first holder) or from this node to empty (the last), else 0.
local node = ARGV[1]
local decided = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local first_or_last = 0
  if ARGV[i] == '+' then
    if redis.call('SADD', key, node) == 1 then
      redis.call('SADD', KEYS[1], key)
      if redis.call('SCARD', key) == 1 then first_or_last = 1 end
    end
  elseif redis.call('SREM', key, node) == 1 then
    redis.call('SREM', KEYS[1], key)
    if redis.call('EXISTS', key) == 0 then first_or_last = 1 end
  end
  decided[i - 1] = first_or_last
end
return decided
