//! Webhooks: the node's lifecycle events ([`HubEvent`]) and chosen client message types,
//! POSTed as JSON to the application's backend, signed with HMAC-SHA256.
//!
//! Each endpoint (`--webhook-url`) has its own bounded queue (`queue.rs`: the oldest event is
//! dropped, and counted, when it is full) and its own sender task (`sender.rs`): it batches the
//! events that arrive within 50 ms into one request and retries a failed
//! request with exponential backoff and jitter, in order. Events are encoded once, when they
//! happen, and shared by the endpoints' queues.
//!
//! A request's body is `{"time": ms, "node": id, "events": [...]}`; the header
//! `X-Switchboard-Signature: sha256=<hex>` is the HMAC-SHA256 of the raw body with
//! `--webhook-secret`, and `X-Switchboard-Timestamp` repeats `time` (a backend refuses old
//! ones to stop replays).
//!
//! This module knows the hub only through its public event hooks and message handlers; the
//! hub knows nothing of it.

mod queue;
mod sender;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{EventName, WebhookConfig};
use crate::handlers::MessageContext;
use crate::hub::{EventHook, Hub, HubEvent};
use crate::ids::UserId;
use crate::presence::Presence;
use crate::protocol::now_ms;
use queue::Queue;

/// Most events one endpoint's queue holds.
const QUEUE_CAPACITY: usize = 10_000;

/// One event as the backend receives it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    #[serde(serialize_with = "name")]
    name: EventName,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence: Option<&'a Presence>,
    /// A client message's type, connection and payload.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a Value>,
    /// Milliseconds since the epoch when it happened.
    time: u64,
}

impl<'a> Wire<'a> {
    fn new(name: EventName) -> Self {
        Self {
            name,
            room: None,
            channel: None,
            user_id: None,
            presence: None,
            kind: None,
            connection_id: None,
            payload: None,
            time: now_ms(),
        }
    }

    /// The wire form of a hub event.
    fn of(event: &'a HubEvent) -> Self {
        match event {
            HubEvent::RoomOccupied { room } => Self {
                room: Some(room.as_str()),
                ..Self::new(EventName::RoomOccupied)
            },
            HubEvent::RoomVacated { room } => Self {
                room: Some(room.as_str()),
                ..Self::new(EventName::RoomVacated)
            },
            HubEvent::MemberAdded { room, user } => Self {
                room: Some(room.as_str()),
                user_id: Some(user),
                ..Self::new(EventName::MemberAdded)
            },
            HubEvent::MemberRemoved { room, user } => Self {
                room: Some(room.as_str()),
                user_id: Some(user),
                ..Self::new(EventName::MemberRemoved)
            },
            HubEvent::PresenceChanged { presence } => Self {
                user_id: Some(&presence.user_id),
                presence: Some(presence),
                ..Self::new(EventName::PresenceChanged)
            },
            HubEvent::ChannelOccupied { channel } => Self {
                channel: Some(channel.as_str()),
                ..Self::new(EventName::ChannelOccupied)
            },
            HubEvent::ChannelVacated { channel } => Self {
                channel: Some(channel.as_str()),
                ..Self::new(EventName::ChannelVacated)
            },
        }
    }
}

/// Writes an event's name.
fn name<S: serde::Serializer>(name: &EventName, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(name.as_str())
}

/// The webhooks of one instance: what the hooks feed, and the endpoints' queues.
pub(crate) struct Webhooks {
    config: WebhookConfig,
    queues: Vec<Arc<Queue>>,
    hub: Hub,
}

impl Webhooks {
    /// Webhooks for `config` counting in `hub`'s metrics. Nothing is sent until
    /// [`Webhooks::spawn`].
    pub(crate) fn new(config: WebhookConfig, hub: Hub) -> Arc<Self> {
        let queues = config
            .urls
            .iter()
            .map(|_| Arc::new(Queue::new(QUEUE_CAPACITY)))
            .collect();
        Arc::new(Self {
            config,
            queues,
            hub,
        })
    }

    /// Starts one sender per endpoint; each ends when `cancel` fires, after one last attempt
    /// to send what is queued.
    pub(crate) fn spawn(self: &Arc<Self>, tasks: &TaskTracker, cancel: &CancellationToken) {
        let client = crate::backend::client(sender::REQUEST_TIMEOUT);
        for (url, queue) in self.config.urls.iter().zip(&self.queues) {
            tasks.spawn(sender::run(sender::Endpoint {
                url: url.clone(),
                queue: queue.clone(),
                client: client.clone(),
                secret: self.config.secret.clone(),
                node: self.hub.node_id().to_string(),
                hub: self.hub.clone(),
                cancel: cancel.clone(),
            }));
        }
    }

    /// The hook that feeds the lifecycle events to the queues. It holds the webhooks weakly:
    /// the hub keeps its hooks, and the webhooks keep the hub.
    pub(crate) fn hook(self: &Arc<Self>) -> EventHook {
        let webhooks: Weak<Self> = Arc::downgrade(self);
        Arc::new(move |event: &HubEvent| {
            if let Some(webhooks) = webhooks.upgrade() {
                let wire = Wire::of(event);
                webhooks.push(&wire);
            }
        })
    }

    /// The client message types sent as `client_message`, with the handler of each.
    pub(crate) fn client_types(
        self: &Arc<Self>,
    ) -> Vec<(
        String,
        impl Fn(&MessageContext<'_>, &Value) + Send + Sync + 'static,
    )> {
        self.config
            .client_types
            .iter()
            .map(|kind| {
                let webhooks = Arc::downgrade(self);
                let handler = move |context: &MessageContext<'_>, payload: &Value| {
                    if let Some(webhooks) = webhooks.upgrade() {
                        webhooks.push(&Wire {
                            user_id: Some(context.user_id()),
                            kind: Some(context.message_type()),
                            connection_id: Some(context.connection_id().to_string()),
                            payload: Some(payload),
                            ..Wire::new(EventName::ClientMessage)
                        });
                    }
                };
                (kind.clone(), handler)
            })
            .collect()
    }

    /// Encodes `event` once and queues it for every endpoint, if its kind is sent.
    fn push(&self, event: &Wire<'_>) {
        if !self.config.events.contains(&event.name) {
            return;
        }
        let json = match serde_json::to_vec(event) {
            Ok(json) => Bytes::from(json),
            Err(error) => {
                tracing::warn!(%error, "a webhook event could not be encoded");
                return;
            }
        };
        let counters = self.hub.counters();
        for queue in &self.queues {
            if queue.push(json.clone()) {
                counters
                    .webhook_events_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
