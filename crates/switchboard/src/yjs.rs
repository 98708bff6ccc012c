//! The y-websocket wire format (DESIGN.md §8): what the `y-websocket` npm client sends and
//! expects on `/yjs/{document}`. Every WebSocket message is one binary frame holding one
//! message in lib0 encoding: a varint message type, then its body.
//!
//! | type | body |
//! |---|---|
//! | 0 sync | varint sync type (0 step 1: a state vector; 1 step 2 and 2 update: a Yjs update), then the bytes (varint length + bytes) |
//! | 1 awareness | an awareness update (varint length + bytes): varint count, then per client varint id, varint clock, JSON state as a varint-length string (`null`: removed) |
//! | 3 query-awareness | nothing: the server answers with every known awareness state |
//!
//! Type 2 (auth) is server-to-client only. This module decodes and encodes; it holds no
//! state and knows nothing of documents or connections. Nothing here panics on input.

use yrs::encoding::write::Write;

/// A message type of the y-websocket protocol.
const MESSAGE_SYNC: u8 = 0;
const MESSAGE_AWARENESS: u8 = 1;
const MESSAGE_QUERY_AWARENESS: u8 = 3;
/// A sync message's type.
const SYNC_STEP_1: u8 = 0;
const SYNC_STEP_2: u8 = 1;
const SYNC_UPDATE: u8 = 2;

/// The encoding of an update that changes nothing (no structs, no deletions).
pub(crate) const EMPTY_UPDATE: &[u8] = &[0, 0];

/// A decoded client message; its byte fields borrow from the frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    /// Sync step 1: the client's state vector; answered with step 2.
    SyncStep1(&'a [u8]),
    /// Sync step 2: what the client has that the server's state vector lacks.
    SyncStep2(&'a [u8]),
    /// An update the client made.
    Update(&'a [u8]),
    /// Awareness states of the client's document instances.
    Awareness(Vec<AwarenessEntry<'a>>),
    /// A request for every known awareness state.
    QueryAwareness,
}

/// One client's awareness state in an awareness update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AwarenessEntry<'a> {
    /// The Yjs client id of the document instance the state is about.
    pub(crate) client: u64,
    /// Grows with every change of that client's state.
    pub(crate) clock: u64,
    /// The state as JSON; `null` when the client's state was removed.
    pub(crate) state: &'a str,
}

impl AwarenessEntry<'_> {
    /// The state was removed (the client left).
    pub(crate) fn is_removal(&self) -> bool {
        self.state == "null"
    }
}

/// Why a binary message is not a y-websocket message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The message ends inside a field, or a varint is longer than 64 bits.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A message type this server does not know (or that only a server sends).
    #[error("unknown message type {0}")]
    UnknownType(u64),
    /// A sync message of a type other than step 1, step 2 or update.
    #[error("unknown sync message type {0}")]
    UnknownSyncType(u64),
}

/// A lib0 reader over a message whose fields borrow from the message itself.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// An unsigned varint: 7 bits a byte, least significant first, at most 64 bits.
    fn var(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for (index, &byte) in self.0.iter().enumerate().take(10) {
            let bits = u64::from(byte & 0x7f);
            if index == 9 && bits > 1 {
                break;
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                self.0 = &self.0[index + 1..];
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed(if self.0.len() < 10 {
            "truncated"
        } else {
            "invalid varint"
        }))
    }

    /// Bytes prefixed with their length as a varint.
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.var()?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.0.len() {
            return Err(DecodeError::Malformed("truncated"));
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(bytes)
    }

    /// A UTF-8 string prefixed with its length in bytes as a varint.
    fn string(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|_| DecodeError::Malformed("invalid UTF-8 in a string"))
    }
}

/// Decodes one client message. Bytes after the message are ignored, as the reference server
/// does.
pub(crate) fn decode(frame: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut reader = Reader(frame);
    match reader.var()? {
        k if k == u64::from(MESSAGE_SYNC) => {
            let sync = reader.var()?;
            let body = reader.bytes()?;
            match sync {
                s if s == u64::from(SYNC_STEP_1) => Ok(Message::SyncStep1(body)),
                s if s == u64::from(SYNC_STEP_2) => Ok(Message::SyncStep2(body)),
                s if s == u64::from(SYNC_UPDATE) => Ok(Message::Update(body)),
                other => Err(DecodeError::UnknownSyncType(other)),
            }
        }
        k if k == u64::from(MESSAGE_AWARENESS) => {
            let update = reader.bytes()?;
            Ok(Message::Awareness(decode_awareness(update)?))
        }
        k if k == u64::from(MESSAGE_QUERY_AWARENESS) => Ok(Message::QueryAwareness),
        other => Err(DecodeError::UnknownType(other)),
    }
}

/// Most entries one awareness update may carry: a client sends its own state (one entry);
/// a larger count is refused before anything is allocated for it.
const MAX_AWARENESS_ENTRIES: u64 = 1024;

