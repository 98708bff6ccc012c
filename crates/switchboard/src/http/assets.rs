//! Static pages and files served by every node, embedded in the binary: the landing page at
//! `/` (for plain browser visits; WebSocket upgrades on `/` never get here), the live dashboard
//! at `/dashboard` (plain HTML/CSS/JS that polls `/stats`), the chat demo at `/demo`, the
//! shared editor at `/demo/doc`, the JavaScript client at `/client.js`, and `yjs` +
//! `y-websocket` as one ES module at `/yjs.js` for the editor. Both scripts are committed
//! builds in `clients/js/dist`, so building the server needs no Node.js.

use axum::http::header;
use axum::response::{IntoResponse, Response};

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
pub(super) async fn client_js() -> Response {
    javascript(include_str!("../../../../clients/js/dist/switchboard.js"))
}

/// `GET /yjs.js`: the npm `yjs` and `y-websocket` packages bundled as one ES module (MIT, the
/// licence notice is its banner), built by `npm run build:yjs` in `clients/js`.
pub(super) async fn yjs_js() -> Response {
    javascript(include_str!("../../../../clients/js/dist/yjs.bundle.js"))
}

fn javascript(body: &'static str) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}
