//! The application's side: [`Client`] (a cheap cloneable handle that queues frames and waits
//! for replies), its [`Room`] and [`Channel`] helpers, and [`Events`], the stream of what the
//! server sends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use switchboard_protocol::{ClientKind, HistoryPayload, StreamPosition};
use tokio::sync::{mpsc, oneshot};

use crate::config::ClientConfig;
use crate::error::Error;
use crate::event::{Event, Frame};
use crate::history::{self, HistoryQuery};
use crate::position::StreamKey;
use crate::shared::Shared;
use crate::task::Task;

/// How long the helpers ([`Room::join`], [`Channel::subscribe`], …) wait for their reply.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a Switchboard server that survives disconnects: it reconnects with
/// backoff, rejoins rooms, resubscribes channels, restores presence and then sends what was
/// queued meanwhile, in order.
///
/// Cloning is cheap; the connection closes when [`Client::close`] is called or the last
/// clone is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Closes the connection when the last handle goes.
struct Inner {
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// A user's presence status, as set with [`Client::set_presence`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Online (the automatic status).
    Online,
    /// Away until set back to online.
    Away,
    /// Appear offline until set back to online.
    Offline,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Offline => "offline",
        }
    }
}

impl Client {
    /// Starts a client and waits for its first connection (retrying per the reconnect
    /// policy). Fails with [`Error::Refused`] when the server refuses the client, and
    /// [`Error::GaveUp`] when the policy's attempts run out first. Must be called inside a
    /// tokio runtime; the connection runs on a task of its own.
    pub async fn connect(config: ClientConfig) -> Result<(Self, Events), Error> {
        let url = config.connect_url()?;
        let shared = Shared::new(config.queue_capacity);
        let (events, receiver) = mpsc::channel(config.event_capacity);
        let (ready, first) = oneshot::channel();
        tokio::spawn(Task::new(config, url, shared.clone(), events, ready).run());
        let client = Self {
            inner: Arc::new(Inner { shared }),
        };
        match first.await {
            Ok(Ok(())) => Ok((client, Events { receiver })),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::Closed),
        }
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Queues `{type, payload}` without waiting for anything. Fails when the queue is full
    /// or the client is closed.
    ///
    /// A room `message` or channel `publish` to a stream the client follows is sent with an
    /// id: its `ack` tells the client the message's offset (the sender does not receive its
    /// own room message), so a rejoin does not replay it.
    pub fn send(&self, kind: &str, payload: impl Serialize) -> Result<(), Error> {
        let payload = to_value(payload)?;
        let own = StreamKey::of_own(kind, &payload);
        self.shared().push(own, |id| {
            let mut frame = json!({"type": kind, "payload": payload});
            if let Some(id) = id {
                frame["id"] = json!(id);
            }
            frame.to_string()
        })
    }

    /// Sends `{type, payload, id}` and waits for the server's answer with that id: the direct
    /// reply (such as `room_joined`) or the `ack`, whichever comes first. An `error` reply
    /// fails with [`Error::Server`]; no answer within `timeout` (counted from now, including
    /// any time queued while disconnected) fails with [`Error::Timeout`].
    pub async fn request(
        &self,
        kind: &str,
        payload: impl Serialize,
        timeout: Duration,
    ) -> Result<Frame, Error> {
        let payload = to_value(payload)?;
        let own = StreamKey::of_own(kind, &payload);
        let (id, reply) = self.shared().push_request(own, |id| {
            json!({"type": kind, "payload": payload, "id": id}).to_string()
        })?;
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => {
                self.shared().forget(&id);
                Err(Error::Timeout(timeout))
            }
        }
    }

    /// Reads a room's or channel's retained messages: each publication is the frame as it
    /// was delivered, with its `offset` (turn it into an [`Event`] with `Event::from`).
    /// Fails with [`Error::Server`] (`FORBIDDEN` without the right to join or subscribe,
    /// `INVALID_MESSAGE` when history is off or the limit is too large).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard_client::Client) -> Result<(), switchboard_client::Error> {
    /// use switchboard_client::HistoryQuery;
    ///
    /// let page = client.history(HistoryQuery::room("general").limit(50)).await?;
    /// for message in &page.publications {
    ///     println!("{:?} {}", message.offset, message.payload["content"]);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn history(&self, query: HistoryQuery) -> Result<HistoryPayload<Frame>, Error> {
        let reply = self
            .request(
                ClientKind::History.as_str(),
                query.payload(),
                DEFAULT_REQUEST_TIMEOUT,
            )
            .await?;
        history::page(reply)
    }

    /// A room: join, leave, send.
    pub fn room(&self, name: impl Into<String>) -> Room<'_> {
        Room {
            client: self,
            name: name.into(),
        }
    }

    /// A pub/sub channel: subscribe, unsubscribe, publish.
    pub fn channel(&self, name: impl Into<String>) -> Channel<'_> {
        Channel {
            client: self,
            name: name.into(),
        }
    }

    /// Sends `broadcast` (every connection gets it, subject to the server's permission).
    pub fn broadcast(&self, content: impl Serialize) -> Result<(), Error> {
        self.send(
            ClientKind::Broadcast.as_str(),
            json!({"content": to_value(content)?}),
        )
    }

    /// Sets this user's presence; it is set again after every reconnect.
    pub fn set_presence(&self, status: Status, metadata: Option<Value>) -> Result<(), Error> {
        let mut payload = json!({"status": status.as_str()});
        if let Some(metadata) = metadata {
            payload["metadata"] = metadata;
        }
        self.send(ClientKind::Presence.as_str(), &payload)?;
        self.shared().set_presence(payload);
        Ok(())
    }

    /// The rooms rejoined after a reconnect (those joined and not left), in join order.
    pub fn rooms(&self) -> Vec<String> {
        self.shared().rooms()
    }

    /// The channels resubscribed after a reconnect.
    pub fn channels(&self) -> Vec<String> {
        self.shared().channels()
    }

    /// Closes the connection (close 1000) and stops reconnecting. Frames already queued are
    /// sent first when connected; waiting requests fail with [`Error::Closed`]; [`Events`]
    /// ends with [`Event::Closed`].
    pub fn close(&self) {
        self.shared().close();
    }
}

