-- Reads one room's members on every node (after facts.lua), with the version of each of those
-- nodes' state, in one atomic step: each node's members as of that version. Entries of a node
-- that has no state hash (its state was deleted by hand) are removed, with what they counted.
-- KEYS[1]: the room's index. ARGV[1]: the control prefix; ARGV[2]: the room.
-- Returns {versions, members}: versions = {node, version, ...}; members = {node, user,
-- count, ...}.
local control, room = ARGV[1], ARGV[2]
local versions = {}
local members = {}
local known = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local node, user = string.match(entries[i], '^([^\n]*)\n(.*)$')
  if node then
    local version = known[node]
    if version == nil then
      version = redis.call('HGET', control .. 'state:' .. node, 'version')
      known[node] = version
      if version then
        versions[#versions + 1] = node
        versions[#versions + 1] = version
      end
    end
    if version then
      members[#members + 1] = node
      members[#members + 1] = user
      members[#members + 1] = entries[i + 1]
    else
      member(control, node, room, user, tonumber(entries[i + 1]) or 0, 0)
    end
  end
end
return {versions, members}
