-- Reads a stream (DESIGN.md §7): its epoch, latest offset and kept messages.
-- KEYS[1]: the stream's meta hash; KEYS[2]: its Redis stream.
-- ARGV[1]: the epoch to start if the stream has none; ARGV[2]: ms the meta is kept.
-- Returns {epoch, latest offset, [[id, [t, ms, x, conn, j, json]], ...]}.
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local top = redis.call('HGET', KEYS[1], 's')
return {epoch, top, redis.call('XRANGE', KEYS[2], '-', '+')}