fn decode_awareness(update: &[u8]) -> Result<Vec<AwarenessEntry<'_>>, DecodeError> {
    let mut reader = Reader(update);
    let count = reader.var()?;
    if count > MAX_AWARENESS_ENTRIES {
        return Err(DecodeError::Malformed("too many awareness entries"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let client = reader.var()?;
        let clock = reader.var()?;
        let state = reader.string()?;
        entries.push(AwarenessEntry {
            client,
            clock,
            state,
        });
    }
    Ok(entries)
}

/// Sync step 1 carrying `state_vector` (encoded).
pub(crate) fn sync_step1(state_vector: &[u8]) -> Vec<u8> {
    sync_message(SYNC_STEP_1, state_vector)
}

/// Sync step 2 carrying `update` (encoded).
pub(crate) fn sync_step2(update: &[u8]) -> Vec<u8> {
    sync_message(SYNC_STEP_2, update)
}

/// An update message carrying `update` (encoded).
pub(crate) fn update(update: &[u8]) -> Vec<u8> {
    sync_message(SYNC_UPDATE, update)
}

fn sync_message(sync: u8, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(body.len() + 8);
    message.write_u8(MESSAGE_SYNC);
    message.write_u8(sync);
    message.write_buf(body);
    message
}

/// An awareness message carrying `entries`.
pub(crate) fn awareness<'a>(entries: impl ExactSizeIterator<Item = AwarenessEntry<'a>>) -> Vec<u8> {
    let mut update = Vec::new();
    update.write_var(entries.len() as u64);
    for entry in entries {
        update.write_var(entry.client);
        update.write_var(entry.clock);
        update.write_string(entry.state);
    }
    let mut message = Vec::with_capacity(update.len() + 6);
    message.write_u8(MESSAGE_AWARENESS);
    message.write_buf(&update);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_messages_round_trip() {
        assert_eq!(
            decode(&sync_step1(&[1, 2])),
            Ok(Message::SyncStep1(&[1, 2]))
        );
        assert_eq!(decode(&sync_step2(&[3])), Ok(Message::SyncStep2(&[3])));
        assert_eq!(
            decode(&update(EMPTY_UPDATE)),
            Ok(Message::Update(EMPTY_UPDATE))
        );
        assert_eq!(decode(&[3]), Ok(Message::QueryAwareness));
    }

    #[test]
    fn awareness_round_trips_and_knows_a_removal() {
        let entries = [
            AwarenessEntry {
                client: 4_000_000_000,
                clock: 7,
                state: r#"{"user":{"name":"ana"}}"#,
            },
            AwarenessEntry {
                client: 5,
                clock: 300,
                state: "null",
            },
        ];
        let encoded = awareness(entries.iter().copied());
        let Ok(Message::Awareness(decoded)) = decode(&encoded) else {
            panic!("not an awareness message");
        };
        assert_eq!(decoded, entries);
        assert!(!decoded[0].is_removal());
        assert!(decoded[1].is_removal());
    }

    #[test]
    fn truncated_and_unknown_messages_are_errors() {
        let whole = sync_step2(&[1, 2, 3, 4]);
        for end in 0..whole.len() {
            assert!(
                matches!(decode(&whole[..end]), Err(DecodeError::Malformed(_))),
                "{:?}",
                &whole[..end]
            );
        }
        // A varint whose continuation bit never ends, and one past 64 bits.
        assert_eq!(
            decode(&[0x80; 16]),
            Err(DecodeError::Malformed("invalid varint"))
        );
        let mut past_64_bits = vec![0xff; 9];
        past_64_bits.push(0x02);
        assert_eq!(
            decode(&past_64_bits),
            Err(DecodeError::Malformed("invalid varint"))
        );
        // The largest varint there is.
        let mut largest = Vec::new();
        largest.write_var(u64::MAX);
        assert_eq!(decode(&largest), Err(DecodeError::UnknownType(u64::MAX)));
        assert_eq!(decode(&[2, 0]), Err(DecodeError::UnknownType(2)));
        assert_eq!(decode(&[9]), Err(DecodeError::UnknownType(9)));
        assert_eq!(decode(&[0, 3, 0]), Err(DecodeError::UnknownSyncType(3)));
        // An awareness update that claims more entries than it holds.
        assert!(matches!(decode(&[1, 1, 5]), Err(DecodeError::Malformed(_))));
        // One that claims more than any client sends.
        let mut huge = vec![1u8];
        let mut body = Vec::new();
        body.write_var(1_000_000u64);
        huge.write_buf(&body);
        assert_eq!(
            decode(&huge),
            Err(DecodeError::Malformed("too many awareness entries"))
        );
        // A state that is not UTF-8.
        let mut bad = Vec::new();
        bad.write_var(1u64);
        bad.write_var(1u64);
        bad.write_var(1u64);
        bad.write_buf([0xff]);
        let mut message = vec![1u8];
        message.write_buf(&bad);
        assert!(matches!(decode(&message), Err(DecodeError::Malformed(_))));
    }
}
