//! Cluster mode with real parts: a redis-server child process and several Switchboard nodes,
//! driven by real WebSocket clients. A client on node A and a client on node B must behave as
//! if they were on one server.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use switchboard::ids::{RoomId, UserId};
use switchboard::presence::Status;
use switchboard_testkit::{
    Client, Ended, RedisServer, TestPki, TestServer, http_json, wait_until, wait_until_async,
};

/// Starts a node of the cluster on `redis` with `prefix`.
async fn node(redis: &RedisServer, name: &str) -> TestServer {
    node_with(redis, name, |_| {}).await
}

async fn node_with(
    redis: &RedisServer,
    name: &str,
    configure: impl FnOnce(&mut switchboard::config::RawSettings),
) -> TestServer {
    TestServer::cluster_node(redis, name, |s| {
        s.node_ttl = Some("2s".parse().unwrap());
        s.rate_limit = Some(0);
        configure(s);
    })
    .await
}

/// Waits until `server` knows `user` is in `room` (through the other nodes' announcements).
async fn sees_member(server: &TestServer, room: &str, user: &str) {
    let room = RoomId::from_trusted(room);
    let user = UserId::from_trusted(user);
    wait_until("the member is known cluster-wide", || {
        server.hub.room_members(&room).contains(&user)
    })
    .await;
}

/// A client on `server` watching `user`'s presence, who was shown them `offline` at first.
async fn watcher_of(server: &TestServer, user: &str) -> Client {
    let mut watcher = server.connect("watcher").await;
    watcher
        .send_type("subscribe", json!({"channel": format!("presence:{user}")}))
        .await;
    watcher.expect("subscribed").await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "offline"
    );
    watcher
}

#[tokio::test]
async fn room_messages_and_member_notices_cross_nodes() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut alice = a.member("alice", "general").await;
    a.settled().await;
    sees_member(&b, "general", "alice").await;
    let mut bob = b.connect("bob").await;
    let joined = bob.join("general").await;
    b.settled().await;
    let notice = alice.expect("user_joined").await;
    assert_eq!(notice["userId"], "bob");
    assert_eq!(
        joined["payload"]["memberCount"], 2,
        "alice on the other node counts"
    );

    alice
        .send(json!({"type": "message", "payload": {"room": "general", "content": "hi from A"}, "id": 1}))
        .await;
    let message = bob.expect("message").await;
    assert_eq!(message["userId"], "alice");
    assert_eq!(message["payload"]["content"], "hi from A");
    alice.expect("ack").await;
    // Not echoed back to its sender through Redis: bob saw it arrive through Redis, so a marker
    // from his node comes after any copy on its way to alice.
    alice.expect_nothing_pending_across(&a, &b).await;

    bob.send_type(
        "message",
        json!({"room": "general", "content": "hi from B"}),
    )
    .await;
    assert_eq!(
        alice.expect("message").await["payload"]["content"],
        "hi from B"
    );
    bob.expect_nothing_pending_across(&b, &a).await;

    bob.send_type("leave_room", json!({"room": "general"}))
        .await;
    bob.expect("room_left").await;
    assert_eq!(alice.expect("user_left").await["userId"], "bob");
}

#[tokio::test]
async fn broadcast_users_channels_and_the_api_work_from_any_node() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    // C serves the server API without a key.
    let c = node_with(&redis, "c", |s| s.api_insecure = Some(true)).await;
    let mut on_a = a.connect("dana").await;
    let mut on_b = b.connect("dana").await;
    let mut other = c.connect("erin").await;
    on_b.send_type("subscribe", json!({"channel": "event:deploy"}))
        .await;
    on_b.expect("subscribed").await;
    for node in [&a, &b, &c] {
        node.settled().await;
    }

    // Broadcast from a client on C reaches every node.
    other
        .send_type("broadcast", json!({"content": "everyone"}))
        .await;
    for client in [&mut on_a, &mut on_b, &mut other] {
        assert_eq!(
            client.expect("broadcast").await["payload"]["content"],
            "everyone"
        );
    }
    // The server API on C reaches both of dana's connections, on A and B.
    let (status, _) = http_json(
        c.addr,
        "POST",
        "/api/users/dana/messages",
        Some(&json!({"type": "notification", "payload": {"n": 1}})),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    on_a.expect("notification").await;
    on_b.expect("notification").await;
    other.expect_nothing_pending_across(&c, &a).await;
    // A channel publication from A reaches the subscriber on B, once.
    on_a.send_type(
        "publish",
        json!({"channel": "event:deploy", "data": {"v": 2}}),
    )
    .await;
    assert_eq!(on_b.expect("publish").await["payload"], json!({"v": 2}));
    on_b.expect_nothing_pending_across(&b, &a).await;
    // So does a library publication on C.
    c.hub
        .pubsub()
        .publish("event:deploy", &json!({"v": 3}))
        .unwrap();
    assert_eq!(on_b.expect("publish").await["payload"], json!({"v": 3}));
}

