-- What the state store derives from the nodes' facts (cluster/redis/indexes.rs), shared by the
-- scripts that change them: this text is put before each of their bodies. A fact is a field of
-- a node's state hash, named by the prefixes of keys.rs: `u:USER` (connections),
-- `m:ROOM\nUSER` (connections in the room), `c:CHANNEL` (1: subscribed); absent is 0.
-- Under the control prefix C (`PREFIX{cluster}`):
--   C..'rm:'..ROOM    hash NODE\nUSER -> the node's connections of the user in the room
--   C..'ru:'..ROOM    hash USER -> the user's connections in the room over every node
--   C..'rooms'        sorted set ROOM scored minus its distinct users (most first, then by name)
--   C..'users'        hash USER -> the user's connections over every node
--   C..'channels'     hash CHANNEL -> the nodes subscribed
--   C..'counts'       hash 'connections' -> connections over every node

-- Adds `delta` to a hash field; removes it when nothing is left. Returns the new total.
local function add(key, field, delta)
  local total = redis.call('HINCRBY', key, field, delta)
  if total <= 0 then
    redis.call('HDEL', key, field)
  end
  return total
end

-- `node`'s connections of `user` in `room` go from `old` to `new`.
local function member(control, node, room, user, old, new)
  local entries = control .. 'rm:' .. room
  if new > 0 then
    redis.call('HSET', entries, node .. '\n' .. user, new)
  else
    redis.call('HDEL', entries, node .. '\n' .. user)
  end
  if new == old then
    return
  end
  local after = add(control .. 'ru:' .. room, user, new - old)
  local before = after - (new - old)
  local rooms = control .. 'rooms'
  if before <= 0 and after > 0 then
    redis.call('ZINCRBY', rooms, -1, room)
  elseif before > 0 and after <= 0 then
    if tonumber(redis.call('ZINCRBY', rooms, 1, room)) >= 0 then
      redis.call('ZREM', rooms, room)
    end
  end
end

-- `node`'s fact `field` goes from `old` to `new`. Other fields (presence, version) count for
-- nothing.
local function fact(control, node, field, old, new)
  if new == old then
    return
  end
  local kind, name = string.sub(field, 1, 2), string.sub(field, 3)
  if kind == 'u:' then
    add(control .. 'users', name, new - old)
    add(control .. 'counts', 'connections', new - old)
  elseif kind == 'm:' then
    local room, user = string.match(name, '^([^\n]*)\n(.*)$')
    if room then
      member(control, node, room, user, old, new)
    end
  elseif kind == 'c:' then
    add(control .. 'channels', name, new - old)
  end
end
