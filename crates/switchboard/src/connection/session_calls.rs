//! The session's requests to the backend proxies (`crate::proxy`): a join or subscribe that
//! passed the local checks waits for the backend's approval, and a frame of a type nobody
//! else handles waits for the backend's answer (RPC).
//!
//! The session is synchronous; a request is not. While one is out the session holds it as a
//! [`Call`] (boxed: an idle connection pays one empty pointer) and the connection's task polls
//! it (`Driver::poll_read`) instead of reading: the connection reads no further frame until
//! the answer is applied, so its frames keep their order, and it still writes its outbox,
//! answers nothing it has not read, and closes when asked. The bytes read past the frame that
//! made the call are held in the call and decoded once it is answered. A request ends within
//! `--proxy-timeout`; a close abandons it.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde_json::value::RawValue;

use super::{Aside, Done, Session};
use crate::config::ProxyConfig;
use crate::connection::refused::Refused;
use crate::handlers::Reject;
use crate::hub::ProxyKind;
use crate::ids::{ChannelSpec, RoomId};
use crate::protocol::{Command, ServerFrame, ServerKind, StreamPosition};
use crate::proxy::{Proxy, ProxyError, RpcRequest, RpcVerdict, StreamRequest, StreamVerdict};

/// A request to the backend that resolves to what to do with the client frame it is for.
type Pending = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// A request to the backend, out on behalf of one client frame.
pub(crate) struct Call {
    /// The request.
    answer: Pending,
    /// The client frame's `id`.
    id: Option<Box<RawValue>>,
    /// Bytes read after the frame, not yet decoded (they start at a frame boundary).
    held: Vec<u8>,
}

/// A backend's answer, with what the frame asked for.
enum Answer {
    Join {
        room: RoomId,
        since: Option<StreamPosition>,
        verdict: Result<StreamVerdict, ProxyError>,
    },
    Subscribe {
        channel: ChannelSpec,
        since: Option<StreamPosition>,
        verdict: Result<StreamVerdict, ProxyError>,
    },
    Rpc {
        kind: String,
        verdict: Result<RpcVerdict, ProxyError>,
    },
}

