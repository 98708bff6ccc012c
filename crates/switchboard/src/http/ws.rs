//! The WebSocket upgrade: validates the handshake, the origin and the identity, answers 101,
//! and runs the connection on the upgraded stream.
//!
//! Identity: with authentication off, `?userId=` (or a generated `anon-…` id). With it on, a
//! token from `Authorization: Bearer …` or `?token=`; a bad one is answered 401 without an
//! upgrade, and a connection without one is upgraded but must send an `auth` frame first
//! (`connection::authenticate`). With a connect proxy the backend decides instead of the JWT
//! key (`ws_backend.rs`).
//!
//! When the stream under hyper is a plain `TcpStream` (our server, and `axum::serve`), it is
//! taken back from hyper after the upgrade so the connection runs on the bare socket, with no
//! boxing and no buffer kept by the HTTP layer. Our server's TLS streams are taken back too
//! and run on their own monomorphization of the driver; other streams (custom servers) run
//! through hyper's upgraded I/O. Upgrades to `/` and `/ws` that the standalone server's
//! accept path read itself skip hyper altogether: [`direct`] answers them with the same
//! admission.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::AppState;
use crate::connection::{
    self, Connection, DocAccess, Endpoint, Mode, Peer, Pending, Prefixed, Stream, Terms, Verifier,
};
use crate::forwarded::ClientAddr;
use crate::hub::Counters;
use crate::ids::{DocId, UserId};
use crate::per_ip::IpSlot;
use crate::ws::extension;
use crate::ws::handshake::{self, HandshakeError, Subprotocol};

mod direct;
mod upgrading;

pub(crate) use direct::{Answer, Opened, answer};

/// Query parameters of the upgrade request.
#[derive(Debug, Deserialize)]
pub(super) struct ConnectParams {
    #[serde(rename = "userId")]
    user_id: Option<String>,
    token: Option<String>,
}

/// Who is connecting, as far as the upgrade request tells.
pub(super) enum Admission {
    Known(Peer),
    /// Authentication is on and the request carried no token.
    AwaitToken(Pending),
}

/// `GET /`: the WebSocket endpoint, or the landing page for a plain browser visit.
pub(super) async fn upgrade_or_landing(
    state: State<AppState>,
    params: Query<ConnectParams>,
    request: Request,
) -> Response {
    match handshake::check(request.method(), request.headers()) {
        Err(HandshakeError::NotUpgrade) => super::assets::landing(),
        _ => upgrade_to(state, params, request, Mode::Protocol).await,
    }
}

/// `GET /ws`: the WebSocket endpoint.
pub(super) async fn upgrade(
    state: State<AppState>,
    params: Query<ConnectParams>,
    request: Request,
) -> Response {
    upgrade_to(state, params, request, Mode::Protocol).await
}

/// `GET /echo` (when enabled): a WebSocket that echoes every message.
pub(super) async fn echo(
    state: State<AppState>,
    params: Query<ConnectParams>,
    request: Request,
) -> Response {
    upgrade_to(state, params, request, Mode::Echo).await
}

/// `GET /yjs/{document}`: a y-websocket connection to a Yjs document (DESIGN.md §8). The token
/// comes with the request (`?token=`, which y-websocket's `params` sends, or a bearer header):
/// a y-websocket client cannot send an `auth` frame.
pub(super) async fn document(
    state: State<AppState>,
    Path(name): Path<String>,
    params: Query<ConnectParams>,
    request: Request,
) -> Response {
    if !state.serves_documents {
        return (
            StatusCode::NOT_IMPLEMENTED,
            "documents need a lone node or a Redis cluster, not an application's own broker",
        )
            .into_response();
    }
    let name = match DocId::parse(&name, state.hub.config().limits.max_name_length) {
        Ok(name) => name,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid document name: {error}"),
            )
                .into_response();
        }
    };
    let access = DocAccess {
        name,
        writable: true,
    };
    upgrade_to(state, params, request, Mode::Document(access)).await
}

/// What a document connection may do, from its token: 401 without one (authentication on),
/// 403 when its `docs` claim does not cover the document.
fn authorize_document(access: DocAccess, admission: &Admission) -> Result<Mode, Box<Response>> {
    let grants = match admission {
        Admission::AwaitToken(_) => {
            return Err(Box::new(
                (
                    StatusCode::UNAUTHORIZED,
                    "a token is required: ?token= or Authorization: Bearer",
                )
                    .into_response(),
            ));
        }
        Admission::Known(peer) => peer.grants.as_deref(),
    };
    let Some(grants) = grants else {
        return Ok(Mode::Document(access));
    };
    if !grants.may_read_doc(&access.name) {
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                format!("the token does not grant document {}", access.name),
            )
                .into_response(),
        ));
    }
    let writable = grants.may_write_doc(&access.name);
    Ok(Mode::Document(DocAccess { writable, ..access }))
}

