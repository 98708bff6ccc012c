//! Static pages and files served by every node, embedded in the binary: the landing page at
//! `/` (for plain browser visits; WebSocket upgrades on `/` never get here) and the live
//! dashboard at `/dashboard` (plain HTML/CSS/JS that polls `/stats`).

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

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}