/// A room of a [`Client`].
pub struct Room<'a> {
    client: &'a Client,
    name: String,
}

impl Room<'_> {
    /// Joins the room and returns the `room_joined` reply; the room is rejoined after every
    /// reconnect until left.
    pub async fn join(&self) -> Result<Frame, Error> {
        let reply = self
            .client
            .request(
                ClientKind::JoinRoom.as_str(),
                json!({"room": self.name}),
                DEFAULT_REQUEST_TIMEOUT,
            )
            .await?;
        self.client.shared().joined(&self.name);
        Ok(reply)
    }

    /// Leaves the room (and stops rejoining it).
    pub async fn leave(&self) -> Result<Frame, Error> {
        self.client.shared().left(&self.name);
        self.client
            .request(
                ClientKind::LeaveRoom.as_str(),
                json!({"room": self.name}),
                DEFAULT_REQUEST_TIMEOUT,
            )
            .await
    }

    /// Where the client is in the room's stream: the epoch and the last offset received or
    /// acked. Sent as `since` when the room is rejoined after a reconnect. `None` before the
    /// first join, after leaving, or when history is off.
    pub fn position(&self) -> Option<StreamPosition> {
        (self.client.shared()).position(&StreamKey::Room(self.name.clone()))
    }

    /// Queues a `message` with `content` to the room's other members.
    pub fn send(&self, content: impl Serialize) -> Result<(), Error> {
        let content = to_value(content)?;
        self.client.send(
            ClientKind::Message.as_str(),
            json!({"room": self.name, "content": content}),
        )
    }
}

/// A pub/sub channel of a [`Client`].
pub struct Channel<'a> {
    client: &'a Client,
    name: String,
}

impl Channel<'_> {
    /// Subscribes and waits for `subscribed`; the subscription is renewed after every
    /// reconnect until unsubscribed. Publications arrive as [`Event::Publish`].
    pub async fn subscribe(&self) -> Result<Frame, Error> {
        let reply = self
            .client
            .request(
                ClientKind::Subscribe.as_str(),
                json!({"channel": self.name}),
                DEFAULT_REQUEST_TIMEOUT,
            )
            .await?;
        self.client.shared().subscribed(&self.name);
        Ok(reply)
    }

    /// Unsubscribes.
    pub async fn unsubscribe(&self) -> Result<Frame, Error> {
        self.client.shared().unsubscribed(&self.name);
        self.client
            .request(
                ClientKind::Unsubscribe.as_str(),
                json!({"channel": self.name}),
                DEFAULT_REQUEST_TIMEOUT,
            )
            .await
    }

    /// Where the client is in the channel's stream, as [`Room::position`].
    pub fn position(&self) -> Option<StreamPosition> {
        (self.client.shared()).position(&StreamKey::Channel(self.name.clone()))
    }

    /// Queues a publication of `data` to the channel's subscribers.
    pub fn publish(&self, data: impl Serialize) -> Result<(), Error> {
        let data = to_value(data)?;
        self.client.send(
            ClientKind::Publish.as_str(),
            json!({"channel": self.name, "data": data}),
        )
    }
}

/// The events of a [`Client`], in the order they happened; ends after [`Event::Closed`].
/// Also a [`futures_util::Stream`].
pub struct Events {
    receiver: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client has stopped and every event was taken.
    pub async fn recv(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }

    /// An event already received, without waiting; `None` when there is none right now.
    /// After a [`Client::request`] returns, every frame the server sent before its reply is
    /// already here.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.receiver.try_recv().ok()
    }
}

impl futures_util::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.receiver.poll_recv(cx)
    }
}

/// Serializes a payload; a type that cannot be JSON (a map with non-string keys) is refused.
fn to_value(value: impl Serialize) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(Error::Payload)
}
