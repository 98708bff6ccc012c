//! Identifier newtypes shared by every layer: connections, users, rooms, channels and nodes.
//!
//! Names that come from the network (rooms, channels, user ids) are validated here once, when
//! they are turned into an id; everything past this point can trust them. Ids are cheap to clone
//! (`Arc<str>` or a `u64`) because the hub stores them in several maps.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Why a name (room, channel, user id) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("must not be empty")]
    Empty,
    /// The name has more characters than the configured maximum.
    #[error("must be at most {max} characters")]
    TooLong {
        /// The configured maximum, in characters.
        max: usize,
    },
    /// The name holds a character outside the allowed set.
    #[error("may contain only letters, digits and _ - . : @ / + = # | ~")]
    InvalidChar,
}

/// The longest name any configuration allows (`max_name_length` is at most this).
pub const MAX_NAME_CHARS: usize = 1024;

/// Checks a room, channel or user name: 1..=`max_chars` characters, each a Unicode letter or
/// digit or one of `_ - . : @ / + = # | ~`. Whitespace, quotes, control characters and `*`
/// (reserved for channel patterns) are refused.
pub fn validate_name(name: &str, max_chars: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let mut count = 0;
    for c in name.chars() {
        count += 1;
        if count > max_chars {
            return Err(NameError::TooLong { max: max_chars });
        }
        if !(c.is_alphanumeric() || "_-.:@/+=#|~".contains(c)) {
            return Err(NameError::InvalidChar);
        }
    }
    Ok(())
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `name` (see [`validate_name`]) and wraps it.
            pub fn parse(name: &str, max_chars: usize) -> Result<Self, NameError> {
                validate_name(name, max_chars)?;
                Ok(Self(Arc::from(name)))
            }

            /// Wraps a name that is trusted (configured by the operator or generated here).
            pub fn from_trusted(name: impl Into<Arc<str>>) -> Self {
                Self(name.into())
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        /// Deserialized names are validated like parsed ones, up to [`MAX_NAME_CHARS`].
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                Self::parse(&name, MAX_NAME_CHARS).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_id!(
    /// A user's identity: the `userId` query parameter (authentication off), a JWT subject
    /// (authentication on), or a generated `anon-…` id. A user may hold several connections.
    UserId
);
name_id!(
    /// A room's name. Rooms exist while they have members.
    RoomId
);
name_id!(
    /// A pub/sub channel's name, such as `user:123` or `event:login`.
    ChannelId
);
name_id!(
    /// A collaborative (Yjs) document's name, as in `/yjs/{document}`.
    DocId
);
name_id!(
    /// The id of one Switchboard node (process), unique within a cluster.
    NodeId
);

impl UserId {
    /// A fresh anonymous user id, `anon-` followed by 12 random letters and digits.
    pub fn anonymous() -> Self {
        let suffix: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(12)
            .collect();
        Self(Arc::from(format!("anon-{suffix}")))
    }
}

impl NodeId {
    /// A fresh random node id of 8 lowercase hex digits.
    pub fn random() -> Self {
        Self(Arc::from(format!("{:08x}", fastrand::u32(..))))
    }
}

impl ChannelId {
    /// Whether this is a presence watch channel, `presence:USER`.
    pub fn watched_user(&self) -> Option<&str> {
        self.0.strip_prefix(PRESENCE_PREFIX)
    }
}

/// Channels named `presence:USER` carry USER's presence changes; clients cannot publish to them.
pub const PRESENCE_PREFIX: &str = "presence:";

/// A channel pattern: a prefix followed by `*` (`room:*`, `user:*`, or `*` for every channel).
/// It matches every channel whose name starts with the prefix.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelPrefix(Arc<str>);

impl ChannelPrefix {
    /// Parses `prefix*`; the prefix may be empty and must otherwise use the name characters.
    pub fn parse(pattern: &str, max_chars: usize) -> Result<Self, NameError> {
        let Some(prefix) = pattern.strip_suffix('*') else {
            return Err(NameError::InvalidChar);
        };
        if !prefix.is_empty() {
            validate_name(prefix, max_chars)?;
        }
        Ok(Self(Arc::from(prefix)))
    }

    /// Whether `channel` matches.
    pub fn matches(&self, channel: &ChannelId) -> bool {
        channel.as_str().starts_with(&*self.0)
    }

    /// The prefix, without the `*`.
    pub fn prefix(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}*", self.0)
    }
}

impl fmt::Debug for ChannelPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", format!("{self}"))
    }
}

