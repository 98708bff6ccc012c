//! Pub/sub channels: WebSocket subscribers and application handlers of exact channels and of
//! patterns (`room:*`), delivery of publications, and the library's [`PubSub`] handle.
//!
//! A channel exists only while it has a subscriber (a connection or a handler): the last
//! unsubscribe removes its entry, so channels nobody listens to hold no memory. A connection
//! subscribed both to a channel and to a pattern matching it gets each publication once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ConnHandle, Hub, HubInner, Target};
use crate::broker::Topic;
use crate::cluster::Event;
use crate::ids::{ChannelId, ChannelSpec, ConnId, NameError, UserId};
use crate::protocol::{ServerFrame, ServerKind, now_ms};
use crate::ws::frame;

/// An application handler of publications.
pub(crate) type PublicationHandler = Arc<dyn Fn(&Publication) + Send + Sync>;

/// One publication on a channel, as application handlers receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Publication {
    /// The channel it was published on.
    pub channel: ChannelId,
    /// The publishing user; `None` when published by the server (library or HTTP API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// Milliseconds since the epoch when it was published.
    pub timestamp: u64,
    /// The published data (the `payload` of the `publish` frame).
    #[serde(rename = "payload")]
    pub data: Value,
}

/// Why a publication was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The channel name is not valid.
    #[error("invalid channel name: {0}")]
    InvalidChannel(#[from] NameError),
    /// `presence:` channels carry presence changes only.
    #[error("presence channels are reserved for presence updates")]
    Reserved,
    /// The data could not be serialized as JSON.
    #[error("cannot serialize the data: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// The subscribers of one channel or pattern.
#[derive(Default)]
pub(crate) struct Subscribers {
    conns: HashMap<ConnId, ConnHandle>,
    handlers: Vec<(u64, PublicationHandler)>,
}

impl Subscribers {
    fn is_empty(&self) -> bool {
        self.conns.is_empty() && self.handlers.is_empty()
    }
}

/// Something to add to or remove from a channel's subscribers.
enum Member<'a> {
    Conn(&'a ConnHandle),
    Handler(u64, Option<PublicationHandler>),
}

impl Hub {
    /// Subscribes a connection; returns whether it was not subscribed before.
    pub(crate) fn subscribe_conn(&self, spec: &ChannelSpec, conn: &ConnHandle) -> bool {
        self.update_subscribers(spec, Member::Conn(conn), true)
    }

    /// Unsubscribes a connection; returns whether it was subscribed.
    pub(crate) fn unsubscribe_conn(&self, spec: &ChannelSpec, conn: &ConnHandle) -> bool {
        self.update_subscribers(spec, Member::Conn(conn), false)
    }

    /// Adds or removes a member, creating or deleting the entry (and the broker subscription)
    /// as the first member arrives or the last leaves.
    fn update_subscribers(&self, spec: &ChannelSpec, member: Member<'_>, add: bool) -> bool {
        let inner = &self.inner;
        let change = |subscribers: &mut Subscribers| match (&member, add) {
            (Member::Conn(conn), true) => subscribers
                .conns
                .insert(conn.id(), (*conn).clone())
                .is_none(),
            (Member::Conn(conn), false) => subscribers.conns.remove(&conn.id()).is_some(),
            (Member::Handler(id, Some(handler)), true) => {
                subscribers.handlers.push((*id, handler.clone()));
                true
            }
            (Member::Handler(id, _), _) => {
                let before = subscribers.handlers.len();
                subscribers.handlers.retain(|(h, _)| h != id);
                before != subscribers.handlers.len()
            }
        };
        match spec {
            ChannelSpec::Exact(channel) => {
                let mut channels = inner.channels.write(channel);
                let topic = || Topic::Channel(channel.clone());
                update_entry(
                    &mut channels,
                    channel,
                    add,
                    change,
                    || self.channel_created(&topic()),
                    || self.channel_removed(&topic()),
                )
            }
            ChannelSpec::Prefix(prefix) => {
                let mut patterns = inner.patterns.write();
                let topic = || Topic::ChannelPattern(prefix.clone());
                update_entry(
                    &mut patterns,
                    prefix,
                    add,
                    change,
                    || self.channel_created(&topic()),
                    || self.channel_removed(&topic()),
                )
            }
        }
    }

    fn channel_created(&self, topic: &Topic) {
        self.inner.channel_count.fetch_add(1, Ordering::Relaxed);
        self.inner.broker.subscribe(topic);
        self.announce_channel(topic, true);
    }

    fn channel_removed(&self, topic: &Topic) {
        self.inner.channel_count.fetch_sub(1, Ordering::Relaxed);
        self.inner.broker.unsubscribe(topic);
        self.announce_channel(topic, false);
    }

    fn announce_channel(&self, topic: &Topic, present: bool) {
        self.announce(|| Event::Channel {
            channel: match topic {
                Topic::ChannelPattern(prefix) => prefix.to_string(),
                Topic::Channel(channel) => channel.to_string(),
                other => format!("{other:?}"),
            },
            present,
        });
    }

    /// Adds the connections subscribed to `channel` (exactly or by pattern) to `into`.
    pub(crate) fn collect_channel_subscribers(
        &self,
        channel: &ChannelId,
        into: &mut HashMap<ConnId, ConnHandle>,
    ) {
        if let Some(subscribers) = self.inner.channels.read(channel).get(channel) {
            into.extend(subscribers.conns.iter().map(|(id, h)| (*id, h.clone())));
        }
        for (prefix, subscribers) in self.inner.patterns.read().iter() {
            if prefix.matches(channel) {
                into.extend(subscribers.conns.iter().map(|(id, h)| (*id, h.clone())));
            }
        }
    }

    /// Delivers an encoded `publish` frame to the local subscribers of `channel` (each
    /// connection once) except `except`; returns the number of connections and the handlers
    /// to call (called by the caller, outside every lock).
    pub(crate) fn deliver_to_channel(
        &self,
        channel: &ChannelId,
        frame: &Bytes,
        except: Option<ConnId>,
    ) -> (usize, Vec<PublicationHandler>) {
        let mut delivered = 0;
        let mut handlers = Vec::new();
        let mut seen: HashSet<ConnId> = HashSet::new();
        let patterns = self.inner.patterns.read();
        let matching: Vec<&Subscribers> = patterns
            .iter()
            .filter(|(prefix, _)| prefix.matches(channel))
            .map(|(_, subscribers)| subscribers)
            .collect();
        {
            let channels = self.inner.channels.read(channel);
            if let Some(subscribers) = channels.get(channel) {
                for (id, handle) in &subscribers.conns {
                    if !matching.is_empty() {
                        seen.insert(*id);
                    }
                    if Some(*id) != except && self.deliver(handle, frame) {
                        delivered += 1;
                    }
                }
                handlers.extend(subscribers.handlers.iter().map(|(_, h)| h.clone()));
            }
        }
        for subscribers in matching {
            for (id, handle) in &subscribers.conns {
                if Some(*id) != except && seen.insert(*id) && self.deliver(handle, frame) {
                    delivered += 1;
                }
            }
            handlers.extend(subscribers.handlers.iter().map(|(_, h)| h.clone()));
        }
        (delivered, handlers)
    }

    /// Publishes locally (connections and handlers) and to the other nodes.
    pub(crate) fn publish_to_channel(
        &self,
        publication: &Publication,
        frame: Bytes,
        except: Option<ConnId>,
    ) -> usize {
        let accepted = Instant::now();
        let (delivered, handlers) = self.deliver_to_channel(&publication.channel, &frame, except);
        self.fanned_out(accepted, Target::Channel, delivered, frame.len());
        for handler in handlers {
            handler(publication);
        }
        self.inner.broker.publish(crate::broker::Envelope {
            origin: self.node_id().clone(),
            topic: Topic::Channel(publication.channel.clone()),
            frame,
        });
        delivered
    }

    /// Delivers a publication that came from another node.
    pub(crate) fn deliver_remote_publication(&self, channel: &ChannelId, frame: &Bytes) -> usize {
        let accepted = Instant::now();
        let (delivered, handlers) = self.deliver_to_channel(channel, frame, None);
        self.fanned_out(accepted, Target::Channel, delivered, frame.len());
        if !handlers.is_empty() {
            match serde_json::from_slice::<Publication>(frame::server_payload(frame)) {
                Ok(publication) => handlers.iter().for_each(|handler| handler(&publication)),
                Err(error) => tracing::warn!(%error, %channel, "undecodable remote publication"),
            }
        }
        delivered
    }

    /// Channels and patterns with at least one subscriber.
    pub(crate) fn channel_count(&self) -> usize {
        self.inner.channel_count.load(Ordering::Relaxed)
    }

    /// The pub/sub handle: subscribe handlers to channels, publish to channels.
    pub fn pubsub(&self) -> PubSub<'_> {
        PubSub { hub: self }
    }
}

