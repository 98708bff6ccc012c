//! The Redis cluster as the store of streams (DESIGN.md §7, [`StreamStore`]): one script
//! numbers a message, appends it to the stream's capped Redis stream and publishes it, so every
//! node shows the same offset for the same message; another reads a stream back.
//!
//! Keys: `PREFIXsm:r:{ROOM}` / `PREFIXsm:c:{CHANNEL}` (meta hash: `e` the epoch, `s` the
//! latest offset) and `PREFIXs:r:{ROOM}` / `PREFIXs:c:{CHANNEL}` (the Redis stream, entry id
//! `OFFSET-0`, fields `t` ms since the epoch, `x` the connection that must not receive it,
//! `j` the frame's JSON). Messages expire after the history's age limit, and the stream keeps
//! at most the history's size; the meta outlives them ([`META_TTL`]) so that offsets go on
//! where they were rather than starting a new epoch after a quiet hour.
//!
//! Both keys and the topic's channel share the stream's hash tag, so the script touches one
//! slot of a Redis Cluster; there a room's message goes out with `SPUBLISH` (`keys.rs`).
//!
//! Published messages use envelope version 2 on the topic's pub/sub channel:
//! `\x02 EPOCH \n OFFSET \n EXCEPT \n JSON`, which every node delivers, the publishing one
//! included (its own copy is how it learns the order). With another broker (`external.rs`)
//! the script only numbers and keeps the message; the node publishes that same envelope
//! through the broker once Redis has answered.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use tokio_util::sync::CancellationToken;

use super::conn::Conn;
use super::keys::Keys;
use super::{Shared, tasks};
use crate::broker::{StreamMessage, Topic};
use crate::ids::{ConnId, StreamId};
use crate::store::{Append, ReadDone, StoreError, StoredMessage, StoredStream};

/// How long a stream's meta (epoch and latest offset) outlives its last message or read.
pub(super) const META_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Version byte of a stream message's envelope.
const STREAM_ENVELOPE: u8 = 2;

/// The cluster's scripts: the two of streams, and the compaction of a document's log
/// (`docs.rs`).
pub(super) struct Scripts {
    append: redis::Script,
    read: redis::Script,
    pub(super) doc_compact: redis::Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            append: redis::Script::new(include_str!("scripts/append.lua")),
            read: redis::Script::new(include_str!("scripts/read.lua")),
            doc_compact: redis::Script::new(include_str!("scripts/doc_compact.lua")),
        }
    }

    /// Loads both into Redis's script cache (on a fresh connection, or after `NOSCRIPT`).
    pub(super) async fn load(&self, connection: &mut Conn) -> redis::RedisResult<()> {
        self.append.load_async(connection).await?;
        self.read.load_async(connection).await?;
        Ok(())
    }
}

impl Keys {
    /// The meta hash and the Redis stream of a stream.
    fn stream_keys(&self, stream: &StreamId) -> (String, String) {
        let (kind, name) = match stream {
            StreamId::Room(room) => ("r", room.as_str()),
            StreamId::Channel(channel) => ("c", channel.as_str()),
        };
        (
            format!("{}sm:{kind}:{{{name}}}", self.prefix()),
            format!("{}s:{kind}:{{{name}}}", self.prefix()),
        )
    }
}

/// The pub/sub topic a stream's messages are published on.
pub(super) fn topic(stream: &StreamId) -> Topic {
    match stream {
        StreamId::Room(room) => Topic::Room(room.clone()),
        StreamId::Channel(channel) => Topic::Channel(channel.clone()),
    }
}

