//! Publications: what one is ([`Publication`]), its `publish` frame, the hub's one path that
//! delivers it to this node's subscribers (from a client, the APIs or another node), and the
//! library's [`PubSub`] handle. Subscribing a connection (with recovery) is in `streams.rs`.

use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::channels::{PublicationHandler, Recipients, Subscriber, SubscriberId};
use super::{ConnHandle, Hub, HubInner, Offset, Sent, Target};
use crate::broker::Topic;
use crate::ids::{ChannelId, ChannelSpec, ConnId, NameError, StreamId, UserId};
use crate::protocol::{ServerFrame, ServerKind, now_ms};
use crate::ws::frame;

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
    /// Its place in the channel's stream (`None` when history is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The published data (the `payload` of the `publish` frame).
    #[serde(rename = "payload")]
    pub data: Value,
}

impl Publication {
    /// Encodes its `publish` frame.
    pub(crate) fn frame(&self) -> Bytes {
        self.frame_unencoded().encode()
    }

    /// Its `publish` frame, to encode.
    pub(crate) fn frame_unencoded(&self) -> ServerFrame<'_, &Value> {
        let mut frame = ServerFrame::new(ServerKind::Publish, &self.data)
            .channel(self.channel.as_str())
            .at(self.timestamp);
        if let Some(user) = &self.user_id {
            frame = frame.user(user.as_str());
        }
        if let Some(offset) = self.offset {
            frame = frame.offset(offset);
        }
        frame
    }
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

impl Hub {
    /// Unsubscribes a connection; returns whether it was subscribed. In cluster mode the
    /// channel's copy is released with its last subscriber, under the stream's lock (so that a
    /// subscription being answered meanwhile sees it).
    pub(crate) fn unsubscribe_conn(&self, spec: &ChannelSpec, conn: &ConnHandle) -> bool {
        let inner = &self.inner;
        let remove = || {
            inner
                .channels
                .remove(spec, SubscriberId::Conn(conn.id()), &inner.observers())
        };
        match spec {
            ChannelSpec::Exact(channel) if inner.cluster.store().is_some() => {
                let id = StreamId::Channel(channel.clone());
                let mut stream = self.lock_stream(&id);
                let removed = remove();
                self.release_if_vacated(&id, &mut stream);
                removed
            }
            _ => remove(),
        }
    }

    /// Publishes to this node's subscribers (connections but `except`, and handlers) and to
    /// the other nodes. With history on, the publication is given the channel's next offset
    /// and kept. Returns the local connections reached and the offset.
    pub(crate) fn publish_to_channel(
        &self,
        mut publication: Publication,
        except: Option<ConnId>,
        ack: Option<(&ConnHandle, &RawValue)>,
    ) -> Sent {
        let inner = &self.inner;
        let channel = publication.channel.clone();
        let topic = || Topic::Channel(channel.clone());
        if inner.history.enabled() && inner.cluster.store().is_some() {
            // Handlers are called where it is delivered, this node included (`shared.rs`).
            let frame = publication.frame_unencoded();
            return self.append(StreamId::Channel(channel.clone()), frame, except, ack);
        }
        let recipients = if inner.history.enabled() {
            let mut stream = inner.history.channel(&channel, self.now_ms());
            publication.offset = Some(stream.next_offset());
            let frame = publication.frame();
            stream.push(frame.clone());
            let recipients = self.deliver_to_subscribers(&channel, &frame, except);
            inner.cluster.publish(self.node_id(), topic(), frame);
            recipients
        } else {
            let frame = publication.frame();
            let recipients = self.deliver_to_subscribers(&channel, &frame, except);
            inner.cluster.publish(self.node_id(), topic(), frame);
            recipients
        };
        // Outside the stream's lock: a handler may publish again.
        for handler in recipients.handlers {
            handler(&publication);
        }
        Sent {
            delivered: recipients.delivered,
            offset: publication.offset.map_or(Offset::None, Offset::Given),
        }
    }

    /// Delivers a publication that came from another node.
    pub(super) fn deliver_remote_publication(&self, channel: &ChannelId, frame: &Bytes) -> usize {
        let recipients = self.deliver_to_subscribers(channel, frame, None);
        if !recipients.handlers.is_empty() {
            match serde_json::from_slice::<Publication>(frame::server_payload(frame)) {
                Ok(publication) => {
                    for handler in recipients.handlers {
                        handler(&publication);
                    }
                }
                Err(error) => tracing::warn!(%error, %channel, "undecodable remote publication"),
            }
        }
        recipients.delivered
    }

    /// Offers a `publish` frame to the channel's local subscribers; returns the handlers to
    /// call.
    pub(super) fn deliver_to_subscribers(
        &self,
        channel: &ChannelId,
        frame: &Bytes,
        except: Option<ConnId>,
    ) -> Recipients {
        let accepted = Instant::now();
        let outgoing = super::Outgoing::new(frame);
        let recipients = self.inner.channels.deliver(channel, except, |handle| {
            self.deliver_shared(handle, &outgoing)
        });
        self.fanned_out(accepted, Target::Channel, recipients.delivered, frame.len());
        recipients
    }

    /// The pub/sub handle: subscribe handlers to channels, publish to channels.
    pub fn pubsub(&self) -> PubSub<'_> {
        PubSub { hub: self }
    }
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
        let inner = &self.hub.inner;
        inner
            .channels
            .add(&spec, Subscriber::Handler(id, handler), &inner.observers());
        Ok(Subscription {
            hub: Arc::downgrade(inner),
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
            offset: None,
            data: serde_json::to_value(data)?,
        };
        Ok(self
            .hub
            .publish_to_channel(publication, None, None)
            .delivered)
    }
}

impl Subscription {
    /// Unsubscribes the handler.
    pub fn unsubscribe(self) {}
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(inner) = self.hub.upgrade() {
            inner.channels.remove(
                &self.spec,
                SubscriberId::Handler(self.id),
                &inner.observers(),
            );
        }
    }
}

#[cfg(test)]
#[path = "pubsub_tests.rs"]
mod tests;
