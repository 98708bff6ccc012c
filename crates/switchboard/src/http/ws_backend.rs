//! The upgrade's admission by the backend's connect proxy (`crate::proxy`), which replaces JWT
//! verification when it is set: what the backend is told about the request, and what its
//! answer does to the upgrade.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Admission, AppState, ConnectParams};
use crate::connection::{Peer, Pending, Verifier};
use crate::forwarded::ClientAddr;
use crate::hub::Counters;
use crate::proxy::{ConnectRequest, ConnectVerdict, Proxy, ProxyError};

/// What the connect proxy is told about an upgrade request.
pub(super) fn connect_request<B>(
    proxy: &Proxy,
    params: &ConnectParams,
    request: &axum::http::Request<B>,
    transport: &'static str,
) -> ConnectRequest {
    let headers = request.headers();
    let token = match super::super::keys::bearer(headers) {
        Some(bearer) => Some(String::from_utf8_lossy(bearer).into_owned()),
        None => params.token.clone().filter(|token| !token.is_empty()),
    };
    ConnectRequest {
        transport,
        path: request.uri().path().to_owned(),
        remote_addr: request
            .extensions()
            .get::<ClientAddr>()
            .map(|ClientAddr(address)| address.to_string()),
        query: Query::<BTreeMap<String, String>>::try_from_uri(request.uri())
            .map(|Query(mut query)| {
                query.remove("token");
                query
            })
            .unwrap_or_default(),
        headers: forwarded_headers(headers, &proxy.config().headers),
        token,
    }
}

/// Decides who the connection is by asking the backend's connect proxy, which replaces JWT
/// verification: at the upgrade when the request carries a token or a `cookie` (a refusal is
/// then the backend's 401 or 403, a backend without an answer 503, and a nonsensical answer
/// 502); otherwise after the connection's `auth` frame (`connection::authenticate`).
pub(super) async fn admit(
    state: &AppState,
    proxy: &Arc<Proxy>,
    connect: ConnectRequest,
    cookie: bool,
) -> Result<Admission, Box<Response>> {
    if connect.token.is_none() && !cookie {
        return Ok(Admission::AwaitToken(Pending {
            verifier: Verifier::Proxy(proxy.clone(), Box::new(connect)),
            deadline: tokio::time::Instant::now() + state.auth.timeout,
            shutdown: state.shutdown.clone(),
        }));
    }
    let refusal = match proxy.connect(&connect).await {
        Ok(ConnectVerdict::Allowed { user, grants }) => {
            return Ok(Admission::Known(Peer {
                user,
                grants: Some(Box::new(grants)),
                expires_at: None,
            }));
        }
        Ok(ConnectVerdict::Refused { status, message }) => (status, message),
        Ok(ConnectVerdict::Disconnect { reason, .. }) => (StatusCode::FORBIDDEN, reason),
        Err(error) => {
            let status = match error {
                ProxyError::NotSet
                | ProxyError::Timeout
                | ProxyError::Unavailable(_)
                | ProxyError::Status(_) => StatusCode::SERVICE_UNAVAILABLE,
                ProxyError::TooLarge | ProxyError::Malformed(_) | ProxyError::Invalid(_) => {
                    StatusCode::BAD_GATEWAY
                }
            };
            return Err(Box::new((status, error.to_string()).into_response()));
        }
    };
    Counters::add(&state.hub.counters().auth_failures, 1);
    Err(Box::new(refusal.into_response()))
}

/// The headers of `names` that `headers` holds, by lowercase name; a header sent more than
/// once is joined as HTTP joins it (`; ` for cookies, `, ` for the others), and a value that is
/// not text is left out.
fn forwarded_headers(
    headers: &axum::http::HeaderMap,
    names: &[axum::http::HeaderName],
) -> BTreeMap<String, String> {
    names
        .iter()
        .filter_map(|name| {
            let values: Vec<&str> = headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect();
            let separator = if name == header::COOKIE { "; " } else { ", " };
            (!values.is_empty()).then(|| (name.as_str().to_owned(), values.join(separator)))
        })
        .collect()
}