impl Session {
    /// Sends `command` to the backend when a proxy decides it and the local checks pass:
    /// returns it back when no proxy does, `None` when a call is now out (its answer finishes
    /// the command). A join of a room the connection is in, or a subscribe to a channel it
    /// has, is not asked again; a type an application handler takes never reaches the backend.
    pub(super) fn ask_backend<'a>(
        &mut self,
        command: Command<'a>,
        id: Option<&RawValue>,
    ) -> Result<Option<Command<'a>>, Refused> {
        let Some(proxy) = self.endpoint.proxy.clone() else {
            return Ok(Some(command));
        };
        if !self.decided_by(proxy.config(), &command) {
            return Ok(Some(command));
        }
        self.authorize(&command)?;
        let answer = match command {
            Command::JoinRoom { room, since } => {
                self.may_join(&room)?;
                self.ask_join(&proxy, room, since)
            }
            Command::Subscribe { channel, since } => {
                self.may_subscribe(&channel)?;
                self.ask_subscribe(&proxy, channel, since)
            }
            Command::Other { kind, payload } => self.ask_rpc(&proxy, kind, payload, id),
            command => return Ok(Some(command)),
        };
        self.set_aside(Aside::Call(Call {
            answer,
            id: id.map(ToOwned::to_owned),
            held: Vec::new(),
        }));
        Ok(None)
    }

    /// Whether a proxy of `config` decides `command`.
    fn decided_by(&self, config: &ProxyConfig, command: &Command<'_>) -> bool {
        match command {
            Command::JoinRoom { room, .. } => config.join.is_some() && !self.rooms.contains(room),
            Command::Subscribe { channel, .. } => {
                config.subscribe.is_some() && !self.channels.contains(channel)
            }
            // A server frame's type is refused as unknown: its answer would impersonate one.
            Command::Other { kind, .. } => {
                config.rpc.is_some()
                    && !self.endpoint.extensions.messages.contains_key(&**kind)
                    && !ServerKind::parse(kind).is_some_and(ServerKind::is_reserved)
            }
            _ => false,
        }
    }

    fn ask_join(&self, proxy: &Arc<Proxy>, room: RoomId, since: Option<StreamPosition>) -> Pending {
        let request = StreamRequest {
            connection_id: self.handle.id().to_string(),
            user_id: self.handle.user().as_str(),
            room: Some(room.as_str()),
            channel: None,
        };
        let approval = proxy.approve(ProxyKind::Join, &request);
        Box::pin(async move {
            let verdict = approval.await;
            Answer::Join {
                room,
                since,
                verdict,
            }
        })
    }

    fn ask_subscribe(
        &self,
        proxy: &Arc<Proxy>,
        channel: ChannelSpec,
        since: Option<StreamPosition>,
    ) -> Pending {
        let name = channel.to_string();
        let request = StreamRequest {
            connection_id: self.handle.id().to_string(),
            user_id: self.handle.user().as_str(),
            room: None,
            channel: Some(&name),
        };
        let approval = proxy.approve(ProxyKind::Subscribe, &request);
        Box::pin(async move {
            let verdict = approval.await;
            Answer::Subscribe {
                channel,
                since,
                verdict,
            }
        })
    }

    fn ask_rpc(
        &self,
        proxy: &Arc<Proxy>,
        kind: Cow<'_, str>,
        payload: Option<&RawValue>,
        id: Option<&RawValue>,
    ) -> Pending {
        let request = RpcRequest {
            connection_id: self.handle.id().to_string(),
            user_id: self.handle.user().as_str(),
            kind: &kind,
            payload,
            id,
        };
        let answered = proxy.rpc(&request);
        let kind = kind.into_owned();
        Box::pin(async move {
            let verdict = answered.await;
            Answer::Rpc { kind, verdict }
        })
    }

    /// Whether a call is out: the connection reads nothing until it is answered.
    pub(crate) fn waiting(&self) -> bool {
        matches!(self.aside(), Some(Aside::Call(_)))
    }

    /// Keeps bytes read after the frame that made the call, to be decoded after the answer.
    pub(crate) fn hold(&mut self, bytes: &[u8]) {
        if let Some(call) = self.call_mut() {
            call.held.extend_from_slice(bytes);
        }
    }

    /// Polls the call that is out; once it is answered, applies the answer and returns the
    /// bytes held meanwhile. Without a call, nothing.
    pub(crate) fn poll_call(&mut self, cx: &mut Context<'_>) -> Poll<Vec<u8>> {
        let Some(call) = self.call_mut() else {
            return Poll::Ready(Vec::new());
        };
        let Poll::Ready(answer) = call.answer.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        let Some(Aside::Call(call)) = self.take_aside(|aside| matches!(aside, Aside::Call(_)))
        else {
            return Poll::Ready(Vec::new());
        };
        if !self.closing() {
            self.answered(answer, call.id.as_deref());
        }
        Poll::Ready(call.held)
    }

    /// Drops the call that is out (the connection is closing): its answer would apply to
    /// nothing. Returns the bytes held meanwhile (the client's close may be among them).
    pub(crate) fn abandon_call(&mut self) -> Vec<u8> {
        match self.take_aside(|aside| matches!(aside, Aside::Call(_))) {
            Some(Aside::Call(call)) => call.held,
            _ => Vec::new(),
        }
    }

    /// Finishes the frame the call was for, as if it had been executed now.
    fn answered(&mut self, answer: Answer, id: Option<&RawValue>) {
        let result = match answer {
            Answer::Join {
                room,
                since,
                verdict,
            } => approved(verdict).and_then(|()| self.join(room, since, id)),
            Answer::Subscribe {
                channel,
                since,
                verdict,
            } => approved(verdict).and_then(|()| self.subscribe(channel, since, id)),
            Answer::Rpc { kind, verdict } => match verdict {
                Ok(RpcVerdict::Result(payload)) => {
                    self.reply(ServerFrame::custom(&kind, &*payload).reply_to(id).encode());
                    Ok(Done::Ack(None))
                }
                Ok(RpcVerdict::Error { code, message }) => {
                    Err(Refused::Handler(Reject::new(code, message)))
                }
                Err(error) => Err(Refused::Backend(error)),
            },
        };
        self.complete(id, result);
    }
}

/// Whether the backend approved, as the refusal the client gets when it did not.
fn approved(verdict: Result<StreamVerdict, ProxyError>) -> Result<(), Refused> {
    match verdict {
        Ok(StreamVerdict::Allowed) => Ok(()),
        Ok(StreamVerdict::Refused(message)) => Err(Refused::ByBackend(message)),
        Err(error) => Err(Refused::Backend(error)),
    }
}
