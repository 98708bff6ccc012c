-- Replaces the first ARGV[2] entries of a document's update log with ARGV[3] (their merge),
-- unless another compaction ran since they were read: the log's compaction count (KEYS[2])
-- must still be ARGV[1]. Entries appended after the read stay behind the merge.
-- KEYS[1]: the log (a list); KEYS[2]: its compaction count.
-- Returns 1 when the log was compacted, 0 when it changed under the reader.
local count = redis.call('GET', KEYS[2]) or '0'
if count ~= ARGV[1] then
  return 0
end
local read = tonumber(ARGV[2])
if redis.call('LLEN', KEYS[1]) < read then
  return 0
end
redis.call('LTRIM', KEYS[1], read, -1)
redis.call('LPUSH', KEYS[1], ARGV[3])
redis.call('INCR', KEYS[2])
return 1
