-- Sets facts of a node (after facts.lua), each from the value its state hash holds now: run
-- before the hash's own writes, in the same transaction.
-- KEYS[1]: the node's state hash. ARGV[1]: the control prefix; ARGV[2]: the node id; then
-- pairs of a field and its new count (0: removed).
local state, control, node = KEYS[1], ARGV[1], ARGV[2]
for i = 3, #ARGV - 1, 2 do
  local field = ARGV[i]
  local old = tonumber(redis.call('HGET', state, field) or 0) or 0
  fact(control, node, field, old, tonumber(ARGV[i + 1]) or 0)
end
return 0
