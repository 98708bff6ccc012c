//! The server's own view: `GET /stats` on the server's port, copied into reports (it shows, for
//! example, slow consumers the server dropped). Best effort: a server without `/stats` just
//! gets `null`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Target;

/// Largest `/stats` response read.
const MAX_RESPONSE: u64 = 1 << 20;

/// The JSON of `GET /stats` on `target`'s host and port, or `None`.
pub(crate) async fn fetch(target: &Target) -> Option<serde_json::Value> {
    tokio::time::timeout(Duration::from_secs(3), get(target))
        .await
        .ok()
        .flatten()
}

async fn get(target: &Target) -> Option<serde_json::Value> {
    let mut stream = TcpStream::connect(target.addr()).await.ok()?;
    let request = format!(
        "GET /stats HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        target.host()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .await
        .ok()?;
    body_json(&response)
}

/// The JSON body of a `200` response with a plain (not chunked) body.
fn body_json(response: &[u8]) -> Option<serde_json::Value> {
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..head_end]).ok()?;
    let status_ok = head.lines().next()?.split(' ').nth(1)? == "200";
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if !status_ok || chunked {
        return None;
    }
    serde_json::from_slice(&response[head_end + 4..]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_json_bodies_are_read() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"connections\":2}";
        assert_eq!(body_json(ok), Some(serde_json::json!({"connections": 2})));
        assert_eq!(body_json(b"HTTP/1.1 404 Not Found\r\n\r\n{}"), None);
        assert_eq!(
            body_json(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
            None
        );
    }
}
