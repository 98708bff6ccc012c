//! What travels to RabbitMQ: the routing key of each topic (the module doc of `amqp` says why
//! they look as they do) and the body of a message, a small header naming its exact topic and
//! origin before the frame.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::SPELLED;
use crate::broker::{Envelope, Topic};
use crate::ids::{ChannelId, ConnId, DocId, NodeId, RoomId, UserId};

/// The routing key of `topic`: where its publications go, and what a binding for it (a
/// pattern's wildcard included) takes.
pub(super) fn routing_key(topic: &Topic) -> String {
    match topic {
        Topic::Broadcast => "b".to_owned(),
        Topic::Room(room) => format!("r.{:016x}", fnv1a(room.as_str())),
        Topic::User(user) => format!("u.{:016x}", fnv1a(user.as_str())),
        Topic::Document(doc) => format!("d.{:016x}", fnv1a(doc.as_str())),
        Topic::Connection(conn) => format!("k.{conn}"),
        Topic::Channel(channel) => {
            let name = channel.as_str();
            let mut key = spelled(name);
            if name.len() <= SPELLED {
                key.push('_');
            } else {
                let _ = write!(key, "~{:016x}", fnv1a(name));
            }
            key
        }
        Topic::ChannelPattern(prefix) => spelled(prefix.prefix()) + "#",
    }
}

/// `c.` then one hex word per byte of the first [`SPELLED`] bytes of `name`, each followed by
/// `.`.
fn spelled(name: &str) -> String {
    let mut key = String::with_capacity(2 + SPELLED * 3 + 18);
    key.push_str("c.");
    for byte in name.bytes().take(SPELLED) {
        let _ = write!(key, "{byte:02x}.");
    }
    key
}

/// 64-bit FNV-1a: the same on every node and every version.
fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A message's body: the origin's length (one byte) and id, the topic's length (two bytes,
/// big-endian) and [`topic_name`], then the frame.
pub(super) fn encode(origin: &NodeId, envelope: &Envelope) -> Bytes {
    let origin = origin.as_str().as_bytes();
    let origin = &origin[..origin.len().min(255)];
    let topic = topic_name(&envelope.topic);
    let topic = &topic.as_bytes()[..topic.len().min(usize::from(u16::MAX))];
    let mut out = BytesMut::with_capacity(3 + origin.len() + topic.len() + envelope.frame.len());
    out.put_u8(origin.len() as u8);
    out.put_slice(origin);
    out.put_u16(topic.len() as u16);
    out.put_slice(topic);
    out.put_slice(&envelope.frame);
    out.freeze()
}

/// A topic as a kind letter and its name: `b`, `rNAME`, `uNAME`, `cNAME`, `dNAME`, `kID`.
fn topic_name(topic: &Topic) -> String {
    match topic {
        Topic::Broadcast => "b".to_owned(),
        Topic::Room(room) => format!("r{room}"),
        Topic::User(user) => format!("u{user}"),
        Topic::Channel(channel) => format!("c{channel}"),
        Topic::ChannelPattern(prefix) => format!("p{}", prefix.prefix()),
        Topic::Document(doc) => format!("d{doc}"),
        Topic::Connection(conn) => format!("k{conn}"),
    }
}

/// The origin of a body, and the rest after it; `None` if it is not one of ours. Read before
/// the topic, so that a node's own publications are dropped without parsing it.
pub(super) fn decode_origin(body: &[u8]) -> Option<(&str, &[u8])> {
    let (&origin_len, rest) = body.split_first()?;
    let origin = rest.get(..usize::from(origin_len))?;
    Some((
        std::str::from_utf8(origin).ok()?,
        &rest[usize::from(origin_len)..],
    ))
}

/// The topic after the origin ([`decode_origin`]'s rest), and the frame's start in that rest.
pub(super) fn decode_topic(rest: &[u8]) -> Option<(Topic, usize)> {
    let topic_len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    let topic = std::str::from_utf8(rest.get(2..2 + topic_len)?).ok()?;
    let (kind, name) = topic.split_at_checked(1)?;
    // Names come from other nodes, which validated them when their clients sent them.
    let topic = match kind {
        "b" if name.is_empty() => Topic::Broadcast,
        "r" => Topic::Room(RoomId::from_trusted(name)),
        "u" => Topic::User(UserId::from_trusted(name)),
        "c" => Topic::Channel(ChannelId::from_trusted(name)),
        "d" => Topic::Document(DocId::from_trusted(name)),
        "k" => Topic::Connection(ConnId::parse(name)?),
        _ => return None,
    };
    Some((topic, 2 + topic_len))
}