/// A new epoch, for a stream the store has no meta of.
fn new_epoch() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// Adds an append to a pipeline; its reply is the offset (see [`appended`]).
pub(super) fn add_append(shared: &Shared, pipe: &mut redis::Pipeline, append: &Append) {
    let (meta, stream) = shared.keys.stream_keys(&append.stream);
    let channel = match shared.external {
        Some(_) => String::new(),
        None => shared.keys.channel(&topic(&append.stream)),
    };
    let except = append.except.map(|id| id.to_string()).unwrap_or_default();
    let command = if shared.keys.is_sharded(&channel) {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    pipe.cmd("EVALSHA")
        .arg(shared.scripts.append.get_hash())
        .arg(2)
        .arg(meta)
        .arg(stream)
        .arg(&append.head)
        .arg(&append.tail)
        .arg(shared.history.size)
        .arg(shared.history.ttl.as_millis() as u64)
        .arg(META_TTL.as_millis() as u64)
        .arg(crate::protocol::now_ms())
        .arg(new_epoch())
        .arg(channel)
        .arg(except)
        .arg(command);
}

/// Sends `pipe` (which holds `appends`, in order, among writes whose replies are ignored) and
/// calls each append's callback with its offset, or with the failure. Redis may have lost the
/// scripts (a restart behind the connection manager's back): then they are loaded again and
/// the appends Redis refused for that are run once more, on their own.
pub(super) async fn finish_appends(
    shared: &Shared,
    connection: &mut Conn,
    mut pipe: redis::Pipeline,
    appends: Vec<Append>,
) -> redis::RedisResult<()> {
    let again = answer(
        shared,
        appends,
        pipe.ignore_errors().query_async(connection).await,
    )?;
    if again.is_empty() {
        return Ok(());
    }
    if let Err(error) = shared.scripts.load(connection).await {
        for append in again {
            append.fail(StoreError::Unavailable);
        }
        return Err(error);
    }
    let mut retry = redis::pipe();
    retry.ignore_errors();
    for append in &again {
        add_append(shared, &mut retry, append);
    }
    for append in answer(shared, again, retry.query_async(connection).await)? {
        append.fail(StoreError::Failed("the append script is missing".into()));
    }
    Ok(())
}

/// Calls each append's callback with its reply (with another broker, after publishing the
/// message through it); returns the ones Redis refused for want of the script (not called
/// yet). A failed query fails them all. So does a `READONLY` reply from a Redis Cluster (a
/// master turned replica under a stale slot map), which is returned as the error so that the
/// publisher connects afresh.
pub(super) fn answer(
    shared: &Shared,
    appends: Vec<Append>,
    replies: redis::RedisResult<Vec<Value>>,
) -> redis::RedisResult<Vec<Append>> {
    let replies = match replies {
        Ok(replies) => replies,
        Err(error) => {
            for append in appends {
                append.fail(StoreError::Unavailable);
            }
            return Err(error);
        }
    };
    let mut again = Vec::new();
    let mut stale = None;
    let mut replies = replies.into_iter();
    for append in appends {
        match replies.next() {
            Some(reply) if is_noscript(&reply) => again.push(append),
            Some(Value::ServerError(error))
                if shared.keys.is_cluster() && error.code() == "READONLY" =>
            {
                append.fail(StoreError::Unavailable);
                stale = Some(error);
            }
            Some(reply) => match appended(reply) {
                Ok((offset, epoch)) => {
                    if let Some(external) = &shared.external {
                        external.appended(&shared.node, &append, offset, &epoch);
                    }
                    (append.done)(Ok(offset));
                }
                Err(error) => append.fail(error),
            },
            None => append.fail(StoreError::Failed("no reply".into())),
        }
    }
    if let Some(error) = stale {
        for append in again {
            append.fail(StoreError::Unavailable);
        }
        return Err(error.into());
    }
    Ok(again)
}

/// Whether a pipeline reply is Redis saying it does not have the script.
fn is_noscript(value: &Value) -> bool {
    matches!(value, Value::ServerError(error) if error.code() == "NOSCRIPT")
}

/// The offset and epoch in an append's reply.
fn appended(value: Value) -> Result<(u64, String), StoreError> {
    match value {
        Value::Array(_) => {
            redis::from_redis_value(value).map_err(|e| StoreError::Failed(Box::new(e)))
        }
        Value::ServerError(error) => {
            Err(StoreError::Failed(Box::new(redis::RedisError::from(error))))
        }
        other => Err(StoreError::Failed(
            format!("unexpected append reply {other:?}").into(),
        )),
    }
}

/// Reads a stream once the subscriber is in step with every subscription made before the
/// call (so nothing published after the read is missed), retrying with backoff while Redis is
/// unreachable; gives up only when the node shuts down.
pub(super) async fn read(
    shared: Arc<Shared>,
    stream: StreamId,
    done: ReadDone,
    cancel: CancellationToken,
) {
    let (meta, key) = shared.keys.stream_keys(&stream);
    let mut backoff = tasks::Backoff::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return done(Err(StoreError::Unavailable)),
            () = shared.in_step() => {}
        }
        if let Some(mut connection) = shared.connection() {
            let mut invocation = shared.scripts.read.prepare_invoke();
            invocation
                .key(&meta)
                .key(&key)
                .arg(new_epoch())
                .arg(META_TTL.as_millis() as u64);
            match invocation.invoke_async::<Value>(&mut connection).await {
                Ok(value) => return done(parse_read(value)),
                Err(error) => tracing::debug!(%error, "reading a stream failed; retrying"),
            }
        }
        backoff.wait(&shared, &cancel).await;
    }
}

