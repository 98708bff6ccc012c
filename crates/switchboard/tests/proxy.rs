//! Backend proxies against a real HTTP backend (an axum app in this test): connect at the
//! upgrade and after an `auth` frame, join and subscribe approvals, RPC results and errors;
//! a backend that hangs, one that is down, and answers that are malformed or too large.

#![allow(clippy::unwrap_used)]

mod proxy_backend;

use proxy_backend::{backend, next, server};
use serde_json::{Value, json};
use switchboard_testkit::{Client, Ended, RawClient, TestServer, WAIT, http_get, masked_frame};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Connects with `headers` on `path_and_query`, reading the `connect` frame.
async fn connect(
    server: &TestServer,
    path_and_query: &str,
    headers: &[(&'static str, &str)],
) -> Client {
    let mut request = server.url(path_and_query).into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap()
        .unwrap();
    Client::from_stream(ws).await
}

/// The upgrade's refusal: its status and body.
async fn refused(server: &TestServer, path_and_query: &str) -> (u16, String) {
    let connecting = tokio_tungstenite::connect_async(server.url(path_and_query));
    match tokio::time::timeout(WAIT, connecting).await.unwrap() {
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| ())),
    }
}

/// A connection that sends its token in an `auth` frame: upgraded, then authenticated.
async fn auth_frame(server: &TestServer, token: &str) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(server.url("/?room=lobby"))
        .await
        .unwrap();
    let mut client = Client::upgraded(ws);
    client.send_type("auth", json!({"token": token})).await;
    client
}