/// `503` while the node drains, before a connection is opened: a balancer can try another
/// node, and the client is not told 1001 by a connection that never served it.
pub(super) fn draining(state: &AppState) -> Option<Response> {
    if !state.hub.is_draining() {
        return None;
    }
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is shutting down: connect to another node",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Some(response)
}

/// How a connection's identity is decided.
pub(super) enum Identify {
    /// From the request: its token, or `userId` with authentication off.
    Decided(Result<Admission, Box<Response>>),
    /// By the backend's connect proxy, told this.
    AskBackend {
        proxy: Arc<crate::proxy::Proxy>,
        connect: crate::proxy::ConnectRequest,
        cookie: bool,
    },
}

impl Identify {
    /// How to decide who is connecting over `transport`: the connect proxy when it is set,
    /// otherwise the request's token (or `userId` with authentication off). Synchronous, so
    /// that no borrow of the request is held while the backend answers.
    pub(super) fn from<B>(
        state: &AppState,
        params: &ConnectParams,
        request: &axum::http::Request<B>,
        transport: &'static str,
    ) -> Self {
        match &state.endpoint.proxy {
            Some(proxy) if proxy.config().connect.is_some() => Self::AskBackend {
                proxy: proxy.clone(),
                connect: backend::connect_request(proxy, params, request, transport),
                cookie: request.headers().contains_key(header::COOKIE),
            },
            _ => Self::Decided(admit(state, params, request.headers())),
        }
    }

    /// The admission, or the response that refuses the connection.
    pub(super) async fn admission(self, state: &AppState) -> Result<Admission, Box<Response>> {
        match self {
            Self::Decided(admission) => admission,
            Self::AskBackend {
                proxy,
                connect,
                cookie,
            } => backend::admit(state, &proxy, connect, cookie).await,
        }
    }
}

async fn upgrade_to(
    State(state): State<AppState>,
    Query(params): Query<ConnectParams>,
    mut request: Request,
    mode: Mode,
) -> Response {
    let checked = match check_upgrade(&state, &params, &request, mode) {
        Ok(checked) => checked,
        Err(response) => return *response,
    };
    let accepted = match admit_upgrade(&state, checked).await {
        Ok(accepted) => accepted,
        Err(response) => return *response,
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "this connection cannot be upgraded",
        )
            .into_response();
    };
    // The per-IP count of this connection (standalone server) lasts as long as the WebSocket.
    let ip_slot = request.extensions_mut().remove::<IpSlot>();
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accepted.accept);
    if let Some(subprotocol) = accepted.subprotocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(subprotocol.name()),
        );
    }
    if let Some(answer) = accepted.extensions {
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, answer);
    }
    let task = upgrading::Upgrading::new(on_upgrade, accepted.upgraded, ip_slot);
    spawn_connection(&state, &request, task);
    response
}

/// Spawns a connection's task on the instance's tracker. The connection's logs name its
/// client (behind trusted proxies, the forwarded one). The span exists only while debug logs
/// are on: an idle connection pays nothing otherwise.
fn spawn_connection<B>(
    state: &AppState,
    request: &axum::http::Request<B>,
    task: impl Future<Output = ()> + Send + 'static,
) {
    match connection_span(request) {
        None => state.tasks.spawn(task),
        Some(span) => state
            .tasks
            .spawn(tracing::Instrument::instrument(task, span)),
    };
}

/// The span a connection's logs go in, naming its client (behind trusted proxies, the
/// forwarded one); `None` unless debug logs are on.
fn connection_span<B>(request: &axum::http::Request<B>) -> Option<tracing::Span> {
    let span = match request.extensions().get::<ClientAddr>() {
        Some(ClientAddr(client)) => tracing::debug_span!("client", address = %client),
        None => tracing::Span::none(),
    };
    (!span.is_disabled()).then_some(span)
}

/// An upgrade request that passed admission: what the 101 response says, and the connection
/// to serve after it.
struct Accepted {
    /// The `Sec-WebSocket-Accept` value.
    accept: HeaderValue,
    /// The subprotocol selected, if any.
    subprotocol: Option<Subprotocol>,
    /// The `Sec-WebSocket-Extensions` answer (permessage-deflate), if any.
    extensions: Option<HeaderValue>,
    upgraded: Upgraded,
}

/// What admission learns from an upgrade request before it may wait (for the connect
/// proxy): the request is not held across that wait.
struct Checked {
    upgrade: handshake::Upgrade,
    identify: Identify,
    mode: Mode,
    agreed: Option<extension::Agreed>,
    nodelay_set: bool,
}