fn update_entry<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Subscribers>,
    key: &K,
    add: bool,
    change: impl FnOnce(&mut Subscribers) -> bool,
    created: impl FnOnce(),
    removed: impl FnOnce(),
) -> bool {
    if add {
        let entry = map.entry(key.clone()).or_insert_with(|| {
            created();
            Subscribers::default()
        });
        return change(entry);
    }
    let Some(entry) = map.get_mut(key) else {
        return false;
    };
    let changed = change(entry);
    if entry.is_empty() {
        map.remove(key);
        removed();
    }
    changed
}

/// The library's pub/sub handle; see [`Hub::pubsub`].
pub struct PubSub<'a> {
    hub: &'a Hub,
}

/// Keeps a handler subscribed; dropping it (or [`Subscription::unsubscribe`]) removes it.
#[must_use = "dropping the subscription unsubscribes the handler"]
pub struct Subscription {
    hub: Weak<HubInner>,
    spec: ChannelSpec,
    id: u64,
}

impl PubSub<'_> {
    /// Calls `handler` with every publication on `channel` (a name, or a pattern ending in
    /// `*` such as `room:*`) from any client, the server APIs or other nodes, until the
    /// returned subscription is dropped. The handler runs on the publishing thread: keep it
    /// short and do not block.
    pub fn subscribe(
        &self,
        channel: &str,
        handler: impl Fn(&Publication) + Send + Sync + 'static,
    ) -> Result<Subscription, NameError> {
        let spec = ChannelSpec::parse(channel, self.hub.config().limits.max_name_length)?;
        let id = self.hub.next_id();
        let handler: PublicationHandler = Arc::new(handler);
        self.hub
            .update_subscribers(&spec, Member::Handler(id, Some(handler)), true);
        Ok(Subscription {
            hub: Arc::downgrade(&self.hub.inner),
            spec,
            id,
        })
    }

    /// Publishes `data` on `channel` to every subscriber (WebSocket clients get a `publish`
    /// frame, handlers a [`Publication`]) on every node. Returns the local connections reached.
    pub fn publish(&self, channel: &str, data: &impl Serialize) -> Result<usize, PublishError> {
        self.publish_as(channel, data, None)
    }

    /// Like [`PubSub::publish`], attributing the publication to `user` (`userId` in frames).
    pub fn publish_as(
        &self,
        channel: &str,
        data: &impl Serialize,
        user: Option<&UserId>,
    ) -> Result<usize, PublishError> {
        let channel = ChannelId::parse(channel, self.hub.config().limits.max_name_length)?;
        if channel.watched_user().is_some() {
            return Err(PublishError::Reserved);
        }
        let publication = Publication {
            channel,
            user_id: user.cloned(),
            timestamp: now_ms(),
            data: serde_json::to_value(data)?,
        };
        let frame = publish_frame(&publication);
        Ok(self.hub.publish_to_channel(&publication, frame, None))
    }
}

/// Encodes the `publish` frame of a publication.
pub(crate) fn publish_frame(publication: &Publication) -> Bytes {
    let mut frame = ServerFrame::new(ServerKind::Publish, &publication.data)
        .channel(publication.channel.as_str())
        .at(publication.timestamp);
    if let Some(user) = &publication.user_id {
        frame = frame.user(user.as_str());
    }
    frame.encode()
}

impl Subscription {
    /// Unsubscribes the handler.
    pub fn unsubscribe(self) {}
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(inner) = self.hub.upgrade() {
            Hub { inner }.update_subscribers(&self.spec, Member::Handler(self.id, None), false);
        }
    }
}

#[cfg(test)]
#[path = "channels_tests.rs"]
mod tests;