#[tokio::test]
async fn a_connect_at_the_upgrade_takes_the_backends_user_and_permissions() {
    let (addr, mut received, _) = backend().await;
    let server = server(addr, |_| {}).await;
    let mut alice = connect(
        &server,
        "/?token=good-alice&room=lobby",
        &[("User-Agent", "tests")],
    )
    .await;
    assert_eq!(alice.user_id(), "alice");
    let asked = next(&mut received).await;
    assert_eq!(asked.proxy, "connect");
    assert_eq!(asked.body["transport"], "websocket");
    assert_eq!(asked.body["path"], "/");
    assert_eq!(asked.body["token"], "good-alice");
    assert_eq!(
        asked.body["query"],
        json!({"room": "lobby"}),
        "the token is not repeated"
    );
    assert_eq!(asked.body["headers"]["user-agent"], "tests");
    assert_eq!(asked.body["remoteAddr"], "127.0.0.1");

    // The permissions are the backend's: `rooms` grants general, not random.
    alice
        .send(json!({"type": "join_room", "payload": {"room": "random"}, "id": 1}))
        .await;
    let error = alice.expect_error("FORBIDDEN").await;
    assert_eq!(error["id"], 1);
    alice.join("general").await;
    assert_eq!(next(&mut received).await.body["room"], "general");

    // The backend decides who connects, at connect: no token to refresh.
    alice
        .send(json!({"type": "refresh", "payload": {"token": "good-alice"}, "id": 2}))
        .await;
    let error = alice.expect_error("INVALID_MESSAGE").await;
    assert!(
        error["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("the backend decides who connects"),
        "{error}"
    );

    let bob = connect(&server, "/", &[("Cookie", "session=bob")]).await;
    assert_eq!(bob.user_id(), "bob");
    assert_eq!(
        next(&mut received).await.body["headers"]["cookie"],
        "session=bob"
    );
}

#[tokio::test]
async fn a_refused_connect_is_answered_at_the_upgrade() {
    let (addr, _received, _) = backend().await;
    let server = server(addr, |_| {}).await;
    assert_eq!(
        refused(&server, "/?token=banned").await,
        (403, "banned".to_owned())
    );
    assert_eq!(
        refused(&server, "/?token=stranger").await,
        (401, "who are you?".to_owned())
    );
    assert_eq!(
        refused(&server, "/?token=kicked").await,
        (403, "kicked".to_owned())
    );
    let (status, body) = refused(&server, "/?token=nonsense").await;
    assert_eq!(
        status, 502,
        "a close code out of range is no answer: {body}"
    );
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(
        metrics.contains(r#"switchboard_proxy_requests_total{kind="connect",outcome="refused"} 3"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_auth_frame_goes_to_the_connect_proxy_and_a_refusal_closes_with_its_code() {
    let (addr, mut received, _) = backend().await;
    let server = server(addr, |_| {}).await;
    let mut alice = auth_frame(&server, "good-alice").await;
    alice.read_connect().await;
    assert_eq!(alice.user_id(), "alice");
    let asked = next(&mut received).await;
    assert_eq!(asked.body["token"], "good-alice");
    assert_eq!(asked.body["query"], json!({"room": "lobby"}));

    let mut kicked = auth_frame(&server, "kicked").await;
    let ended = kicked.ended().await;
    assert_eq!(
        ended,
        Ended::Closed {
            code: 4003,
            reason: "kicked".to_owned()
        }
    );
    let mut banned = auth_frame(&server, "banned").await;
    assert_eq!(banned.close_code().await, 1008);
}

#[tokio::test]
async fn joins_and_subscribes_wait_for_the_backends_approval() {
    let (addr, mut received, _) = backend().await;
    let server = server(addr, |_| {}).await;
    let mut alice = connect(&server, "/?token=good-alice", &[]).await;
    next(&mut received).await;

    alice
        .send(json!({"type": "join_room", "payload": {"room": "secret-plans"}, "id": "j1"}))
        .await;
    let error = alice.expect_error("FORBIDDEN").await;
    assert_eq!(error["payload"]["message"], "secret-plans is members only");
    assert_eq!(error["id"], "j1");
    let asked = next(&mut received).await;
    assert_eq!(asked.proxy, "join");
    assert_eq!(
        asked.body,
        json!({"connectionId": alice.connection_id(), "userId": "alice", "room": "secret-plans"})
    );
    alice.join("general").await;
    next(&mut received).await;
    // A room the connection is in is not asked about again (the next request the backend
    // gets is the subscribe below).
    alice
        .send(json!({"type": "join_room", "payload": {"room": "general"}, "id": "again"}))
        .await;
    assert_eq!(alice.expect("room_joined").await["id"], "again");
    assert_eq!(alice.expect("ack").await["payload"]["id"], "again");

    // A channel the token does not grant is refused here; the backend is not asked.
    alice
        .send_type("subscribe", json!({"channel": "weather"}))
        .await;
    alice.expect_error("FORBIDDEN").await;
    alice
        .send_type("subscribe", json!({"channel": "news:private"}))
        .await;
    let error = alice.expect_error("FORBIDDEN").await;
    assert_eq!(error["payload"]["message"], "news:private is members only");
    let asked = next(&mut received).await;
    assert_eq!(
        (asked.proxy.as_str(), &asked.body["channel"]),
        ("subscribe", &json!("news:private"))
    );
    alice
        .send_type("subscribe", json!({"channel": "news:1"}))
        .await;
    alice.expect("subscribed").await;
    assert_eq!(next(&mut received).await.body["channel"], "news:1");
}

#[tokio::test]
async fn an_rpc_answers_with_the_clients_id_and_keeps_the_order_of_frames() {
    let (addr, mut received, _) = backend().await;
    let server = server(addr, |_| {}).await;
    let mut alice = connect(&server, "/?token=good-alice", &[]).await;
    next(&mut received).await;

    // The ping is read only after the answer: the pong comes after the result.
    alice
        .send(json!({"type": "sum", "payload": {"a": 2, "b": 3}, "id": "r1"}))
        .await;
    alice.send_type("ping", json!({"after": "sum"})).await;
    let result = alice.expect("sum").await;
    assert_eq!(result["payload"], json!({"sum": 5}));
    assert_eq!(result["id"], "r1");
    assert_eq!(alice.expect("ack").await["payload"]["id"], "r1");
    assert_eq!(alice.expect("pong").await["payload"]["after"], "sum");
    let asked = next(&mut received).await;
    assert_eq!(
        asked.body,
        json!({"connectionId": alice.connection_id(), "userId": "alice", "type": "sum",
               "payload": {"a": 2, "b": 3}, "id": "r1"})
    );

    alice.send(json!({"type": "refuse", "id": 7})).await;
    let error = alice.expect_error("FORBIDDEN").await;
    assert_eq!(
        (&error["payload"]["message"], &error["id"]),
        (&json!("not you"), &json!(7))
    );
    assert_eq!(next(&mut received).await.body["payload"], Value::Null);
    // The type of a server frame is never answered: the answer would impersonate it.
    alice
        .send(json!({"type": "room_joined", "id": "fake"}))
        .await;
    assert_eq!(alice.expect_error("UNKNOWN_TYPE").await["id"], "fake");
    alice.send(json!({"type": "weird", "id": 8})).await;
    let error = alice.expect_error("INTERNAL").await;
    assert_eq!(error["payload"]["message"], "backend error");
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    for line in [
        r#"switchboard_proxy_requests_total{kind="rpc",outcome="allowed"} 1"#,
        r#"switchboard_proxy_requests_total{kind="rpc",outcome="refused"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(metrics.contains(r#"switchboard_proxy_request_duration_seconds_total{kind="rpc"}"#));
}

#[tokio::test]
async fn a_connection_waiting_for_the_backend_holds_up_no_other() {
    let (addr, mut received, backend) = backend().await;
    let server = server(addr, |s| s.api_insecure = Some(true)).await;
    let (release, held) = oneshot::channel();
    backend.held.lock().unwrap().push(held);
    let mut alice = connect(&server, "/?token=good-alice", &[]).await;
    let mut bob = connect(&server, "/", &[("Cookie", "session=bob")]).await;
    next(&mut received).await;
    next(&mut received).await;

    alice.send(json!({"type": "held", "id": "h"})).await;
    assert_eq!(next(&mut received).await.body["type"], "held");
    // While alice's call is out, bob is served, and a message to alice waits in her outbox
    // and is written: only her reading stops.
    bob.send(json!({"type": "sum", "payload": {"a": 1, "b": 1}, "id": "b"}))
        .await;
    assert_eq!(bob.expect("sum").await["payload"]["sum"], 2);
    bob.expect("ack").await;
    bob.join("general").await;
    let (status, sent) = switchboard_testkit::http_json(
        server.addr,
        "POST",
        "/api/users/alice/messages",
        Some(&json!({"type": "note", "payload": {"n": 1}})),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(alice.expect("note").await["payload"]["n"], 1);
    release.send(()).unwrap();
    let answer = alice.expect("held").await;
    assert_eq!(
        (&answer["payload"], &answer["id"]),
        (&json!("released"), &json!("h"))
    );
}

#[tokio::test]
async fn a_backend_that_hangs_times_out_and_the_connection_goes_on() {
    let (addr, mut received, _) = backend().await;
    let server = server(addr, |s| s.proxy_timeout = Some("1s".parse().unwrap())).await;
    let mut alice = connect(&server, "/?token=good-alice", &[]).await;
    next(&mut received).await;
    alice.send(json!({"type": "hang", "id": "slow"})).await;
    alice.send_type("ping", json!({"after": "hang"})).await;
    let error = alice.expect_error("INTERNAL").await;
    assert_eq!(
        (&error["payload"]["message"], &error["id"]),
        (&json!("backend timeout"), &json!("slow"))
    );
    assert_eq!(alice.expect("pong").await["payload"]["after"], "hang");
    alice
        .send(json!({"type": "sum", "payload": {"a": 1, "b": 2}}))
        .await;
    assert_eq!(alice.expect("sum").await["payload"]["sum"], 3);
}

#[tokio::test]
async fn answers_that_are_no_answers_give_clear_errors() {
    let (addr, mut received, _) = backend().await;
    let server = server(addr, |_| {}).await;
    let mut alice = connect(&server, "/?token=good-alice", &[]).await;
    next(&mut received).await;
    for (kind, message) in [
        ("garbage", "backend answered invalid JSON"),
        ("huge", "backend answer too large"),
        ("broken", "backend unavailable (HTTP 500)"),
    ] {
        alice.send(json!({"type": kind, "id": kind})).await;
        let error = alice.expect_error("INTERNAL").await;
        assert_eq!(
            (&error["payload"]["message"], &error["id"]),
            (&json!(message), &json!(kind))
        );
    }
    // Answers are read up to 256 KiB: the last size taken, the first refused.
    let limit = 256 * 1024;
    alice
        .send(json!({"type": "sized", "payload": {"bytes": limit}, "id": 1}))
        .await;
    assert_eq!(
        alice.expect("sized").await["payload"]
            .as_str()
            .unwrap()
            .len(),
        limit - 13
    );
    alice.expect("ack").await;
    alice
        .send(json!({"type": "sized", "payload": {"bytes": limit + 1}, "id": 2}))
        .await;
    let error = alice.expect_error("INTERNAL").await;
    assert_eq!(error["payload"]["message"], "backend answer too large");
    // INTERNAL is the server's (or the backend's) fault, never the client's: no violation.
    alice.expect_nothing_pending().await;
}

#[tokio::test]
async fn a_backend_that_is_down_gives_503_at_the_upgrade_and_errors_after_it() {
    // Bound but never listening: connections are refused, and no other test's
    // listener can take the port while this one runs (a dropped listener's port
    // could be handed out again and answer 404).
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let down = reserved.local_addr().unwrap();
    let server = server(down, |_| {}).await;
    let (status, body) = refused(&server, "/?token=good-alice").await;
    assert_eq!((status, body.as_str()), (503, "backend unavailable"));

    let (addr, mut received, _) = backend().await;
    let server = TestServer::with(move |s| {
        s.proxy_connect_url = Some(format!("http://{addr}/proxy/connect"));
        s.proxy_rpc_url = Some(format!("http://{down}/proxy/rpc"));
        s.proxy_join_url = Some(format!("http://{down}/proxy/join"));
    })
    .await;
    let mut alice = connect(&server, "/?token=good-alice", &[]).await;
    next(&mut received).await;
    alice
        .send(json!({"type": "sum", "payload": {"a": 1, "b": 2}, "id": 1}))
        .await;
    let error = alice.expect_error("INTERNAL").await;
    assert_eq!(
        (&error["payload"]["message"], &error["id"]),
        (&json!("backend unavailable"), &json!(1))
    );
    alice
        .send(json!({"type": "join_room", "payload": {"room": "general"}, "id": 2}))
        .await;
    assert_eq!(
        alice.expect_error("INTERNAL").await["payload"]["message"],
        "backend unavailable"
    );
    // Subscribes have no proxy on this server: the local checks decide alone.
    alice
        .send_type("subscribe", json!({"channel": "news:1"}))
        .await;
    alice.expect("subscribed").await;
}

#[tokio::test]
async fn a_shutdown_closes_a_connection_that_waits_for_the_backend() {
    let (addr, mut received, backend) = backend().await;
    let server = server(addr, |_| {}).await;
    let (_never, held) = oneshot::channel::<()>();
    backend.held.lock().unwrap().push(held);
    let mut alice = connect(&server, "/?token=good-alice", &[]).await;
    next(&mut received).await;
    alice.send(json!({"type": "held"})).await;
    assert_eq!(next(&mut received).await.body["type"], "held");
    let (clean, code) = tokio::join!(server.shutdown(), alice.close_code());
    assert_eq!(code, 1001);
    assert!(clean, "the waiting connection closed within the deadline");
}

#[tokio::test]
async fn a_type_the_server_handles_itself_never_reaches_the_rpc_proxy() {
    let (addr, mut received, _) = backend().await;
    // Webhook client types are handled by a message handler, as a library's would be.
    let server = server(addr, |s| {
        s.webhook_url = Some(format!("http://{addr}/proxy/hooks"));
        s.webhook_secret = Some("secret".into());
        s.webhook_client_types = Some("typing".into());
    })
    .await;
    let mut alice = connect(&server, "/?token=good-alice", &[]).await;
    alice
        .send(json!({"type": "typing", "payload": {}, "id": "t"}))
        .await;
    assert_eq!(alice.expect("ack").await["payload"]["id"], "t");
    alice
        .send(json!({"type": "sum", "payload": {"a": 0, "b": 0}}))
        .await;
    alice.expect("sum").await;
    let rpcs: Vec<Value> = std::iter::from_fn(|| received.try_recv().ok())
        .filter(|request| request.proxy == "rpc")
        .map(|request| request.body["type"].clone())
        .collect();
    assert_eq!(rpcs, [json!("sum")]);
}

#[tokio::test]
async fn frames_read_with_the_one_that_waits_are_handled_after_its_answer_in_order() {
    let (addr, mut received, _) = backend().await;
    let server = server(addr, |_| {}).await;
    let mut raw = RawClient::connect(server.addr, "/?token=good-alice").await;
    next(&mut received).await;
    let (_, connect) = raw.read_frame().await;
    let connect: Value = serde_json::from_slice(&connect).unwrap();
    assert_eq!(connect["type"], "connect");
    // One write: the sum, then a ping and a join the connection reads in the same read and
    // must keep until the backend has answered.
    let frames = [
        json!({"type": "sum", "payload": {"a": 4, "b": 5}, "id": "s"}),
        json!({"type": "ping", "payload": {"n": 1}}),
        json!({"type": "join_room", "payload": {"room": "general"}, "id": "j"}),
    ];
    let bytes: Vec<u8> = frames
        .iter()
        .flat_map(|frame| masked_frame(0x81, frame.to_string().as_bytes()))
        .collect();
    raw.send_frame_bytes(&bytes).await;
    let mut kinds = Vec::new();
    while kinds.len() < 5 {
        let (_, payload) = raw.read_frame().await;
        let frame: Value = serde_json::from_slice(&payload).unwrap();
        kinds.push(frame["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(kinds, ["sum", "ack", "pong", "room_joined", "ack"]);
}

/// The next frame of a MessagePack connection, which must be binary, as JSON.
async fn read_packed(raw: &mut RawClient) -> Value {
    let (first, payload) = raw.read_frame().await;
    assert_eq!(first, 0x82, "a binary frame");
    let json = switchboard_protocol::msgpack::to_json(&payload).unwrap();
    serde_json::from_str(&json).unwrap()
}

#[tokio::test]
async fn msgpack_frames_that_wait_for_the_backend_keep_their_order_too() {
    use switchboard_protocol::msgpack;
    let (addr, mut received, _) = backend().await;
    let server = server(addr, |_| {}).await;
    let protocol = "Sec-WebSocket-Protocol: switchboard.v1.msgpack\r\n";
    let (mut raw, _) = RawClient::connect_with(server.addr, "/?token=good-alice", protocol).await;
    next(&mut received).await;
    assert_eq!(read_packed(&mut raw).await["type"], "connect");
    let frames = [
        json!({"type": "sum", "payload": {"a": 4, "b": 5}, "id": "s"}),
        json!({"type": "ping", "payload": {"n": 1}}),
        json!({"type": "join_room", "payload": {"room": "general"}, "id": "j"}),
    ];
    let bytes: Vec<u8> = frames
        .iter()
        .flat_map(|frame| {
            masked_frame(
                0x82,
                &msgpack::from_json(frame.to_string().as_bytes()).unwrap(),
            )
        })
        .collect();
    raw.send_frame_bytes(&bytes).await;
    let mut kinds = Vec::new();
    let mut sum = Value::Null;
    while kinds.len() < 5 {
        let frame = read_packed(&mut raw).await;
        if frame["type"] == "sum" {
            sum = frame["payload"].clone();
        }
        kinds.push(frame["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(kinds, ["sum", "ack", "pong", "room_joined", "ack"]);
    assert_eq!(sum, json!({"sum": 9}));
}