/// The admission of a WebSocket upgrade, whoever parsed the request (hyper, or our own
/// reading of the request head in [`answer`]): the handshake's headers, draining, the origin
/// allowlist, the identity, a document's grants, subprotocol and permessage-deflate. Every
/// refusal is the response to send.
async fn admit_upgrade(state: &AppState, checked: Checked) -> Result<Accepted, Box<Response>> {
    let admission = checked.identify.admission(state).await?;
    let mode = match checked.mode {
        Mode::Document(access) => authorize_document(access, &admission)?,
        mode => mode,
    };
    // MessagePack is protocol v1's other encoding: `/echo` and `/yjs` have their own.
    let subprotocol = match mode {
        Mode::Protocol => checked.upgrade.subprotocol,
        Mode::Echo | Mode::Document(_) => checked
            .upgrade
            .subprotocol
            .filter(|s| *s == Subprotocol::Json),
    };
    let (deflate, extensions) = match checked.agreed {
        Some(agreed) => (Some(agreed.deflate), Some(agreed.answer)),
        None => (None, None),
    };
    Ok(Accepted {
        accept: checked.upgrade.accept,
        subprotocol,
        extensions,
        upgraded: Upgraded {
            endpoint: state.endpoint.clone(),
            admission,
            terms: Terms {
                mode,
                deflate,
                msgpack: subprotocol == Some(Subprotocol::MsgPack),
            },
            nodelay_set: checked.nodelay_set,
        },
    })
}

/// The part of the admission that reads the request, before [`admit_upgrade`].
fn check_upgrade<B>(
    state: &AppState,
    params: &ConnectParams,
    request: &axum::http::Request<B>,
    mode: Mode,
) -> Result<Checked, Box<Response>> {
    let upgrade = match handshake::check(request.method(), request.headers()) {
        Ok(upgrade) => upgrade,
        Err(error) => {
            let status = match error {
                HandshakeError::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
                _ => StatusCode::BAD_REQUEST,
            };
            let mut response = (status, error.to_string()).into_response();
            if status == StatusCode::UPGRADE_REQUIRED {
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            return Err(Box::new(response));
        }
    };
    if let Some(response) = draining(state) {
        return Err(Box::new(response));
    }
    if let Some(allowed) = &state.auth.allowed_origins
        && let Some(origin) = request.headers().get(header::ORIGIN)
        && !allowed.allows(origin.as_bytes())
    {
        return Err(Box::new(
            (StatusCode::FORBIDDEN, "origin not allowed").into_response(),
        ));
    }
    Ok(Checked {
        upgrade,
        identify: Identify::from(state, params, request, "websocket"),
        mode,
        agreed: state
            .hub
            .config()
            .compression
            .enabled
            .then(|| extension::negotiate(request.headers()))
            .flatten(),
        // Only our accept path (`server/intake.rs`) tells the client's address this way.
        nodelay_set: request.extensions().get::<ClientAddr>().is_some(),
    })
}

/// Decides who the connection is: a 401 or 400 response when the request says so wrongly.
pub(super) fn admit(
    state: &AppState,
    params: &ConnectParams,
    headers: &axum::http::HeaderMap,
) -> Result<Admission, Box<Response>> {
    let hub = &state.hub;
    let max_name = hub.config().limits.max_name_length;
    let Some(jwt) = &state.auth.jwt else {
        let user = match params.user_id.as_deref() {
            None | Some("") => UserId::anonymous(),
            Some(name) => UserId::parse(name, max_name).map_err(|e| {
                Box::new((StatusCode::BAD_REQUEST, format!("invalid userId: {e}")).into_response())
            })?,
        };
        return Ok(Admission::Known(Peer {
            user,
            grants: None,
            expires_at: None,
        }));
    };
    let token = match super::keys::bearer(headers) {
        // A header that is not UTF-8 is no JWT: verified as the empty token, it is refused.
        Some(bearer) => Some(std::str::from_utf8(bearer).unwrap_or_default()),
        None => params.token.as_deref().filter(|token| !token.is_empty()),
    };
    let Some(token) = token else {
        return Ok(Admission::AwaitToken(Pending {
            verifier: Verifier::Jwt(jwt.clone()),
            deadline: tokio::time::Instant::now() + state.auth.timeout,
            shutdown: state.shutdown.clone(),
        }));
    };
    match jwt.verify(token, max_name) {
        Ok(identity) => Ok(Admission::Known(Peer::from(identity))),
        Err(error) => {
            Counters::add(&hub.counters().auth_failures, 1);
            tracing::debug!(%error, "upgrade refused");
            let mut response =
                (StatusCode::UNAUTHORIZED, format!("invalid token: {error}")).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            Err(Box::new(response))
        }
    }
}

/// The future that serves one upgraded connection: the bare-socket and TLS paths inline (not
/// boxing the common case saves every connection an allocation), any other stream boxed.
enum ServeUpgraded {
    Tcp(Connection<TcpStream>),
    /// The TLS state (rustls buffers, keys) is boxed so that it does not grow the plain
    /// variant; a TLS connection allocates far more than one box anyway.
    Tls(Connection<Box<TlsStream<TcpStream>>>),
    Other(Pin<Box<dyn Future<Output = ()> + Send>>),
}

impl Future for ServeUpgraded {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Self::Tcp(connection) => Pin::new(connection).poll(cx),
            Self::Tls(connection) => Pin::new(connection).poll(cx),
            Self::Other(future) => future.as_mut().poll(cx),
        }
    }
}

