//! The Rust client with [`Format::MsgPack`] against a real server: the same API and events as
//! with JSON, bytes as `{"$bytes": …}` both ways, requests, errors and history, and
//! authentication with an `auth` frame in MessagePack.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use switchboard_client::{Event, Format, HistoryQuery};
use switchboard_testkit::{TestServer, WAIT, hs256_token, next_event, now_secs};

const SECRET: &str = "client-msgpack-secret-0123456789abcdef";

#[tokio::test]
async fn a_msgpack_client_and_a_json_client_share_a_room() {
    let server = TestServer::with(|raw| raw.history_size = Some(10)).await;
    let url = server.url("");
    let packed_config = support::config(&url, "packed").with_format(Format::MsgPack);
    let (packed, mut packed_events) = switchboard_client::Client::connect(packed_config)
        .await
        .unwrap();
    let (json, mut json_events) =
        switchboard_client::Client::connect(support::config(&url, "json"))
            .await
            .unwrap();
    packed.room("r").join().await.unwrap();
    json.room("r").join().await.unwrap();

    // A payload with bytes, as a JSON application writes them: MessagePack on the wire.
    let content = json!({"text": "hi", "blob": {"$bytes": "AAEC/w=="}, "n": [-1, 2.5, null]});
    json.room("r").send(&content).unwrap();
    let received = next_event(&mut packed_events, "message", |e| {
        matches!(e, Event::Message { .. })
    })
    .await;
    let Event::Message {
        room,
        user_id,
        payload,
        offset,
        ..
    } = received
    else {
        unreachable!()
    };
    assert_eq!((room.as_str(), user_id.as_deref()), ("r", Some("json")));
    assert_eq!(payload["content"], content);
    assert_eq!(offset, Some(1));

    packed.room("r").send(&content).unwrap();
    let received = next_event(&mut json_events, "message", |e| {
        matches!(e, Event::Message { .. })
    })
    .await;
    assert!(matches!(received, Event::Message { payload, .. } if payload["content"] == content));

    // Requests get their replies, history its page.
    let pong = packed
        .request("ping", json!({"timestamp": 42}), WAIT)
        .await
        .unwrap();
    assert_eq!(pong.payload["timestamp"], 42);
    let page = packed.history(HistoryQuery::room("r")).await.unwrap();
    assert_eq!(page.publications.len(), 2);
    assert_eq!(page.publications[0].payload["content"], content);
    let refused = packed.request("dance", json!({}), WAIT).await.unwrap_err();
    assert!(refused.to_string().contains("UNKNOWN_TYPE"), "{refused}");
}

#[tokio::test]
async fn a_token_provider_authenticates_over_msgpack() {
    let server = TestServer::with(|raw| raw.jwt_secret = Some(SECRET.to_owned())).await;
    let config = support::config(&server.url(""), "ignored")
        .with_format(Format::MsgPack)
        .with_token_provider(|| async {
            Ok(hs256_token(SECRET, "dora", now_secs() + 600, json!({})))
        });
    let (client, mut events) = switchboard_client::Client::connect(config).await.unwrap();
    let connected = next_event(&mut events, "connected", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await;
    assert!(matches!(connected, Event::Connected { info, .. } if info.user_id == "dora"));
    let joined = client.room("r").join().await.unwrap();
    assert_eq!(joined.payload["room"], "r");
}
