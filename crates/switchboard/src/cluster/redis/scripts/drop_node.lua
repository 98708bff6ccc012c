-- Removes a node's state (cluster/redis/room_index.rs): its entries in the room member index,
-- found through the member fields of its state hash, then the hash itself. Run for a node that
-- leaves, is reaped, or rewrites its state.
-- KEYS[1]: the node's state hash. ARGV[1]: the prefix of the index keys ("PREFIX{cluster}rm:");
-- ARGV[2]: the node id.
local fields = redis.call('HKEYS', KEYS[1])
for _, field in ipairs(fields) do
  if string.sub(field, 1, 2) == 'm:' then
    local room, user = string.match(field, '^m:([^\n]*)\n(.*)$')
    if room then
      redis.call('HDEL', ARGV[1] .. room, ARGV[2] .. '\n' .. user)
    end
  end
end
redis.call('DEL', KEYS[1])
return #fields
