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
//! In a cluster the hub's events are each node's view; `once.rs` lets the state store decide
//! which node's first or last is the cluster's, so every event is sent once for the cluster.
//!
//! This module knows the hub only through its public event hooks and message handlers; the
//! hub knows nothing of it.

mod once;
mod queue;
mod sender;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{Held, Holders, Holding};
use crate::config::{EventName, WebhookConfig};
use crate::handlers::MessageContext;
use crate::hub::{EventHook, Hub, HubEvent};
use crate::ids::UserId;
use crate::presence::{Presence, Status};
use crate::protocol::now_ms;
use once::{Once, Pending};
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
            HubEvent::Connected { presence }
            | HubEvent::Disconnected { presence }
            | HubEvent::PresenceChanged { presence } => Self {
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
    /// In a cluster: the changes waiting for the state store to decide who sends them, and
    /// the receiving end for the task that decides (taken by [`Webhooks::spawn`]).
    once: Option<Once>,
    decisions: parking_lot::Mutex<Option<tokio::sync::mpsc::Receiver<Pending>>>,
}

impl Webhooks {
    /// Webhooks for `config` counting in `hub`'s metrics; in a cluster, `holders` decides
    /// which node sends an event. Nothing is sent until [`Webhooks::spawn`].
    pub(crate) fn new(
        config: WebhookConfig,
        hub: Hub,
        holders: Option<Arc<dyn Holders>>,
    ) -> Arc<Self> {
        let queues = config
            .urls
            .iter()
            .map(|_| Arc::new(Queue::new(QUEUE_CAPACITY)))
            .collect();
        let (once, decisions) = match holders.clone().map(Once::new) {
            Some((once, receiver)) => (Some(once), Some(receiver)),
            None => (None, None),
        };
        let webhooks = Arc::new(Self {
            config,
            queues,
            hub,
            once,
            decisions: parking_lot::Mutex::new(decisions),
        });
        if let Some(holders) = holders {
            let orphans = Arc::downgrade(&webhooks);
            holders.set_orphan_sink(Box::new(move |orphaned| {
                if let Some(webhooks) = orphans.upgrade() {
                    webhooks.orphaned(orphaned);
                }
            }));
        }
        webhooks
    }

    /// Starts one sender per endpoint (and in a cluster the task that decides which events
    /// are this node's to send); each ends when `cancel` fires, after one last attempt to
    /// send what is queued.
    pub(crate) fn spawn(self: &Arc<Self>, tasks: &TaskTracker, cancel: &CancellationToken) {
        let senders = match self.decisions.lock().take() {
            Some(receiver) => {
                // The senders outlive the decisions, to send the last ones.
                let senders = CancellationToken::new();
                tasks.spawn(once::run(
                    self.clone(),
                    receiver,
                    cancel.clone(),
                    senders.clone(),
                ));
                senders
            }
            None => cancel.clone(),
        };
        let client = crate::backend::client(sender::REQUEST_TIMEOUT);
        for (url, queue) in self.config.urls.iter().zip(&self.queues) {
            tasks.spawn(sender::run(sender::Endpoint {
                url: url.clone(),
                queue: queue.clone(),
                client: client.clone(),
                secret: self.config.secret.clone(),
                node: self.hub.node_id().to_string(),
                hub: self.hub.clone(),
                cancel: senders.clone(),
            }));
        }
    }

    /// The hook that feeds the lifecycle events to the queues. It holds the webhooks weakly:
    /// the hub keeps its hooks, and the webhooks keep the hub.
    pub(crate) fn hook(self: &Arc<Self>) -> EventHook {
        let webhooks: Weak<Self> = Arc::downgrade(self);
        Arc::new(move |event: &HubEvent| {
            if let Some(webhooks) = webhooks.upgrade() {
                webhooks.event(event);
            }
        })
    }

    /// Queues the webhook of a hub event: at once on a lone node (and for a presence change,
    /// which only the user's node sees), or once the store has decided it is the cluster's.
    fn event(&self, event: &HubEvent) {
        let wire = Wire::of(event);
        let (Some(once), Some(holding)) = (&self.once, holding(event)) else {
            self.push(&wire);
            return;
        };
        let counterpart = counterpart(wire.name);
        if !self.config.events.contains(&wire.name) && !self.config.events.contains(&counterpart) {
            return;
        }
        let event = self.encode(&wire);
        let sent = event.is_some();
        if !once.offer(Pending { holding, event }) && sent {
            self.count_dropped(1);
        }
    }

