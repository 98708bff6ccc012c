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
    fn anonymous_ids_are_valid_names() {
        let id = UserId::anonymous();
        assert!(id.as_str().starts_with("anon-"));
        assert_eq!(validate_name(id.as_str(), 128), Ok(()));
    }
}
