-- Releases one page of what a node holds (cluster/holders.rs): a dead node, a node's
-- predecessor under the same id, or a node leaving. The caller repeats it, cursor after
-- cursor, so that Redis serves other clients between pages of a large node.
-- KEYS[1]: the node's index. ARGV[1]: the node id; ARGV[2]: the scan's cursor (0 to start);
-- ARGV[3]: the page size (a hint to SSCAN).
-- Returns the next cursor (0: done, and the index is gone), then the holder sets of the page
-- it was the last holder of.
local reply = redis.call('SSCAN', KEYS[1], ARGV[2], 'COUNT', ARGV[3])
local result = { reply[1] }
for _, key in ipairs(reply[2]) do
  if redis.call('SREM', key, ARGV[1]) == 1 and redis.call('EXISTS', key) == 0 then
    result[#result + 1] = key
  end
  redis.call('SREM', KEYS[1], key)
end
if reply[1] == '0' then
  redis.call('DEL', KEYS[1])
end
return result
