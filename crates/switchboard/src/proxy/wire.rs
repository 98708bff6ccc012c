//! The JSON of the proxy requests and answers (docs/proxy.md), and the verdicts read from the
//! answers. Every answer is an object with exactly one of `result`, `error` or `disconnect`;
//! what each may hold depends on the request.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::{ProxyError, Verdict, bounded};
use crate::auth::{GrantClaims, Grants};
use crate::hub::ProxyOutcome;
use crate::ids::UserId;
use crate::protocol::ErrorCode;

/// What the connect proxy is told about a connecting client.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectRequest {
    /// `websocket`.
    pub(crate) transport: &'static str,
    /// The upgrade request's path (`/`, `/ws`).
    pub(crate) path: String,
    /// The client's address (behind trusted proxies, the forwarded one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) remote_addr: Option<String>,
    /// The query parameters but `token`.
    pub(crate) query: BTreeMap<String, String>,
    /// The headers in `--proxy-headers` the request carried, by lowercase name.
    pub(crate) headers: BTreeMap<String, String>,
    /// The token, from `?token=`, `Authorization: Bearer` or the `auth` frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
}

/// What the join and subscribe proxies are told.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StreamRequest<'a> {
    pub(crate) connection_id: String,
    pub(crate) user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) channel: Option<&'a str>,
}

/// What the RPC proxy is told: the client's frame and who sent it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RpcRequest<'a> {
    pub(crate) connection_id: String,
    pub(crate) user_id: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    /// `null` when the frame had none.
    pub(crate) payload: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<&'a RawValue>,
}

/// A request's body.
pub(super) fn body<T: Serialize>(request: &T) -> Bytes {
    // Strings and raw JSON only: serializing cannot fail.
    serde_json::to_vec(request).map_or_else(|_| Bytes::from_static(b"{}"), Bytes::from)
}

/// The answer's envelope; a field present with `null` counts as present.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    disconnect: Option<Box<RawValue>>,
}

fn present<'de, D: Deserializer<'de>>(value: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(value).map(Some)
}

/// The one field an answer holds.
enum Reply {
    Result(Box<RawValue>),
    Error(Box<RawValue>),
    Disconnect(Box<RawValue>),
}

impl Reply {
    fn parse(body: &[u8]) -> Result<Self, ProxyError> {
        let envelope: Envelope = serde_json::from_slice(body).map_err(ProxyError::Malformed)?;
        match (envelope.result, envelope.error, envelope.disconnect) {
            (Some(result), None, None) => Ok(Self::Result(result)),
            (None, Some(error), None) => Ok(Self::Error(error)),
            (None, None, Some(disconnect)) => Ok(Self::Disconnect(disconnect)),
            _ => Err(ProxyError::Invalid(
                "expected exactly one of result, error, disconnect",
            )),
        }
    }
}

fn inner<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, ProxyError> {
    serde_json::from_str(raw.get()).map_err(ProxyError::Malformed)
}

/// The connect proxy's `result`: the user and the permissions, as a token's claims.
#[derive(Deserialize)]
struct ConnectResult {
    user: String,
    #[serde(flatten)]
    grants: GrantClaims,
}

/// An `error` answer: a message, and for a connect the HTTP status (401 or 403), for an RPC
/// the error code.
#[derive(Deserialize)]
struct WireError<C> {
    #[serde(default = "Option::default")]
    code: Option<C>,
    #[serde(default)]
    message: Option<String>,
}

/// A `disconnect` answer: the close code and reason.
#[derive(Deserialize)]
struct WireDisconnect {
    code: u16,
    #[serde(default)]
    reason: Option<String>,
}

/// What the connect proxy decided.
#[derive(Debug)]
pub(crate) enum ConnectVerdict {
    /// The connection is this user, with these permissions.
    Allowed { user: UserId, grants: Grants },
    /// Refused: the upgrade is answered with `status` (401 or 403), a connection that
    /// authenticates with an `auth` frame is closed with 1008.
    Refused { status: StatusCode, message: String },
    /// Refused with a close code of the backend's (4000–4999, or 1008); an upgrade is
    /// answered 403.
    Disconnect { code: u16, reason: String },
}

