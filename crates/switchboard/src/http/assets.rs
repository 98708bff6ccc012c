//! Static pages and files served by every node, embedded in the binary: the landing page at
//! `/` (for plain browser visits; WebSocket upgrades on `/` never get here), the live dashboard
//! at `/dashboard` (plain HTML/CSS/JS that polls `/stats`), the chat demo at `/demo`, and the
//! JavaScript client at `/client.js`. The client is the committed build of `clients/js`, so
//! building the server needs no Node.js.

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

/// `GET /client.js`: the JavaScript client as an ES module.
pub(super) async fn client_js() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        include_str!("../../../../clients/js/dist/switchboard.js"),
    )
        .into_response()
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}
