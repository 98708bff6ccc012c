//! Authorization from a token's claims: which rooms a connection may join and message, which
//! channels it may subscribe and publish to, and whether it may broadcast.
//!
//! The claim format (docs/security.md, "Permissions (claims)"):
//!
//! ```json
//! {"rooms": ["general", "team-*"],
//!  "channels": {"subscribe": ["user:alice", "news:*"], "publish": ["chat:*"]},
//!  "docs": {"read": ["handbook-*"], "write": ["notes-alice"]},
//!  "broadcast": false}
//! ```
//!
//! `rooms`, `channels` and `docs` are each either a list (every action) or an object with one
//! list per action (`join`/`message`, `subscribe`/`publish`, `read`/`write`; an action left out
//! of the object is not granted; writing a document needs reading it too). A pattern is a
//! name, a prefix ending in `*`, or `*` alone for everything. Defaults for a plain token:
//! every room and every document (chat and shared editing work), no channel, no broadcast.
//!
//! This module owns the format and the checks; the session asks before it acts.

use serde::Deserialize;

use crate::ids::{ChannelId, ChannelSpec, DocId, RoomId};

/// What one authenticated connection may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grants {
    join: Patterns,
    message: Patterns,
    subscribe: Patterns,
    publish: Patterns,
    read_doc: Patterns,
    write_doc: Patterns,
    broadcast: bool,
}

/// A claim that grants actions: one list for every action, or a list per action.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Grant<A> {
    Every(Vec<String>),
    PerAction(A),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomActions {
    #[serde(default)]
    join: Vec<String>,
    #[serde(default)]
    message: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelActions {
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocActions {
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
}

/// The two lists of a per-action claim object, in the order its actions are granted.
trait Actions {
    fn lists(self) -> (Vec<String>, Vec<String>);
}

impl Actions for RoomActions {
    fn lists(self) -> (Vec<String>, Vec<String>) {
        (self.join, self.message)
    }
}

impl Actions for ChannelActions {
    fn lists(self) -> (Vec<String>, Vec<String>) {
        (self.subscribe, self.publish)
    }
}

impl Actions for DocActions {
    fn lists(self) -> (Vec<String>, Vec<String>) {
        (self.read, self.write)
    }
}

impl<A: Actions> Grant<A> {
    /// The patterns of each of the claim's two actions: one list for both, or one each.
    fn parse(self, claim: &'static str) -> Result<(Patterns, Patterns), GrantError> {
        match self {
            Self::Every(list) => Ok(Patterns::both(Patterns::parse(claim, list)?)),
            Self::PerAction(actions) => {
                let (first, second) = actions.lists();
                Ok((
                    Patterns::parse(claim, first)?,
                    Patterns::parse(claim, second)?,
                ))
            }
        }
    }
}

/// The authorization claims as they appear in a token.
#[derive(Debug, Deserialize)]
pub(crate) struct GrantClaims {
    #[serde(default)]
    rooms: Option<Grant<RoomActions>>,
    #[serde(default)]
    channels: Option<Grant<ChannelActions>>,
    #[serde(default)]
    docs: Option<Grant<DocActions>>,
    #[serde(default)]
    broadcast: bool,
}

/// A claim that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// A pattern is empty, or has a `*` anywhere but at its end.
    #[error("{claim}: {pattern:?} is not a name, a prefix ending in *, or *")]
    BadPattern {
        /// The claim (`rooms`, `channels`).
        claim: &'static str,
        /// The pattern as written.
        pattern: String,
    },
}

impl GrantClaims {
    /// Checks the patterns and builds the grants.
    pub(crate) fn into_grants(self) -> Result<Grants, GrantError> {
        let (join, message) = self.rooms.map_or_else(
            || Ok(Patterns::both(Patterns::everything())),
            |g| g.parse("rooms"),
        )?;
        let (subscribe, publish) = self.channels.map_or_else(
            || Ok(Patterns::both(Patterns::default())),
            |g| g.parse("channels"),
        )?;
        let (read_doc, write_doc) = self.docs.map_or_else(
            || Ok(Patterns::both(Patterns::everything())),
            |g| g.parse("docs"),
        )?;
        Ok(Grants {
            join,
            message,
            subscribe,
            publish,
            read_doc,
            write_doc,
            broadcast: self.broadcast,
        })
    }
}

impl Grants {
    pub(crate) fn may_join(&self, room: &RoomId) -> bool {
        self.join.allows(room.as_str())
    }

    pub(crate) fn may_message(&self, room: &RoomId) -> bool {
        self.message.allows(room.as_str())
    }

    /// A channel, or a pattern subscription whose whole range is granted.
    pub(crate) fn may_subscribe(&self, channel: &ChannelSpec) -> bool {
        match channel {
            ChannelSpec::Exact(name) => self.subscribe.allows(name.as_str()),
            ChannelSpec::Prefix(prefix) => self.subscribe.covers_prefix(prefix.prefix()),
        }
    }

    pub(crate) fn may_publish(&self, channel: &ChannelId) -> bool {
        self.publish.allows(channel.as_str())
    }

    pub(crate) fn may_broadcast(&self) -> bool {
        self.broadcast
    }

    /// May open document `doc` (and read it, and share awareness in it).
    pub(crate) fn may_read_doc(&self, doc: &DocId) -> bool {
        self.read_doc.allows(doc.as_str()) || self.may_write_doc(doc)
    }

    /// May change document `doc`.
    pub(crate) fn may_write_doc(&self, doc: &DocId) -> bool {
        self.write_doc.allows(doc.as_str())
    }
}

/// Names and prefixes; empty grants nothing. A boxed slice: a session keeps six of these
/// for as long as its connection lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Patterns(Box<[Pattern]>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// Everything that starts with this (`""` is everything).
    Prefix(String),
}