    /// The vacancies the store reported for holders that are gone (a reaped node, or this
    /// node's previous process).
    fn orphaned(&self, orphaned: Vec<Held>) {
        for held in orphaned {
            let event = match held {
                Held::Member(room, user) => HubEvent::MemberRemoved { room, user },
                Held::Room(room) => HubEvent::RoomVacated { room },
                Held::Channel(channel) => HubEvent::ChannelVacated { channel },
                Held::User(user) => HubEvent::Disconnected {
                    presence: Presence {
                        user_id: user,
                        status: Status::Offline,
                        metadata: None,
                        last_seen: now_ms(),
                    },
                },
            };
            self.push(&Wire::of(&event));
        }
    }

    /// Waits (up to `within`) until the store has decided every change of this node, then
    /// releases whatever the node still holds in it: called when the node leaves the cluster,
    /// once its connections are gone, so that what only it held is announced vacated now.
    pub(crate) async fn depart(&self, within: Duration) {
        let Some(once) = &self.once else {
            return;
        };
        if !once.settled(within).await {
            tracing::warn!("webhooks: the state store did not decide every departure in time");
        }
        match once.holders().release_own().await {
            Ok(orphaned) => self.orphaned(orphaned),
            Err(error) => tracing::warn!(
                %error,
                "webhooks: could not release this node's holdings; the node that reaps it will"
            ),
        }
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
        if let Some(json) = self.encode(event) {
            self.queue(&json);
        }
    }

    /// `event` as JSON, if its kind is sent.
    fn encode(&self, event: &Wire<'_>) -> Option<Bytes> {
        if !self.config.events.contains(&event.name) {
            return None;
        }
        serde_json::to_vec(event)
            .inspect_err(|error| tracing::warn!(%error, "a webhook event could not be encoded"))
            .ok()
            .map(Bytes::from)
    }

    /// Queues an encoded event for every endpoint.
    fn queue(&self, json: &Bytes) {
        for queue in &self.queues {
            if queue.push(json.clone()) {
                self.count_dropped(1);
            }
        }
    }

    /// Counts `events` dropped before they reached every endpoint's queue.
    fn count_dropped(&self, events: usize) {
        let dropped = (events * self.queues.len()) as u64;
        self.hub
            .counters()
            .webhook_events_dropped
            .fetch_add(dropped, Ordering::Relaxed);
    }
}

/// The change of this node's holdings behind a hub event, for events that are the cluster's
/// only when the store says so.
fn holding(event: &HubEvent) -> Option<Holding> {
    let (held, gained) = match event {
        HubEvent::RoomOccupied { room } => (Held::Room(room.clone()), true),
        HubEvent::RoomVacated { room } => (Held::Room(room.clone()), false),
        HubEvent::MemberAdded { room, user } => (Held::Member(room.clone(), user.clone()), true),
        HubEvent::MemberRemoved { room, user } => (Held::Member(room.clone(), user.clone()), false),
        HubEvent::ChannelOccupied { channel } => (Held::Channel(channel.clone()), true),
        HubEvent::ChannelVacated { channel } => (Held::Channel(channel.clone()), false),
        HubEvent::Connected { presence } => (Held::User(presence.user_id.clone()), true),
        HubEvent::Disconnected { presence } => (Held::User(presence.user_id.clone()), false),
        HubEvent::PresenceChanged { .. } => return None,
    };
    Some(Holding { held, gained })
}

/// The event that ends what `name` starts, or starts what it ends (the store counts both when
/// either is sent).
fn counterpart(name: EventName) -> EventName {
    match name {
        EventName::RoomOccupied => EventName::RoomVacated,
        EventName::RoomVacated => EventName::RoomOccupied,
        EventName::MemberAdded => EventName::MemberRemoved,
        EventName::MemberRemoved => EventName::MemberAdded,
        EventName::ChannelOccupied => EventName::ChannelVacated,
        EventName::ChannelVacated => EventName::ChannelOccupied,
        EventName::PresenceChanged => EventName::PresenceChanged,
        EventName::ClientMessage => EventName::ClientMessage,
    }
}