#[tokio::test]
async fn presence_and_member_lists_are_cluster_wide() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut watcher = watcher_of(&b, "alice").await;

    let mut alice = a.member("alice", "general").await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "online"
    );
    let alice_id = UserId::from_trusted("alice");
    wait_until("B sees alice online", || {
        b.hub.presence().get(&alice_id).status == Status::Online
    })
    .await;
    alice
        .send_type(
            "presence",
            json!({"status": "away", "metadata": {"where": "lunch"}}),
        )
        .await;
    let away = watcher.expect("presence").await;
    assert_eq!(away["payload"]["status"], "away");
    assert_eq!(away["payload"]["metadata"]["where"], "lunch");

    sees_member(&b, "general", "alice").await;
    let mut bob = b.connect("bob").await;
    let joined = bob.join("general").await;
    let members = joined["payload"]["members"].as_array().unwrap();
    let alice_entry = members.iter().find(|m| m["userId"] == "alice").unwrap();
    assert_eq!(
        alice_entry["status"], "away",
        "a member on another node, with presence"
    );

    let online: Vec<String> = b
        .hub
        .presence()
        .online_users()
        .iter()
        .map(|p| p.user_id.to_string())
        .collect();
    assert!(online.contains(&"alice".to_owned()) && online.contains(&"bob".to_owned()));

    drop(alice);
    let offline = watcher.expect("presence").await;
    assert_eq!(offline["payload"]["status"], "offline");
}

#[tokio::test]
async fn a_user_with_tabs_on_two_nodes_stays_online_and_in_the_room() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut observer = a.member("observer", "general").await;
    let tab_a = a.member("carol", "general").await;
    observer.expect("user_joined").await;
    a.settled().await;
    sees_member(&b, "general", "carol").await;
    let tab_b = b.member("carol", "general").await;
    b.settled().await;
    // The second tab, on another node, is not a new member: a marker from B, which announced
    // the join before it, is the next frame.
    observer.expect_nothing_pending_across(&a, &b).await;
    drop(tab_a);
    wait_until("the first tab is gone", || a.hub.stats().connections == 1).await;
    observer.expect_nothing_pending().await;
    assert_eq!(
        a.hub.presence().get(&UserId::from_trusted("carol")).status,
        Status::Online
    );
    drop(tab_b);
    assert_eq!(
        observer.expect("presence").await["payload"]["status"],
        "offline"
    );
    assert_eq!(observer.expect("user_left").await["userId"], "carol");
}

#[tokio::test]
async fn a_user_with_tabs_on_two_nodes_shows_each_presence_change_once() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut watcher = watcher_of(&a, "carol").await;
    let mut tab_a = a.connect("carol").await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "online"
    );
    let carol = UserId::from_trusted("carol");
    wait_until("B sees carol online", || {
        b.hub.presence().get(&carol).status == Status::Online
    })
    .await;
    let mut tab_b = b.connect("carol").await;
    let set = |status: &str| json!({"status": status, "metadata": {"tab": 1}});
    let b_shows = |status: Status| {
        let presence = b.hub.presence().get(&carol);
        presence.status == status && presence.metadata.is_some()
    };

    // Both tabs go away: the watcher on A sees it once, from A; B's report shows nothing new.
    tab_a.send_type("presence", set("away")).await;
    let away = watcher.expect("presence").await;
    assert_eq!(away["payload"]["status"], "away");
    tab_b.send_type("presence", set("away")).await;
    wait_until("B has carol away", || b_shows(Status::Away)).await;
    watcher.expect_nothing_pending_across(&a, &b).await;

    // B's report that differs is shown, and so is B's next one, although it equals A's own
    // view: the watcher last saw B's.
    tab_b.send_type("presence", set("online")).await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "online"
    );
    tab_b.send_type("presence", set("away")).await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "away"
    );
    tab_a.send_type("presence", set("online")).await;
    let online = watcher.expect("presence").await;
    assert_eq!(online["payload"]["status"], "online");
    assert_eq!(online["payload"]["metadata"], json!({"tab": 1}));
    watcher.expect_nothing_pending_across(&a, &b).await;
}