/// An upgraded connection about to be served.
struct Upgraded {
    endpoint: Arc<Endpoint>,
    admission: Admission,
    terms: Terms,
    /// Our accept loop set `TCP_NODELAY` already (a server of the application's own did not):
    /// one system call less per handshake.
    nodelay_set: bool,
}

fn serve_upgraded(io: hyper::upgrade::Upgraded, upgraded: Upgraded) -> ServeUpgraded {
    let io = match take_back::<TcpStream>(io) {
        Ok((stream, read_ahead)) => {
            if !upgraded.nodelay_set {
                // Latency matters more than packet count for a message server.
                let _ = stream.set_nodelay(true);
            }
            return serve_stream(stream, read_ahead, upgraded, ServeUpgraded::Tcp);
        }
        Err(io) => io,
    };
    // Our accept path hands hyper the requests it does not answer itself with the bytes it
    // read put back in front (`server/intake.rs`); hyper has read them all by now.
    let io = match take_back::<Prefixed<TcpStream>>(io) {
        Ok((prefixed, read_ahead)) => {
            let (unread, stream) = prefixed.into_parts();
            let read_ahead = match read_ahead {
                None if unread.is_empty() => None,
                None => Some(unread),
                Some(read) if unread.is_empty() => Some(read),
                Some(read) => Some([read, unread].concat().into()),
            };
            return serve_stream(stream, read_ahead, upgraded, ServeUpgraded::Tcp);
        }
        Err(io) => io,
    };
    match take_back::<TlsStream<TcpStream>>(io) {
        Ok((stream, read_ahead)) => {
            serve_stream(Box::new(stream), read_ahead, upgraded, ServeUpgraded::Tls)
        }
        Err(io) => boxed(TokioIo::new(io), upgraded),
    }
}

/// Takes the stream of type `S` back from hyper, if that is what it runs on. hyper's
/// leftover bytes are a view into its whole read buffer (8 KiB or more): what the client sent
/// ahead is copied out, and the buffer freed before the connection settles in for hours.
fn take_back<S>(
    io: hyper::upgrade::Upgraded,
) -> Result<(S, Option<bytes::Bytes>), hyper::upgrade::Upgraded>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let parts = io.downcast::<TokioIo<S>>()?;
    let read_ahead =
        (!parts.read_buf.is_empty()).then(|| bytes::Bytes::copy_from_slice(&parts.read_buf));
    Ok((parts.io.into_inner(), read_ahead))
}

/// Serves a stream taken back from hyper: inline (`inline` picks the variant) when nothing was
/// read ahead and the peer is known, boxed otherwise.
fn serve_stream<S: Stream + Send + 'static>(
    stream: S,
    read_ahead: Option<bytes::Bytes>,
    upgraded: Upgraded,
    inline: fn(Connection<S>) -> ServeUpgraded,
) -> ServeUpgraded {
    match (read_ahead, upgraded.admission) {
        (None, Admission::Known(peer)) => inline(connection::serve(
            stream,
            upgraded.endpoint,
            peer,
            upgraded.terms,
        )),
        (None, admission) => boxed(
            stream,
            Upgraded {
                admission,
                ..upgraded
            },
        ),
        (Some(prefix), admission) => boxed(
            Prefixed::new(prefix, stream),
            Upgraded {
                admission,
                ..upgraded
            },
        ),
    }
}

/// Serves a connection through a boxed future: streams other than a bare socket, and
/// connections that authenticate with an `auth` frame.
fn boxed<S: Stream + Send + 'static>(io: S, upgraded: Upgraded) -> ServeUpgraded {
    let Upgraded {
        endpoint,
        admission,
        terms,
        ..
    } = upgraded;
    ServeUpgraded::Other(match admission {
        Admission::Known(peer) => Box::pin(connection::serve(io, endpoint, peer, terms)),
        Admission::AwaitToken(pending) => {
            Box::pin(connection::authenticate(io, endpoint, pending, terms))
        }
    })
}

#[path = "ws_backend.rs"]
mod backend;
