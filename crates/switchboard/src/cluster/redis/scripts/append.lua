-- Numbers, keeps and publishes one message of a stream (DESIGN.md §7), atomically.
-- KEYS[1]: the stream's meta hash (e: epoch, s: latest offset); KEYS[2]: its Redis stream.
-- ARGV[1], ARGV[2]: the frame's JSON before and after its `"offset":N,` field;
-- ARGV[3]: most messages kept; ARGV[4]: ms the messages are kept; ARGV[5]: ms the meta is
-- kept; ARGV[6]: now (ms since the epoch); ARGV[7]: the epoch to start if the stream has none;
-- ARGV[8]: the pub/sub channel ('' when another broker carries it: not published here);
-- ARGV[9]: the connection that must not receive it ('' if none); ARGV[10]: PUBLISH, or
-- SPUBLISH for a sharded channel (keys.rs), which shares the keys' slot.
-- Returns {offset, epoch}.
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  -- No meta: the stream's history is lost (or never was): start a new epoch.
  epoch = ARGV[7]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 's', 1)
local json = ARGV[1] .. '"offset":' .. offset .. ',' .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], offset .. '-0', 't', ARGV[6], 'x', ARGV[9], 'j', json)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if ARGV[8] ~= '' then
  redis.call(ARGV[10], ARGV[8], '\2' .. epoch .. '\n' .. offset .. '\n' .. ARGV[9] .. '\n' .. json)
end
return {offset, epoch}