impl Patterns {
    /// The same patterns for both actions of a claim.
    fn both(self) -> (Self, Self) {
        (self.clone(), self)
    }

    fn everything() -> Self {
        Self(Box::new([Pattern::Prefix(String::new())]))
    }

    fn parse(claim: &'static str, list: Vec<String>) -> Result<Self, GrantError> {
        list.into_iter()
            .map(|pattern| {
                let star = pattern.find('*');
                match star {
                    _ if pattern.is_empty() => Err(pattern),
                    None => Ok(Pattern::Exact(pattern)),
                    Some(at) if at + 1 == pattern.len() => {
                        let mut prefix = pattern;
                        prefix.pop();
                        Ok(Pattern::Prefix(prefix))
                    }
                    Some(_) => Err(pattern),
                }
                .map_err(|pattern| GrantError::BadPattern { claim, pattern })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn allows(&self, name: &str) -> bool {
        self.0.iter().any(|pattern| match pattern {
            Pattern::Exact(exact) => exact == name,
            Pattern::Prefix(prefix) => name.starts_with(prefix.as_str()),
        })
    }

    /// Whether every name starting with `prefix` is allowed.
    fn covers_prefix(&self, prefix: &str) -> bool {
        self.0.iter().any(|pattern| match pattern {
            Pattern::Exact(_) => false,
            Pattern::Prefix(granted) => prefix.starts_with(granted.as_str()),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn grants(claims: serde_json::Value) -> Result<Grants, GrantError> {
        serde_json::from_value::<GrantClaims>(claims)
            .expect("claims parse")
            .into_grants()
    }

    fn room(name: &str) -> RoomId {
        RoomId::parse(name, 128).unwrap()
    }

    fn channel(spec: &str) -> ChannelSpec {
        ChannelSpec::parse(spec, 128).unwrap()
    }

    fn exact(name: &str) -> ChannelId {
        ChannelId::parse(name, 128).unwrap()
    }

    #[test]
    fn a_plain_token_may_chat_in_any_room_and_nothing_else() {
        let plain = grants(json!({})).unwrap();
        assert!(plain.may_join(&room("general")) && plain.may_message(&room("x")));
        assert!(!plain.may_subscribe(&channel("news")));
        assert!(!plain.may_publish(&exact("news")));
        assert!(!plain.may_broadcast());
    }

    #[test]
    fn a_list_grants_every_action_on_names_and_prefixes() {
        let g = grants(json!({"rooms": ["general", "team-*"], "channels": ["chat:*"]})).unwrap();
        assert!(g.may_join(&room("general")) && g.may_message(&room("general")));
        assert!(g.may_join(&room("team-a")) && g.may_message(&room("team-")));
        assert!(!g.may_join(&room("generally")) && !g.may_join(&room("team")));
        assert!(g.may_subscribe(&channel("chat:1")) && g.may_publish(&exact("chat:1")));
        assert!(!g.may_publish(&exact("chatter")));
    }

    #[test]
    fn per_action_objects_grant_only_what_they_list() {
        let g = grants(json!({
            "rooms": {"join": ["news", "general"], "message": ["general"]},
            "channels": {"subscribe": ["user:alice", "news:*"]},
            "broadcast": true
        }))
        .unwrap();
        assert!(g.may_join(&room("news")) && !g.may_message(&room("news")));
        assert!(g.may_message(&room("general")));
        assert!(g.may_subscribe(&channel("user:alice")) && !g.may_publish(&exact("user:alice")));
        assert!(g.may_broadcast());
        let empty = grants(json!({"rooms": {}, "channels": []})).unwrap();
        assert!(!empty.may_join(&room("general")) && !empty.may_subscribe(&channel("a")));
    }

    #[test]
    fn docs_are_granted_like_rooms_and_writing_implies_reading() {
        let doc = |name| DocId::parse(name, 128).unwrap();
        let plain = grants(json!({})).unwrap();
        assert!(plain.may_read_doc(&doc("any")) && plain.may_write_doc(&doc("any")));
        let list = grants(json!({"docs": ["notes-*"]})).unwrap();
        assert!(list.may_read_doc(&doc("notes-1")) && list.may_write_doc(&doc("notes-1")));
        assert!(!list.may_read_doc(&doc("secret")));
        let split = grants(json!({"docs": {"read": ["handbook"], "write": ["mine"]}})).unwrap();
        assert!(split.may_read_doc(&doc("handbook")) && !split.may_write_doc(&doc("handbook")));
        assert!(split.may_read_doc(&doc("mine")) && split.may_write_doc(&doc("mine")));
        assert!(!split.may_read_doc(&doc("other")));
        assert!(grants(json!({"docs": ["a*b"]})).is_err());
        let none = grants(json!({"docs": []})).unwrap();
        assert!(!none.may_read_doc(&doc("any")));
    }

    #[test]
    fn a_pattern_subscription_needs_a_covering_prefix() {
        let g = grants(json!({"channels": ["news:*", "room:general"]})).unwrap();
        assert!(g.may_subscribe(&channel("news:*")));
        assert!(g.may_subscribe(&channel("news:sport:*")));
        assert!(!g.may_subscribe(&channel("news*")));
        assert!(!g.may_subscribe(&channel("room:*")));
        let everything = grants(json!({"channels": ["*"]})).unwrap();
        assert!(everything.may_subscribe(&channel("*")) && everything.may_publish(&exact("x")));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "a*b", "**", "*a"] {
            assert_eq!(
                grants(json!({ "rooms": [bad] })),
                Err(GrantError::BadPattern {
                    claim: "rooms",
                    pattern: bad.to_owned()
                })
            );
        }
        assert!(serde_json::from_value::<GrantClaims>(json!({"rooms": {"joins": ["a"]}})).is_err());
        assert!(serde_json::from_value::<GrantClaims>(json!({"broadcast": "yes"})).is_err());
    }
}
