-- Removes one page of a dead node's state fields and what they counted (after facts.lua): the
-- reaper calls it, cursor after cursor, until the scan is done, so that Redis serves other
-- clients between pages of a large state; `drop_facts.lua` then removes whatever is left.
-- KEYS[1]: the node's state hash. ARGV[1]: the control prefix; ARGV[2]: the node id;
-- ARGV[3]: the scan's cursor (0 to start); ARGV[4]: the page size (a hint to HSCAN).
-- Returns the next cursor (0: the scan is done).
local state, control, node = KEYS[1], ARGV[1], ARGV[2]
local reply = redis.call('HSCAN', state, ARGV[3], 'COUNT', ARGV[4])
local page = reply[2]
for i = 1, #page, 2 do
  fact(control, node, page[i], tonumber(page[i + 1]) or 0, 0)
  redis.call('HDEL', state, page[i])
end
return reply[1]
