//! Publications: what one is ([`Publication`]), its `publish` frame, the hub's one path that
//! delivers it to this node's subscribers (from a client, the APIs or another node), and the
//! library's [`PubSub`] handle.

use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::channels::{PublicationHandler, Subscriber, SubscriberId};
use super::{ConnHandle, Hub, HubInner, Target};
use crate::broker::Topic;
use crate::ids::{ChannelId, ChannelSpec, ConnId, NameError, UserId};
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
    /// The published data (the `payload` of the `publish` frame).
    #[serde(rename = "payload")]
    pub data: Value,
}

impl Publication {
    /// Encodes its `publish` frame.
    pub(crate) fn frame(&self) -> Bytes {
        let mut frame = ServerFrame::new(ServerKind::Publish, &self.data)
            .channel(self.channel.as_str())
            .at(self.timestamp);
        if let Some(user) = &self.user_id {
            frame = frame.user(user.as_str());
        }
        frame.encode()
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

/// Where a publication being delivered came from.
enum Source<'a> {
    /// Published on this node: handlers get it as is.
    Local(&'a Publication),
    /// From another node: handlers get it decoded from the frame, only if there are any.
    Remote,
}

impl Hub {
    /// Subscribes a connection; returns whether it was not subscribed before.
    pub(crate) fn subscribe_conn(&self, spec: &ChannelSpec, conn: &ConnHandle) -> bool {
        let inner = &self.inner;
        inner
            .channels
            .add(spec, Subscriber::Conn(conn), &inner.cluster)
    }

    /// Unsubscribes a connection; returns whether it was subscribed.
    pub(crate) fn unsubscribe_conn(&self, spec: &ChannelSpec, conn: &ConnHandle) -> bool {
        let inner = &self.inner;
        inner
            .channels
            .remove(spec, SubscriberId::Conn(conn.id()), &inner.cluster)
    }

    /// Publishes locally (connections and handlers, but not `except`) and to the other nodes.
    /// Returns the local connections reached.
    pub(crate) fn publish_to_channel(
        &self,
        publication: &Publication,
        frame: Bytes,
        except: Option<ConnId>,
    ) -> usize {
        let channel = &publication.channel;
        let delivered =
            self.deliver_publication(channel, &frame, except, Source::Local(publication));
        self.inner
            .cluster
            .publish(self.node_id(), Topic::Channel(channel.clone()), frame);
        delivered
    }

    /// Delivers a publication that came from another node.
    pub(super) fn deliver_remote_publication(&self, channel: &ChannelId, frame: &Bytes) -> usize {
        self.deliver_publication(channel, frame, None, Source::Remote)
    }

    fn deliver_publication(
        &self,
        channel: &ChannelId,
        frame: &Bytes,
        except: Option<ConnId>,
        source: Source<'_>,
    ) -> usize {
        let accepted = Instant::now();
        let recipients = self
            .inner
            .channels
            .deliver(channel, except, |handle| self.deliver(handle, frame));
        self.fanned_out(accepted, Target::Channel, recipients.delivered, frame.len());
        if recipients.handlers.is_empty() {
            return recipients.delivered;
        }
        let decoded;
        let publication = match source {
            Source::Local(publication) => publication,
            Source::Remote => {
                match serde_json::from_slice::<Publication>(frame::server_payload(frame)) {
                    Ok(publication) => {
                        decoded = publication;
                        &decoded
                    }
                    Err(error) => {
                        tracing::warn!(%error, %channel, "undecodable remote publication");
                        return recipients.delivered;
                    }
                }
            }
        };
        for handler in recipients.handlers {
            handler(publication);
        }
        recipients.delivered
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
            .add(&spec, Subscriber::Handler(id, handler), &inner.cluster);
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
            data: serde_json::to_value(data)?,
        };
        Ok(self
            .hub
            .publish_to_channel(&publication, publication.frame(), None))
    }
}

impl Subscription {
    /// Unsubscribes the handler.
    pub fn unsubscribe(self) {}
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(inner) = self.hub.upgrade() {
            inner
                .channels
                .remove(&self.spec, SubscriberId::Handler(self.id), &inner.cluster);
        }
    }
}

#[cfg(test)]
#[path = "pubsub_tests.rs"]
mod tests;
