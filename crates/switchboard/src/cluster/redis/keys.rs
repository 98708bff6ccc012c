//! Names and encodings in Redis: pub/sub channel per topic, keys per node, the envelope of a
//! publication, and the fields of a node's state hash. Every name starts with the configured
//! prefix, so several clusters can share one Redis.
//!
//! Hash tags, so that each script and pipeline touches one slot of a Redis Cluster (the same
//! layout serves one Redis): a topic's channel and a stream's or document's keys end in
//! `{NAME}` (`PREFIXr:{general}`, `PREFIXs:r:{general}`), so a room's keys and channel share
//! the slot of its name; the membership state (node set, liveness, state hashes, reap locks,
//! holder sets and their indexes) and the cluster event channel carry `{cluster}`, one slot,
//! since its scripts and transactions span nodes and rooms. Names cannot contain braces
//! (`ids.rs`), and the prefix may not with a Redis Cluster, so the tag is exactly the name.
//!
//! Sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, with `--redis-cluster` only): the channels of
//! rooms, users, documents and connections. Broadcasts, pub/sub channels (so that patterns,
//! which only classic pub/sub has, still match them) and the event channel stay classic.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use crate::broker::Topic;
use crate::cluster::{Snapshot, Version};
use crate::ids::{ChannelId, ChannelPrefix, ConnId, DocId, MAX_NAME_CHARS, NodeId, RoomId, UserId};
use crate::presence::Presence;

/// Version byte of the publication envelope.
const ENVELOPE_VERSION: u8 = 1;

/// Redis names for one cluster prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
    /// Rooms, users, documents and connections use sharded pub/sub (a Redis Cluster).
    sharded: bool,
    /// The channel of membership events, named once: the subscriber compares every message's
    /// channel with it.
    events: String,
}

/// The hash tag of the membership state.
const CONTROL_TAG: &str = "{cluster}";

impl Keys {
    pub(super) fn new(prefix: &str, sharded: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            sharded,
            events: format!("{prefix}{CONTROL_TAG}events"),
        }
    }

    /// The prefix every name starts with.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether these are the names of a Redis Cluster's node (sharded pub/sub).
    pub(super) fn is_cluster(&self) -> bool {
        self.sharded
    }

    /// The prefix of the membership state's names, with its hash tag.
    pub(super) fn control(&self) -> String {
        format!("{}{CONTROL_TAG}", self.prefix)
    }

    /// The pub/sub channel of a topic (patterns: see [`Keys::pattern`]).
    pub(super) fn channel(&self, topic: &Topic) -> String {
        let p = &self.prefix;
        match topic {
            Topic::Broadcast => format!("{p}b"),
            Topic::Room(room) => format!("{p}r:{{{room}}}"),
            Topic::User(user) => format!("{p}u:{{{user}}}"),
            Topic::Channel(channel) => format!("{p}c:{{{channel}}}"),
            Topic::ChannelPattern(prefix) => self.pattern(prefix),
            Topic::Document(doc) => format!("{p}d:{{{doc}}}"),
            Topic::Connection(conn) => format!("{p}k:{{{conn}}}"),
        }
    }

    /// What decides the slot of a name: its hash tag, or the whole name when it has none (as
    /// Redis Cluster reads it).
    pub(super) fn hash_tag(name: &str) -> &str {
        name.split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(tag, _)| tag)
            .filter(|tag| !tag.is_empty())
            .unwrap_or(name)
    }

    /// Whether a channel this module named is a sharded one (`SPUBLISH`/`SSUBSCRIBE`).
    pub(super) fn is_sharded(&self, channel: &str) -> bool {
        self.sharded
            && channel
                .strip_prefix(&self.prefix)
                .and_then(|rest| rest.split_once(':'))
                .is_some_and(|(kind, _)| matches!(kind, "r" | "u" | "d" | "k"))
    }

    /// The `PSUBSCRIBE` pattern of a channel pattern. Names cannot contain glob characters,
    /// and the prefix is checked for them at start, so nothing needs escaping (`{` is not
    /// one).
    pub(super) fn pattern(&self, prefix: &ChannelPrefix) -> String {
        format!("{}c:{{{}*", self.prefix, prefix.prefix())
    }

    /// The topic a pub/sub channel carries, for channels this node subscribes to.
    pub(super) fn topic(&self, channel: &str) -> Option<Topic> {
        let rest = channel.strip_prefix(&self.prefix)?;
        if rest == "b" {
            return Some(Topic::Broadcast);
        }
        let (kind, tagged) = rest.split_once(':')?;
        let name = tagged.strip_prefix('{')?.strip_suffix('}')?;
        Some(match kind {
            "r" => Topic::Room(RoomId::parse(name, MAX_NAME_CHARS).ok()?),
            "u" => Topic::User(UserId::parse(name, MAX_NAME_CHARS).ok()?),
            "c" => Topic::Channel(ChannelId::parse(name, MAX_NAME_CHARS).ok()?),
            "d" => Topic::Document(DocId::parse(name, MAX_NAME_CHARS).ok()?),
            "k" => Topic::Connection(ConnId::parse(name)?),
            _ => return None,
        })
    }

    /// The channel of membership events.
    pub(super) fn events(&self) -> &str {
        &self.events
    }

    /// The set of node ids that have registered.
    pub(super) fn nodes(&self) -> String {
        format!("{}nodes", self.control())
    }

    /// A node's liveness key (expires unless refreshed; its value is the node's stats).
    pub(super) fn alive(&self, node: &NodeId) -> String {
        format!("{}alive:{node}", self.control())
    }

    /// A node's state hash.
    pub(super) fn state(&self, node: &NodeId) -> String {
        format!("{}state:{node}", self.control())
    }

    /// The lock a node takes to reap a dead node.
    pub(super) fn reap(&self, node: &NodeId) -> String {
        format!("{}reap:{node}", self.control())
    }
}

