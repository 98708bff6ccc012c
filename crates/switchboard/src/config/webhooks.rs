//! Webhook settings: the endpoints, the signing secret, and which events are sent
//! (`crate::webhooks` sends them).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use axum::http::Uri;

use super::{ConfigError, RawSettings};

/// The webhook settings.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The endpoints every event is POSTed to (`http://` or `https://`).
    pub urls: Vec<Uri>,
    /// The key of the requests' HMAC-SHA256 signature.
    pub secret: Arc<str>,
    /// The events sent (the others are not).
    pub events: Vec<EventName>,
    /// Client message types sent as `client_message` events (and acked to the client).
    pub client_types: Vec<String>,
}

/// An event's name, as the `name` field of its JSON and in `--webhook-events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    /// A room got its first member.
    RoomOccupied,
    /// A room's last member left.
    RoomVacated,
    /// A user's first connection joined a room.
    MemberAdded,
    /// A user's last connection left a room.
    MemberRemoved,
    /// A user's presence changed.
    PresenceChanged,
    /// A channel got its first subscriber.
    ChannelOccupied,
    /// A channel lost its last subscriber.
    ChannelVacated,
    /// A client sent a message of a type in `--webhook-client-types`.
    ClientMessage,
}

impl EventName {
    /// Every event, in the order the documentation lists them.
    pub const ALL: [Self; 8] = [
        Self::RoomOccupied,
        Self::RoomVacated,
        Self::MemberAdded,
        Self::MemberRemoved,
        Self::PresenceChanged,
        Self::ChannelOccupied,
        Self::ChannelVacated,
        Self::ClientMessage,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoomOccupied => "room_occupied",
            Self::RoomVacated => "room_vacated",
            Self::MemberAdded => "member_added",
            Self::MemberRemoved => "member_removed",
            Self::PresenceChanged => "presence_changed",
            Self::ChannelOccupied => "channel_occupied",
            Self::ChannelVacated => "channel_vacated",
            Self::ClientMessage => "client_message",
        }
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no webhook event.
#[derive(Debug, thiserror::Error)]
#[error("unknown webhook event {0:?}")]
pub struct UnknownEvent(String);

impl FromStr for EventName {
    type Err = UnknownEvent;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|event| event.as_str() == name)
            .ok_or_else(|| UnknownEvent(name.to_owned()))
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("urls", &self.urls)
            .field("secret", &"<set>")
            .field("events", &self.events)
            .field("client_types", &self.client_types)
            .finish()
    }
}

/// The webhook settings: `None` without a URL. Every URL must be `http(s)://` with a host, and
/// a secret is required.
pub(super) fn from_raw(raw: &RawSettings) -> Result<Option<WebhookConfig>, ConfigError> {
    let list = |value: &Option<String>| -> Vec<String> {
        value
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let urls = list(&raw.webhook_url);
    if urls.is_empty() {
        return Ok(None);
    }
    let urls = urls
        .iter()
        .map(|url| parse_url(url).map_err(|reason| ConfigError::invalid("webhook_url", reason)))
        .collect::<Result<Vec<Uri>, _>>()?;
    let secret = raw
        .webhook_secret
        .clone()
        .filter(|secret| !secret.is_empty())
        .ok_or_else(|| {
            ConfigError::invalid(
                "webhook_secret",
                "is required with webhook_url (requests are signed)",
            )
        })?;
    let events = match list(&raw.webhook_events) {
        names if names.is_empty() => EventName::ALL.to_vec(),
        names => names
            .iter()
            .map(|name| name.parse())
            .collect::<Result<Vec<EventName>, UnknownEvent>>()
            .map_err(|unknown| ConfigError::invalid("webhook_events", unknown.to_string()))?,
    };
    Ok(Some(WebhookConfig {
        urls,
        secret: Arc::from(secret),
        events,
        client_types: list(&raw.webhook_client_types),
    }))
}

/// An `http(s)://host[:port][/path]` URL.
pub(super) fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(format!("{url:?} must be http(s)://host[:port]/path")),
    }
}
