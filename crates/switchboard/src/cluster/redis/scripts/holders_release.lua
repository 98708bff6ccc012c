-- Releases everything a node holds (cluster/holders.rs): a dead node, a node's predecessor
-- under the same id, or a node leaving.
-- KEYS[1]: the node's index. ARGV[1]: the node id.
-- Returns the holder sets it was the last holder of.
local orphaned = {}
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('SREM', key, ARGV[1]) == 1 and redis.call('EXISTS', key) == 0 then
    orphaned[#orphaned + 1] = key
  end
end
redis.call('DEL', KEYS[1])
return orphaned