/// Encodes a publication: version, origin, then the frame bytes as the origin framed them.
pub(super) fn encode_envelope(origin: &NodeId, frame: &[u8]) -> Bytes {
    let origin = origin.as_str().as_bytes();
    let mut out = BytesMut::with_capacity(2 + origin.len() + frame.len());
    out.put_u8(ENVELOPE_VERSION);
    out.put_u8(origin.len().min(255) as u8);
    out.put_slice(&origin[..origin.len().min(255)]);
    out.put_slice(frame);
    out.freeze()
}

/// Decodes a publication into (origin, frame).
pub(super) fn decode_envelope(payload: &[u8]) -> Option<(&str, &[u8])> {
    let [ENVELOPE_VERSION, len, rest @ ..] = payload else {
        return None;
    };
    let len = usize::from(*len);
    let origin = std::str::from_utf8(rest.get(..len)?).ok()?;
    Some((origin, &rest[len..]))
}

/// The kinds of a node's state hash fields, each named by a prefix: `u:USER` (connections),
/// `m:ROOM\nUSER` (connections in the room), `c:CHANNEL` (subscribed), `p:USER` (presence
/// JSON). Names cannot contain a newline. The first three are the facts the store counts
/// (`scripts/facts.lua`, which names the same prefixes).
const USER: &str = "u:";
const MEMBER: &str = "m:";
const CHANNEL: &str = "c:";
const PRESENCE: &str = "p:";

pub(super) fn user_field(user: &UserId) -> String {
    format!("{USER}{user}")
}

pub(super) fn member_field(room: &RoomId, user: &UserId) -> String {
    format!("{MEMBER}{room}\n{user}")
}

pub(super) fn channel_field(channel: &str) -> String {
    format!("{CHANNEL}{channel}")
}

pub(super) fn presence_field(user: &UserId) -> String {
    format!("{PRESENCE}{user}")
}