/// What a subscription is for: one channel, or every channel matching a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChannelSpec {
    /// One channel.
    Exact(ChannelId),
    /// Every channel starting with a prefix.
    Prefix(ChannelPrefix),
}

impl ChannelSpec {
    /// Parses a channel name, or a pattern when it ends with `*`.
    pub fn parse(spec: &str, max_chars: usize) -> Result<Self, NameError> {
        if spec.ends_with('*') {
            ChannelPrefix::parse(spec, max_chars).map(Self::Prefix)
        } else {
            ChannelId::parse(spec, max_chars).map(Self::Exact)
        }
    }
}

impl Serialize for ChannelSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for ChannelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(channel) => fmt::Display::fmt(channel, f),
            Self::Prefix(prefix) => fmt::Display::fmt(prefix, f),
        }
    }
}

/// A stream of messages with history and offsets (DESIGN.md §7): a room's `message`s or an
/// exact channel's publications.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamId {
    /// A room's messages.
    Room(RoomId),
    /// A channel's publications.
    Channel(ChannelId),
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Room(room) => write!(f, "room {room}"),
            Self::Channel(channel) => write!(f, "channel {channel}"),
        }
    }
}

/// The id of one WebSocket connection, unique across a cluster with overwhelming probability:
/// the top 24 bits are random per process, the low 40 bits count connections. On the wire it is
/// 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// Allocates the next connection id of this process.
    pub fn next() -> Self {
        static SALT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let salt = *SALT.get_or_init(|| fastrand::u64(..) << 40);
        Self(salt | (COUNTER.fetch_add(1, Ordering::Relaxed) & ((1 << 40) - 1)))
    }

    /// The id as a number.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Parses the 16-hex-digit wire form.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 16 {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(Self)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ConnId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_documented_charset() {
        for ok in [
            "general",
            "user:123",
            "event:login",
            "a.b-c_d@e/f+g=h#i|j~k",
            "café",
            "房间",
        ] {
            assert_eq!(validate_name(ok, 128), Ok(()), "{ok}");
        }
    }

    #[test]
    fn names_refuse_empty_long_and_odd_characters() {
        assert_eq!(validate_name("", 128), Err(NameError::Empty));
        assert_eq!(validate_name(&"a".repeat(128), 128), Ok(()));
        assert_eq!(
            validate_name(&"a".repeat(129), 128),
            Err(NameError::TooLong { max: 128 })
        );
        assert_eq!(validate_name(&"é".repeat(128), 128), Ok(()));
        for bad in [
            "a b", "a\"b", "room*", "a\nb", "a\u{0}b", "x\\y", "<script>",
        ] {
            assert_eq!(
                validate_name(bad, 128),
                Err(NameError::InvalidChar),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn conn_ids_are_unique_and_round_trip() {
        let a = ConnId::next();
        let b = ConnId::next();
        assert_ne!(a, b);
        assert_eq!(ConnId::parse(&a.to_string()), Some(a));
        assert_eq!(ConnId::parse("xyz"), None);
    }

    #[test]
    fn channel_specs_are_names_or_prefix_patterns() {
        let exact = ChannelSpec::parse("user:123", 128).unwrap();
        assert_eq!(
            exact,
            ChannelSpec::Exact(ChannelId::from_trusted("user:123"))
        );
        let ChannelSpec::Prefix(prefix) = ChannelSpec::parse("room:*", 128).unwrap() else {
            panic!("not a pattern");
        };
        assert!(prefix.matches(&ChannelId::from_trusted("room:general")));
        assert!(!prefix.matches(&ChannelId::from_trusted("user:1")));
        assert_eq!(prefix.to_string(), "room:*");
        assert!(
            ChannelPrefix::parse("*", 128)
                .unwrap()
                .matches(&ChannelId::from_trusted("x"))
        );
        assert!(
            ChannelSpec::parse("ro*m", 128).is_err(),
            "* only at the end"
        );
        assert!(ChannelSpec::parse("a b*", 128).is_err());
        assert_eq!(
            ChannelId::from_trusted("presence:alice").watched_user(),
            Some("alice")
        );
    }

    #[test]
    fn anonymous_ids_are_valid_names() {
        let id = UserId::anonymous();
        assert!(id.as_str().starts_with("anon-"));
        assert_eq!(validate_name(id.as_str(), 128), Ok(()));
    }
}