/// Parses the read script's reply.
fn parse_read(value: Value) -> Result<StoredStream, StoreError> {
    let malformed = || StoreError::Failed("malformed stream read".into());
    let Value::Array(mut parts) = value else {
        return Err(malformed());
    };
    if parts.len() != 3 {
        return Err(malformed());
    }
    let entries = parts.pop().ok_or_else(malformed)?;
    let top: u64 = redis::from_redis_value(parts.pop().ok_or_else(malformed)?)
        .map_err(|e| StoreError::Failed(Box::new(e)))?;
    let epoch: String = redis::from_redis_value(parts.pop().ok_or_else(malformed)?)
        .map_err(|e| StoreError::Failed(Box::new(e)))?;
    let Value::Array(entries) = entries else {
        return Err(malformed());
    };
    let messages = entries.into_iter().filter_map(parse_entry).collect();
    Ok(StoredStream {
        epoch,
        top,
        messages,
    })
}

/// One `[id, [field, value, …]]` entry; `None` if it does not parse.
fn parse_entry(entry: Value) -> Option<StoredMessage> {
    let (id, fields): (String, Vec<(String, Vec<u8>)>) = redis::from_redis_value(entry).ok()?;
    let offset = id.split_once('-')?.0.parse().ok()?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_slice())
    };
    Some(StoredMessage {
        offset,
        at_ms: std::str::from_utf8(field("t")?).ok()?.parse().ok()?,
        json: Bytes::copy_from_slice(field("j")?),
        except: std::str::from_utf8(field("x")?)
            .ok()
            .and_then(ConnId::parse),
    })
}

/// Encodes a stream message as the append script publishes it, for another broker.
pub(super) fn encode(epoch: &str, offset: u64, except: Option<ConnId>, json: &[u8]) -> Bytes {
    let except = except.map(|id| id.to_string()).unwrap_or_default();
    let head = format!("{epoch}\n{offset}\n{except}\n");
    let mut out = Vec::with_capacity(1 + head.len() + json.len());
    out.push(STREAM_ENVELOPE);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(json);
    Bytes::from(out)
}

/// Decodes a stream message published on the pub/sub channel of `topic`; `None` if `payload`
/// is not one. Borrows the topic, as most payloads are publications, not stream messages.
pub(super) fn decode(topic: &Topic, payload: &[u8]) -> Option<StreamMessage> {
    let [STREAM_ENVELOPE, rest @ ..] = payload else {
        return None;
    };
    let mut parts = rest.splitn(4, |byte| *byte == b'\n');
    let epoch = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let offset = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let except = std::str::from_utf8(parts.next()?)
        .ok()
        .and_then(ConnId::parse);
    let json = Bytes::copy_from_slice(parts.next()?);
    let stream = match topic {
        Topic::Room(room) => StreamId::Room(room.clone()),
        Topic::Channel(channel) => StreamId::Channel(channel.clone()),
        _ => return None,
    };
    Some(StreamMessage {
        stream,
        epoch,
        offset,
        json,
        except,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RoomId;

    #[test]
    fn stream_envelopes_decode_and_other_payloads_do_not() {
        let room = RoomId::from_trusted("general");
        let payload = b"\x02e1\n42\n\n{\"type\":\"message\",\"offset\":42}";
        let message = decode(&Topic::Room(room.clone()), payload).unwrap();
        assert_eq!(message.stream, StreamId::Room(room.clone()));
        assert_eq!((message.epoch.as_str(), message.offset), ("e1", 42));
        assert_eq!(message.except, None);
        assert_eq!(&message.json[..], b"{\"type\":\"message\",\"offset\":42}");
        let except = b"\x02e1\n7\n00000000000000ff\n{}";
        let message = decode(&Topic::Room(room.clone()), except).unwrap();
        assert_eq!(
            message.except.map(|id| id.to_string()).as_deref(),
            Some("00000000000000ff")
        );
        assert!(decode(&Topic::Room(room.clone()), b"\x01\x01nframe").is_none());
        assert!(decode(&Topic::Room(room), b"\x02e1\nnot-a-number\n\n{}").is_none());
        assert!(decode(&Topic::Broadcast, payload).is_none());
    }

    #[test]
    fn encoded_stream_messages_are_what_the_script_publishes() {
        let json = b"{\"type\":\"message\",\"offset\":42}";
        assert_eq!(
            &encode("e1", 42, None, json)[..],
            b"\x02e1\n42\n\n{\"type\":\"message\",\"offset\":42}"
        );
        let except = ConnId::parse("00000000000000ff");
        let room = Topic::Room(RoomId::from_trusted("general"));
        let message = decode(&room, &encode("e2", 7, except, b"{}")).unwrap();
        assert_eq!((message.epoch.as_str(), message.offset), ("e2", 7));
        assert_eq!(message.except, except);
        assert_eq!(&message.json[..], b"{}");
    }

    #[test]
    fn stream_keys_are_prefixed_and_apart_from_other_keys() {
        let keys = Keys::new("sb:", true);
        let room = StreamId::Room(RoomId::from_trusted("a:b"));
        assert_eq!(
            keys.stream_keys(&room),
            ("sb:sm:r:{a:b}".to_owned(), "sb:s:r:{a:b}".to_owned())
        );
    }
}