/// Whether a state field is a fact the store counts: a user's, a member's or a channel's
/// (not a presence, nor the version).
pub(super) fn is_fact(field: &str) -> bool {
    [USER, MEMBER, CHANNEL]
        .iter()
        .any(|kind| field.starts_with(kind))
}

/// Whether two values of state field `field` say the same: equal, or two presences with the
/// same status and metadata (a presence's `lastSeen` moves with activity that announces
/// nothing, such as a join, so a node's view of it is later than what it stored).
pub(super) fn same_value(field: &str, held: &str, wanted: &str) -> bool {
    if held == wanted {
        return true;
    }
    let presence = |json| serde_json::from_str::<Presence>(json).ok();
    field.starts_with(PRESENCE)
        && presence(held)
            .zip(presence(wanted))
            .is_some_and(|(held, wanted)| held.shows_the_same(&wanted))
}

/// Every field of a snapshot, for rewriting a node's hash.
pub(super) fn snapshot_fields(snapshot: &Snapshot) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for (user, count) in &snapshot.users {
        fields.push((user_field(user), count.to_string()));
    }
    for ((room, user), count) in &snapshot.members {
        fields.push((member_field(room, user), count.to_string()));
    }
    for channel in &snapshot.channels {
        fields.push((channel_field(channel), "1".to_owned()));
    }
    for (user, presence) in &snapshot.presence {
        if let Ok(json) = serde_json::to_string(presence) {
            fields.push((presence_field(user), json));
        }
    }
    fields
}

/// The field of a node's hash holding the version of its last announcement (no `:`, so it
/// cannot be mistaken for a fact's field).
pub(super) const VERSION_FIELD: &str = "version";

/// How a version is stored in [`VERSION_FIELD`].
pub(super) fn version_value(version: Version) -> String {
    format!("{}:{}", version.instance, version.seq)
}

