//! Static pages and files served by every node, embedded in the binary: the landing page at
//! `/` (for plain browser visits; WebSocket upgrades on `/` never get here), the live dashboard
//! at `/dashboard` (plain HTML/CSS/JS that polls `/stats`), the chat demo at `/demo`, the
//! shared editor at `/demo/doc`, the JavaScript client at `/client.js`, and `yjs` +
//! `y-websocket` as one ES module at `/yjs.js` for the editor. Both scripts are committed
//! builds in `clients/js/dist`, so building the server needs no Node.js.
//!
//! The scripts may be imported by pages on other origins (an application loading the client
//! from its Switchboard node), so they carry `Access-Control-Allow-Origin: *`: they are public
//! code, and a module script from another origin needs CORS. They are cached for
//! [`SCRIPT_MAX_AGE`] and then revalidated with their `ETag` (a hash of the embedded bytes), so
//! a node upgraded to a new client is picked up within minutes and costs a 304 otherwise.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha1::{Digest, Sha1};

/// How long browsers and proxies may use a script without asking again.
const SCRIPT_MAX_AGE: &str = "public, max-age=300";

/// The landing page.
pub(super) fn landing() -> Response {
    html(include_str!("../../../../web/index.html"))
}

/// `GET /dashboard`: the live operations dashboard.
pub(super) async fn dashboard() -> Response {
    html(include_str!("../../../../web/dashboard.html"))
}

/// `GET /demo`: the chat demo, which loads `/client.js`.
pub(super) async fn demo() -> Response {
    html(include_str!("../../../../web/demo.html"))
}

/// `GET /demo/doc`: the shared text editor, a Yjs document on `/yjs`, which loads `/yjs.js`.
pub(super) async fn doc_demo() -> Response {
    html(include_str!("../../../../web/doc.html"))
}

/// `GET /client.js`: the JavaScript client as an ES module.
pub(super) async fn client_js(request: HeaderMap) -> Response {
    static ETAG: OnceLock<HeaderValue> = OnceLock::new();
    javascript(
        include_str!("../../../../clients/js/dist/switchboard.js"),
        &ETAG,
        &request,
    )
}

/// `GET /yjs.js`: the npm `yjs` and `y-websocket` packages bundled as one ES module (MIT, the
/// licence notice is its banner), built by `npm run build:yjs` in `clients/js`.
pub(super) async fn yjs_js(request: HeaderMap) -> Response {
    static ETAG: OnceLock<HeaderValue> = OnceLock::new();
    javascript(
        include_str!("../../../../clients/js/dist/yjs.bundle.js"),
        &ETAG,
        &request,
    )
}

/// An embedded script with its CORS and cache headers; `304 Not Modified` when the request's
/// `If-None-Match` names its `ETag`.
fn javascript(
    body: &'static str,
    etag: &'static OnceLock<HeaderValue>,
    request: &HeaderMap,
) -> Response {
    let etag = etag.get_or_init(|| entity_tag(body.as_bytes()));
    let headers = [
        (
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(SCRIPT_MAX_AGE),
        ),
        (header::ETAG, etag.clone()),
    ];
    if matches(request, etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    )];
    (headers, content_type, body).into_response()
}

/// A strong entity tag: the first 16 hex digits of the body's SHA-1 (not a security
/// measure, only a name for these bytes).
fn entity_tag(body: &[u8]) -> HeaderValue {
    let digest = Sha1::digest(body);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Whether `If-None-Match` lists `etag` (or is `*`).
fn matches(request: &HeaderMap, etag: &HeaderValue) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == etag.as_bytes())
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}
