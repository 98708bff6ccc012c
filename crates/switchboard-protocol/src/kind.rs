//! The `type` of every frame (DESIGN.md §2): [`ServerKind`] for what the server sends,
//! [`ClientKind`] for what a client sends. Application-defined types (custom handlers, the
//! server API's `type`) are plain strings and have no variant here.

use std::fmt;

/// Declares a frame-kind enum from one list of `Variant = "wire name"` pairs: the enum, its
/// `ALL` list, and the `match`es both ways, so a name is written exactly once.
macro_rules! kinds {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$doc:meta])* $variant:ident = $wire:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$doc])* $variant,)+
        }

        impl $name {
            /// Every kind, in the order of the protocol's table.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The wire name: the frame's `type`, e.g. `"room_joined"`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }

            /// The kind whose wire name is `name`; `None` for any other string.
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($wire => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

kinds! {
    /// The kinds of frame the server sends.
    pub enum ServerKind {
        /// The first frame of every connection ([`ConnectPayload`](crate::ConnectPayload)).
        Connect = "connect",
        /// The reply to `join_room`, with the room's members.
        RoomJoined = "room_joined",
        /// The reply to `leave_room`.
        RoomLeft = "room_left",
        /// Another user joined a room this connection is in.
        UserJoined = "user_joined",
        /// A user's last connection left a room this connection is in.
        UserLeft = "user_left",
        /// A room message.
        Message = "message",
        /// A message to every connection.
        Broadcast = "broadcast",
        /// A user's presence changed.
        Presence = "presence",
        /// The reply to `subscribe`.
        Subscribed = "subscribed",
        /// The reply to `unsubscribe`.
        Unsubscribed = "unsubscribed",
        /// A publication on a subscribed channel.
        Publish = "publish",
        /// The app-level heartbeat, when enabled.
        Ping = "ping",
        /// The reply to a client `ping`, with its payload.
        Pong = "pong",
        /// A client frame that carried an `id` was processed.
        Ack = "ack",
        /// A client frame was refused ([`ErrorPayload`](crate::ErrorPayload)).
        Error = "error",
        /// The reply to `history`: a stream's retained messages
        /// ([`HistoryPayload`](crate::HistoryPayload)).
        History = "history",
        /// The connection's token expires soon and the connection will be closed unless it
        /// sends `refresh` ([`TokenExpiringPayload`](crate::TokenExpiringPayload)).
        TokenExpiring = "token_expiring",
    }
}

impl ServerKind {
    /// Whether the kind has a meaning in the protocol that an application (a backend through
    /// the server API, a custom handler) must not impersonate. Only `message` and `broadcast`
    /// carry the application's own payload, and so only they may be sent by it.
    pub const fn is_reserved(self) -> bool {
        !matches!(self, Self::Message | Self::Broadcast)
    }
}

kinds! {
    /// The kinds of frame a client sends.
    pub enum ClientKind {
        /// Join a room (`{room}`).
        JoinRoom = "join_room",
        /// Leave a room (`{room}`).
        LeaveRoom = "leave_room",
        /// Send to a room's other members (`{room, content}`).
        Message = "message",
        /// Send to every connection (`{content}`).
        Broadcast = "broadcast",
        /// Set the user's presence (`{status, metadata?}`).
        Presence = "presence",
        /// Subscribe to a channel or pattern (`{channel}`).
        Subscribe = "subscribe",
        /// Unsubscribe (`{channel}`).
        Unsubscribe = "unsubscribe",
        /// Publish to a channel (`{channel, data}`).
        Publish = "publish",
        /// Ask for a `pong` with the same payload (`{timestamp?}`).
        Ping = "ping",
        /// Answer a server `ping`.
        Pong = "pong",
        /// Authenticate after connecting (`{token}`).
        Auth = "auth",
        /// Read a room's or channel's retained messages (`{room | channel, limit?, since?}`).
        History = "history",
        /// Replace the connection's token and permissions with a newer token of the same user
        /// (`{token}`).
        Refresh = "refresh",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for kind in ServerKind::ALL {
            assert_eq!(ServerKind::parse(kind.as_str()), Some(*kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        for kind in ClientKind::ALL {
            assert_eq!(ClientKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(ServerKind::ALL.len(), 17);
        assert_eq!(ClientKind::ALL.len(), 13);
        assert_eq!(ServerKind::parse("game_state"), None);
        assert_eq!(ClientKind::parse("JOIN_ROOM"), None);
    }

    #[test]
    fn only_message_and_broadcast_are_the_applications() {
        let open: Vec<&str> = ServerKind::ALL
            .iter()
            .filter(|kind| !kind.is_reserved())
            .map(|kind| kind.as_str())
            .collect();
        assert_eq!(open, ["message", "broadcast"]);
    }
}
