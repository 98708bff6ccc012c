-- Removes a node's state and everything derived from it (after facts.lua). Run for a node that
-- leaves, is reaped, or rewrites its state.
-- KEYS[1]: the node's state hash. ARGV[1]: the control prefix; ARGV[2]: the node id.
local state, control, node = KEYS[1], ARGV[1], ARGV[2]
local fields = redis.call('HGETALL', state)
for i = 1, #fields, 2 do
  fact(control, node, fields[i], tonumber(fields[i + 1]) or 0, 0)
end
redis.call('DEL', state)
return #fields / 2