#[tokio::test]
async fn a_tab_opened_on_a_second_node_keeps_what_its_watchers_saw() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut watcher = watcher_of(&a, "dave").await;
    let mut tab_b = b.connect("dave").await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "online"
    );
    tab_b.send_type("presence", json!({"status": "away"})).await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "away"
    );
    // A second tab, on A: not news, and A's new state takes over what the watcher saw.
    let tab_a = a.connect("dave").await;
    let dave = UserId::from_trusted("dave");
    assert_eq!(a.hub.presence().get(&dave).status, Status::Away);
    watcher.expect_nothing_pending_across(&a, &b).await;
    tab_b
        .send_type("presence", json!({"status": "online"}))
        .await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "online"
    );

    // Appearing offline on B holds for a new tab on A too.
    tab_b
        .send_type("presence", json!({"status": "offline"}))
        .await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "offline"
    );
    drop(tab_a);
    wait_until("dave's tab on A is gone", || a.hub.stats().connections == 1).await;
    let _tab_a = a.connect("dave").await;
    assert_eq!(a.hub.presence().get(&dave).status, Status::Offline);
    watcher.expect_nothing_pending_across(&a, &b).await;
}

#[tokio::test]
async fn a_user_who_appears_offline_is_offline_on_a_node_that_starts_later() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut watcher = watcher_of(&b, "erin").await;
    let mut erin = a.connect("erin").await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "online"
    );
    erin.send_type("presence", json!({"status": "offline"}))
        .await;
    // Announced in the transaction that wrote it to a's state.
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "offline"
    );
    // A node that starts now learns of erin from a's state: connected, and offline by choice.
    let c = node(&redis, "c").await;
    let erin_id = UserId::from_trusted("erin");
    assert_eq!(c.hub.user_connection_count(&erin_id), 1);
    assert_eq!(c.hub.presence().get(&erin_id).status, Status::Offline);
    let _late_watcher = watcher_of(&c, "erin").await;

    // Her last connection closes: nothing of her presence is left in a's state.
    drop(erin);
    let client = redis::Client::open(redis.url()).unwrap();
    let connection = client.get_multiplexed_async_connection().await.unwrap();
    wait_until_async("a's state holds nothing of erin", || async {
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg("switchboard:{cluster}state:a")
            .query_async(&mut connection.clone())
            .await
            .unwrap();
        fields == ["version"]
    })
    .await;
}

#[tokio::test]
async fn an_idle_tab_does_not_make_away_a_user_active_on_another_node() {
    let redis = RedisServer::start().await;
    let a = node_with(&redis, "a", |s| {
        s.away_timeout = Some("300ms".parse().unwrap())
    })
    .await;
    let b = node(&redis, "b").await;
    let mut watchers = [watcher_of(&a, "kim").await, watcher_of(&b, "kim").await];
    let _active = b.connect("kim").await;
    for watcher in &mut watchers {
        assert_eq!(
            watcher.expect("presence").await["payload"]["status"],
            "online"
        );
    }
    let kim = UserId::from_trusted("kim");
    wait_until("A sees kim online", || {
        a.hub.presence().get(&kim).status == Status::Online
    })
    .await;
    let _idle = a.connect("kim").await;

    // A finds its tab idle and says so; B, where kim is active, says otherwise.
    let [on_a, on_b] = &mut watchers;
    assert_eq!(on_a.expect("presence").await["payload"]["status"], "away");
    assert_eq!(on_a.expect("presence").await["payload"]["status"], "online");
    on_b.expect_nothing_pending_across(&b, &a).await;
    assert_eq!(
        a.hub.presence().get(&kim).status,
        Status::Online,
        "as shown"
    );
    assert_eq!(b.hub.presence().get(&kim).status, Status::Online);
    on_a.expect_nothing_pending_across(&a, &b).await;
}

#[tokio::test]
async fn max_connections_per_user_holds_cluster_wide() {
    let redis = RedisServer::start().await;
    let a = node_with(&redis, "a", |s| s.max_connections_per_user = Some(2)).await;
    let b = node_with(&redis, "b", |s| s.max_connections_per_user = Some(2)).await;
    let _first = a.connect("frank").await;
    let _second = b.connect("frank").await;
    let frank = UserId::from_trusted("frank");
    wait_until("each node counts the other's connection", || {
        a.hub.user_connection_count(&frank) == 2 && b.hub.user_connection_count(&frank) == 2
    })
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(a.url("/?userId=frank"))
        .await
        .unwrap();
    assert_eq!(
        Client::ended_stream(&mut ws).await,
        Ended::Closed {
            code: 1013,
            reason: "too many connections for this user".into()
        }
    );
}