impl Verdict for ConnectVerdict {
    fn parse(body: &[u8], max_name: usize) -> Result<Self, ProxyError> {
        match Reply::parse(body)? {
            Reply::Result(raw) => {
                let result: ConnectResult = inner(&raw)?;
                let user = UserId::parse(&result.user, max_name)
                    .map_err(|_| ProxyError::Invalid("result.user is not a valid user id"))?;
                let grants = result
                    .grants
                    .into_grants()
                    .map_err(|_| ProxyError::Invalid("result has an invalid permission pattern"))?;
                Ok(Self::Allowed { user, grants })
            }
            Reply::Error(raw) => {
                let error: WireError<u16> = inner(&raw)?;
                let status = match error.code {
                    None | Some(401) => StatusCode::UNAUTHORIZED,
                    Some(403) => StatusCode::FORBIDDEN,
                    Some(_) => return Err(ProxyError::Invalid("error.code must be 401 or 403")),
                };
                let message = error
                    .message
                    .as_deref()
                    .map_or_else(|| "refused by the backend".to_owned(), bounded);
                Ok(Self::Refused { status, message })
            }
            Reply::Disconnect(raw) => {
                let disconnect: WireDisconnect = inner(&raw)?;
                if !(disconnect.code == 1008 || (4000..=4999).contains(&disconnect.code)) {
                    return Err(ProxyError::Invalid(
                        "disconnect.code must be 1008 or within 4000-4999",
                    ));
                }
                let reason = disconnect
                    .reason
                    .as_deref()
                    .map_or_else(String::new, bounded);
                Ok(Self::Disconnect {
                    code: disconnect.code,
                    reason,
                })
            }
        }
    }

    fn outcome(&self) -> ProxyOutcome {
        match self {
            Self::Allowed { .. } => ProxyOutcome::Allowed,
            Self::Refused { .. } | Self::Disconnect { .. } => ProxyOutcome::Refused,
        }
    }
}

/// What the join or subscribe proxy decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StreamVerdict {
    Allowed,
    /// Refused, with the backend's message (bounded).
    Refused(String),
}

impl Verdict for StreamVerdict {
    fn parse(body: &[u8], _max_name: usize) -> Result<Self, ProxyError> {
        match Reply::parse(body)? {
            Reply::Result(_) => Ok(Self::Allowed),
            Reply::Error(raw) => {
                let error: WireError<serde_json::Value> = inner(&raw)?;
                Ok(Self::Refused(error.message.as_deref().map_or_else(
                    || "refused by the backend".to_owned(),
                    bounded,
                )))
            }
            Reply::Disconnect(_) => Err(ProxyError::Invalid("disconnect answers a connect only")),
        }
    }

    fn outcome(&self) -> ProxyOutcome {
        match self {
            Self::Allowed => ProxyOutcome::Allowed,
            Self::Refused(_) => ProxyOutcome::Refused,
        }
    }
}

/// What the RPC proxy answered.
#[derive(Debug)]
pub(crate) enum RpcVerdict {
    /// The payload of the reply frame.
    Result(Box<RawValue>),
    /// An `error` frame's code (one of the protocol's, else `INTERNAL`) and message (bounded).
    Error { code: ErrorCode, message: String },
}

impl Verdict for RpcVerdict {
    fn parse(body: &[u8], _max_name: usize) -> Result<Self, ProxyError> {
        match Reply::parse(body)? {
            Reply::Result(raw) => Ok(Self::Result(raw)),
            Reply::Error(raw) => {
                let error: WireError<String> = inner(&raw)?;
                let code = error
                    .code
                    .and_then(|code| ErrorCode::ALL.into_iter().find(|c| c.as_str() == code))
                    .unwrap_or(ErrorCode::Internal);
                let message = error
                    .message
                    .as_deref()
                    .map_or_else(|| "backend error".to_owned(), bounded);
                Ok(Self::Error { code, message })
            }
            Reply::Disconnect(_) => Err(ProxyError::Invalid("disconnect answers a connect only")),
        }
    }

    fn outcome(&self) -> ProxyOutcome {
        match self {
            Self::Result(_) => ProxyOutcome::Allowed,
            Self::Error { .. } => ProxyOutcome::Refused,
        }
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
