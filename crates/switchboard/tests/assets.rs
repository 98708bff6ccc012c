//! The embedded files: `/client.js` is the committed build of `clients/js`, and `/demo` is the
//! chat page that loads it; `/yjs.js` is the committed yjs + y-websocket bundle, and
//! `/demo/doc` is the shared editor that loads it.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use switchboard_testkit::{TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path`; returns the response head (status line and headers) and the body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    get_with(addr, path, "").await
}

/// `GET path` with `extra` header lines (each ending in `\r\n`).
async fn get_with(addr: SocketAddr, path: &str, extra: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("HTTP response timed out")
        .unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn client_js_is_the_built_client_as_javascript() {
    let server = TestServer::start().await;
    let (head, body) = get(server.addr, "/client.js").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/javascript"),
        "{head}"
    );
    let dist = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../clients/js/dist/switchboard.js"
    ))
    .unwrap();
    assert_eq!(body, dist);
    assert!(body.contains("export class SwitchboardClient"));
}

#[tokio::test]
async fn demo_is_a_page_that_loads_the_client() {
    let server = TestServer::start().await;
    let (head, body) = get(server.addr, "/demo").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("from '/client.js'"), "{body}");
}

#[tokio::test]
async fn yjs_js_is_the_committed_bundle_as_javascript() {
    let server = TestServer::start().await;
    let (head, body) = get(server.addr, "/yjs.js").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/javascript"),
        "{head}"
    );
    let dist = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../clients/js/dist/yjs.bundle.js"
    ))
    .unwrap();
    assert_eq!(body, dist);
    // The MIT notice of the bundled packages travels with them.
    assert!(body.starts_with("/*!"), "no banner");
    assert!(body.contains("yjs@13."));
    assert!(body.contains("y-websocket@"));
    assert!(body.contains("Permission is hereby granted"));
}

#[tokio::test]
async fn demo_doc_is_a_page_that_loads_the_yjs_bundle() {
    let server = TestServer::start().await;
    let (head, body) = get(server.addr, "/demo/doc").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("from '/yjs.js'"), "{body}");
    // Nothing from another origin: the node serves everything the page needs.
    assert!(!body.contains("https://"), "{body}");
}

/// The value of header `name` (lower case) in a response head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim())
}

#[tokio::test]
async fn scripts_are_served_with_cors_and_cache_headers() {
    let server = TestServer::start().await;
    for path in ["/client.js", "/yjs.js"] {
        let (head, body) = get(server.addr, path).await;
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert_eq!(
            header(&head, "access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        let cache = header(&head, "cache-control").unwrap_or_default();
        assert!(
            cache.contains("public") && cache.contains("max-age="),
            "{path}: {cache}"
        );
        let etag = header(&head, "etag").unwrap_or_else(|| panic!("{path}: no etag"));
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "{etag}"
        );

        // The same tag again: 304 with no body, still with the headers.
        let (again, empty) =
            get_with(server.addr, path, &format!("If-None-Match: {etag}\r\n")).await;
        assert!(again.starts_with("http/1.1 304"), "{path}: {again}");
        assert!(empty.is_empty(), "{path}: a 304 has no body");
        assert_eq!(header(&again, "etag"), Some(etag), "{path}");
        assert_eq!(header(&again, "access-control-allow-origin"), Some("*"));

        // Another tag: the whole script.
        let (other, full) = get_with(server.addr, path, "If-None-Match: \"stale\"\r\n").await;
        assert!(other.starts_with("http/1.1 200"), "{path}: {other}");
        assert_eq!(full, body, "{path}");
    }
    // The two scripts have different tags.
    let (client, _) = get(server.addr, "/client.js").await;
    let (yjs, _) = get(server.addr, "/yjs.js").await;
    assert_ne!(header(&client, "etag"), header(&yjs, "etag"));
}