#[tokio::test]
async fn cluster_stats_add_up_every_node() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let _x = a.member("x", "shared").await;
    let y = b.member("y", "shared").await;
    let z = b.member("z", "only-b").await;
    let (_, stats) = http_json(a.addr, "GET", "/stats", None, &[]).await;
    assert_eq!(stats["connections"], 1, "without a scope: this node");
    let addr = a.addr;
    wait_until_async("cluster totals include node B", || async move {
        let (_, body) = http_json(addr, "GET", "/stats?scope=cluster", None, &[]).await;
        body["connections"] == 3
            && body["rooms"] == 2
            && body["onlineUsers"] == 3
            && body["nodeCount"] == 2
            && body["nodes"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    let (status, _) = http_json(a.addr, "GET", "/stats?scope=galaxy", None, &[]).await;
    assert_eq!(status, 400);

    // Node B leaves cleanly: as soon as A has dropped it, every figure agrees that it is gone
    // (none waits for the next liveness round).
    drop((y, z));
    assert!(b.shutdown().await);
    let shared = RoomId::from_trusted("shared");
    wait_until("A has dropped node B", || {
        !a.hub
            .room_members(&shared)
            .contains(&UserId::from_trusted("y"))
    })
    .await;
    let (_, cluster) = http_json(addr, "GET", "/stats?scope=cluster", None, &[]).await;
    assert_eq!(
        (
            &cluster["nodeCount"],
            cluster["nodes"].as_array().unwrap().len(),
            &cluster["connections"],
            &cluster["rooms"],
            &cluster["onlineUsers"],
        ),
        (&json!(1), 1, &json!(1), &json!(1), &json!(1)),
        "{cluster}"
    );
}

#[tokio::test]
async fn clusters_with_different_prefixes_share_one_redis_without_mixing() {
    let redis = RedisServer::start().await;
    let blue = |s: &mut switchboard::config::RawSettings| s.redis_prefix = Some("blue:".into());
    let green = |s: &mut switchboard::config::RawSettings| s.redis_prefix = Some("green:".into());
    let blue_a = node_with(&redis, "blue", blue).await;
    let blue_b = node_with(&redis, "blue-b", blue).await;
    let green_a = node_with(&redis, "green", green).await;
    let green_b = node_with(&redis, "green-b", green).await;
    let mut on_blue = blue_a.connect("u1").await;
    let mut on_blue_b = blue_b.connect("u3").await;
    let mut on_green = green_a.connect("u2").await;
    for node in [&blue_a, &blue_b, &green_a, &green_b] {
        node.settled().await;
    }
    on_blue
        .send_type("broadcast", json!({"content": "blue only"}))
        .await;
    on_blue.expect("broadcast").await;
    // It crossed Redis within the blue cluster, so Redis has handed it to every subscriber of
    // its channel; a marker the green cluster sends through Redis after that comes after it.
    on_blue_b.expect("broadcast").await;
    on_green
        .expect_nothing_pending_across(&green_a, &green_b)
        .await;
}

#[tokio::test]
async fn a_cluster_over_tls_with_a_password_delivers_across_nodes() {
    let pki = TestPki::generate();
    let redis = RedisServer::start_tls(&pki, "s3cret").await;
    let trust = |s: &mut switchboard::config::RawSettings| {
        s.redis_tls_ca = Some(pki.cert.clone());
    };
    let a = node_with(&redis, "a", trust).await;
    let b = node_with(&redis, "b", trust).await;
    let mut alice = a.member("alice", "general").await;
    a.settled().await;
    sees_member(&b, "general", "alice").await;
    let mut bob = b.member("bob", "general").await;
    b.settled().await;
    alice.expect("user_joined").await;
    bob.send_type("message", json!({"room": "general", "content": "over TLS"}))
        .await;
    assert_eq!(
        alice.expect("message").await["payload"]["content"],
        "over TLS"
    );

    // Without the CA the server's certificate is not trusted (the system's roots do not hold
    // it): the node runs alone and says it is degraded.
    let untrusting = TestServer::with(|s| s.redis_url = Some(redis.url())).await;
    let mut carol = untrusting.connect("carol").await;
    carol
        .send_type("broadcast", json!({"content": "lost"}))
        .await;
    carol.expect("broadcast").await;
    wait_until(
        "the publication is dropped, Redis being unreachable",
        || untrusting.hub.stats().broker_dropped > 0,
    )
    .await;
    let (status, body) = http_json(untrusting.addr, "GET", "/ready", None, &[]).await;
    assert_eq!((status, body["status"].as_str()), (503, Some("degraded")));
}