pub(super) fn parse_version(value: &str) -> Option<Version> {
    let (instance, seq) = value.split_once(':')?;
    Some(Version {
        instance: instance.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

/// Reads a node's hash back; fields that do not parse are skipped.
pub(super) fn parse_snapshot(fields: HashMap<String, String>) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for (field, value) in fields {
        if field == VERSION_FIELD {
            snapshot.version = parse_version(&value);
            continue;
        }
        if let Some(name) = field.strip_prefix(USER) {
            if let (Ok(user), Ok(count)) = (UserId::parse(name, MAX_NAME_CHARS), value.parse()) {
                snapshot.users.insert(user, count);
            }
        } else if let Some(name) = field.strip_prefix(MEMBER) {
            let Some((room, user)) = name.split_once('\n') else {
                continue;
            };
            if let (Ok(room), Ok(user), Ok(count)) = (
                RoomId::parse(room, MAX_NAME_CHARS),
                UserId::parse(user, MAX_NAME_CHARS),
                value.parse(),
            ) {
                snapshot.members.insert((room, user), count);
            }
        } else if let Some(name) = field.strip_prefix(CHANNEL) {
            snapshot.channels.insert(name.to_owned());
        } else if field.starts_with(PRESENCE)
            && let Ok(presence) = serde_json::from_str::<Presence>(&value)
        {
            snapshot.presence.insert(presence.user_id.clone(), presence);
        }
    }
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::Status;

    #[test]
    fn channels_round_trip_to_topics() {
        let keys = Keys::new("sb:", true);
        for topic in [
            Topic::Broadcast,
            Topic::Room(RoomId::from_trusted("general")),
            Topic::User(UserId::from_trusted("user:1")),
            Topic::Channel(ChannelId::from_trusted("event:login")),
            Topic::Document(DocId::from_trusted("notes/1")),
            Topic::Connection(ConnId::next()),
        ] {
            assert_eq!(keys.topic(&keys.channel(&topic)), Some(topic));
        }
        assert_eq!(keys.topic("other:r:{x}"), None, "another cluster's prefix");
        let prefix = ChannelPrefix::parse("room:*", 64).unwrap();
        assert_eq!(keys.pattern(&prefix), "sb:c:{room:*");
        let channel = keys.channel(&Topic::Channel(ChannelId::from_trusted("room:1")));
        assert!(
            redis_glob(&keys.pattern(&prefix), &channel),
            "the pattern matches the channel"
        );
    }

    /// Redis's glob for patterns of a prefix and `*`, the only form [`Keys::pattern`] writes.
    fn redis_glob(pattern: &str, channel: &str) -> bool {
        let literal = pattern.strip_suffix('*').unwrap();
        channel.starts_with(literal)
    }

    #[test]
    fn hash_tags_are_read_as_redis_cluster_reads_them() {
        let keys = Keys::new("sb:", true);
        let room = Topic::Room(RoomId::from_trusted("general"));
        assert_eq!(Keys::hash_tag(&keys.channel(&room)), "general");
        assert_eq!(Keys::hash_tag(keys.events()), "cluster");
        assert_eq!(Keys::hash_tag(&keys.nodes()), "cluster");
        assert_eq!(Keys::hash_tag("sb:b"), "sb:b", "no tag: the whole name");
        assert_eq!(Keys::hash_tag("a{}b{c}"), "a{}b{c}", "an empty tag is none");
    }

    #[test]
    fn rooms_users_documents_and_connections_are_sharded_with_a_cluster() {
        let cluster = Keys::new("sb:", true);
        let single = Keys::new("sb:", false);
        let room = cluster.channel(&Topic::Room(RoomId::from_trusted("general")));
        assert!(cluster.is_sharded(&room));
        assert!(!single.is_sharded(&room), "one Redis: classic pub/sub");
        for topic in [
            Topic::User(UserId::from_trusted("alice")),
            Topic::Document(DocId::from_trusted("notes")),
            Topic::Connection(ConnId::next()),
        ] {
            assert!(cluster.is_sharded(&cluster.channel(&topic)));
        }
        for topic in [
            Topic::Broadcast,
            Topic::Channel(ChannelId::from_trusted("news")),
        ] {
            assert!(!cluster.is_sharded(&cluster.channel(&topic)));
        }
        assert!(!cluster.is_sharded(cluster.events()));
    }

    #[test]
    fn envelopes_round_trip() {
        let node = NodeId::from_trusted("node-1");
        let encoded = encode_envelope(&node, b"\x81\x02hi");
        assert_eq!(
            decode_envelope(&encoded),
            Some(("node-1", &b"\x81\x02hi"[..]))
        );
        assert_eq!(decode_envelope(b"\x02\x01a"), None, "unknown version");
        assert_eq!(decode_envelope(b"\x01\x09ab"), None, "truncated");
    }

    #[test]
    fn snapshots_round_trip_through_hash_fields() {
        let mut snapshot = Snapshot::default();
        let alice = UserId::from_trusted("alice");
        snapshot.users.insert(alice.clone(), 2);
        snapshot
            .members
            .insert((RoomId::from_trusted("chat:1"), alice.clone()), 1);
        snapshot.channels.insert("room:*".into());
        snapshot.presence.insert(
            alice.clone(),
            Presence {
                user_id: alice,
                status: Status::Away,
                metadata: None,
                last_seen: 7,
            },
        );
        let mut fields: HashMap<String, String> = snapshot_fields(&snapshot).into_iter().collect();
        assert_eq!(parse_snapshot(fields.clone()), snapshot);
        let version = Version {
            instance: u64::MAX,
            seq: 42,
        };
        fields.insert(VERSION_FIELD.to_owned(), version_value(version));
        snapshot.version = Some(version);
        assert_eq!(parse_snapshot(fields.clone()), snapshot);
        fields.insert(VERSION_FIELD.to_owned(), "42".to_owned());
        assert_eq!(
            parse_snapshot(fields).version,
            None,
            "malformed: unversioned"
        );
    }
}
