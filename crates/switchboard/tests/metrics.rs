//! The operations surface: `/metrics` (Prometheus text, parsed here by a small independent
//! parser), the `topRooms` of `/stats`, and the `/dashboard` page.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use switchboard::ids::{RoomId, UserId};
use switchboard::protocol::ServerFrame;
use switchboard_testkit::{
    RawClient, RedisServer, TestServer, http_get, http_json, http_request, wait_until,
    wait_until_async,
};

/// One sample line: `name{label="value",…} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed text exposition.
#[derive(Debug)]
struct Exposition {
    /// Family name -> `counter`, `gauge`, `histogram`, …
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// Parses the text format (version 0.0.4), checking that every sample belongs to a family
    /// declared with `# TYPE` and that histograms are consistent.
    fn parse(text: &str) -> Self {
        let mut types = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines().filter(|line| !line.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect(line);
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "{line}"
                );
            } else if line.starts_with("# HELP ") || line.starts_with('#') {
                continue;
            } else {
                samples.push(parse_sample(line));
            }
        }
        let exposition = Self { types, samples };
        for sample in &exposition.samples {
            let family = exposition.family_of(&sample.name);
            assert!(
                exposition.types.contains_key(family),
                "no TYPE for {}",
                sample.name
            );
        }
        exposition.check_histograms();
        exposition
    }

    /// The family a sample name belongs to (`x_bucket`, `x_sum`, `x_count` of histogram `x`).
    fn family_of<'a>(&self, name: &'a str) -> &'a str {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && self.types.get(base).is_some_and(|kind| kind == "histogram")
            {
                return base;
            }
        }
        name
    }

    fn check_histograms(&self) {
        for (family, _) in self.types.iter().filter(|(_, kind)| *kind == "histogram") {
            let buckets: Vec<(f64, f64)> = self
                .samples
                .iter()
                .filter(|s| s.name == format!("{family}_bucket"))
                .map(|s| (parse_value(&s.labels["le"]), s.value))
                .collect();
            assert!(!buckets.is_empty(), "{family} has no buckets");
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family} buckets must be ascending and cumulative: {buckets:?}"
            );
            let (last_bound, last_count) = *buckets.last().unwrap();
            assert!(last_bound.is_infinite(), "{family} needs a +Inf bucket");
            assert_eq!(last_count, self.value(&format!("{family}_count"), &[]));
        }
    }

    /// The value of the sample with exactly these labels; panics if there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
            .value
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn parse_sample(line: &str) -> Sample {
    let (name, mut rest) = line.split_at(line.find(['{', ' ']).expect(line));
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line}"
    );
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let end = if inner.starts_with('}') {
            1
        } else {
            parse_labels(inner, &mut labels, line)
        };
        rest = &inner[end..];
    }
    let value = rest.trim().split(' ').next().expect(line);
    Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value),
    }
}

/// Parses `key="value",…}` into `labels`; returns the offset just past the closing brace.
fn parse_labels(text: &str, labels: &mut BTreeMap<String, String>, line: &str) -> usize {
    let mut at = 0;
    loop {
        let eq = text[at..].find('=').expect(line) + at;
        let key = text[at..eq].to_owned();
        assert_eq!(&text[eq + 1..eq + 2], "\"", "{line}");
        let mut value = String::new();
        let mut chars = text[eq + 2..].char_indices();
        let close = loop {
            match chars.next().expect(line) {
                (_, '\\') => match chars.next().expect(line).1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (i, '"') => break eq + 2 + i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key, value);
        match &text[close + 1..close + 2] {
            "," => at = close + 2,
            "}" => return close + 2,
            _ => panic!("bad labels: {line}"),
        }
    }
}

fn parse_value(text: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("bad value {other:?}")),
    }
}

async fn scrape(server: &TestServer) -> Exposition {
    let (status, body) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    Exposition::parse(&body)
}

#[tokio::test]
async fn metrics_parse_and_follow_connections_and_messages() {
    let server = TestServer::with(|s| {
        s.rate_limit = Some(3);
        s.rate_limit_burst = Some(3);
    })
    .await;
    let before = scrape(&server).await;
    assert_eq!(before.value("switchboard_connections", &[]), 0.0);
    assert_eq!(before.types["switchboard_connections"], "gauge");
    assert_eq!(before.types["switchboard_messages_in_total"], "counter");
    assert_eq!(
        before.types["switchboard_fanout_latency_seconds"],
        "histogram"
    );
    assert_eq!(
        before.value(
            "switchboard_broker_state",
            &[("broker", "local"), ("state", "connected")]
        ),
        1.0
    );
    assert_eq!(
        before.value(
            "switchboard_broker_state",
            &[("broker", "local"), ("state", "degraded")]
        ),
        0.0
    );
    assert!(
        !before.has("switchboard_cluster_nodes"),
        "a lone node has no cluster"
    );
    assert_eq!(
        before.value("switchboard_fanout_latency_seconds_count", &[]),
        0.0
    );

    let mut alice = server.member("alice", "general").await;
    let mut bob = server.member("bob", "general").await;
    alice.expect("user_joined").await;
    alice
        .send_type("message", json!({"room": "general", "content": "hi"}))
        .await;
    bob.expect("message").await;
    bob.send_text("{not json").await;
    bob.expect_error("INVALID_JSON").await;

    let after = scrape(&server).await;
    assert_eq!(after.value("switchboard_connections", &[]), 2.0);
    assert_eq!(after.value("switchboard_rooms", &[]), 1.0);
    assert_eq!(after.value("switchboard_online_users", &[]), 2.0);
    assert_eq!(
        after.value("switchboard_connections_opened_total", &[]),
        2.0
    );
    let messages_in = |kind: &str| after.value("switchboard_messages_in_total", &[("type", kind)]);
    assert_eq!(messages_in("join_room"), 2.0);
    assert_eq!(messages_in("message"), 1.0);
    assert_eq!(messages_in("invalid"), 1.0);
    assert_eq!(messages_in("publish"), 0.0);
    let messages_out =
        |target: &str| after.value("switchboard_messages_out_total", &[("target", target)]);
    // bob's user_joined to alice, alice's message to bob.
    assert_eq!(messages_out("room"), 2.0);
    // connect x2, room_joined x2, the INVALID_JSON error.
    assert_eq!(messages_out("reply"), 5.0);
    let errors = |code: &str| after.value("switchboard_errors_sent_total", &[("code", code)]);
    assert_eq!(errors("INVALID_JSON"), 1.0);
    assert_eq!(errors("RATE_LIMITED"), 0.0);
    // Both room fan-outs reached someone, so both are in the histogram.
    assert_eq!(
        after.value("switchboard_fanout_latency_seconds_count", &[]),
        2.0
    );
    assert!(after.value("switchboard_fanout_latency_seconds_sum", &[]) > 0.0);
    assert!(after.value("switchboard_messages_in_bytes_total", &[]) > 0.0);
    assert!(after.value("switchboard_messages_out_bytes_total", &[]) > 0.0);
    // The totals of /stats are the sums of the labelled series: one set of counters.
    let stats = server.stats().await;
    let sum = |name: &str| -> f64 {
        after
            .samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    };
    assert_eq!(
        stats["messagesIn"].as_f64(),
        Some(sum("switchboard_messages_in_total"))
    );
    assert_eq!(
        stats["messagesOut"].as_f64(),
        Some(sum("switchboard_messages_out_total"))
    );
    assert_eq!(
        stats["errorsSent"].as_f64(),
        Some(sum("switchboard_errors_sent_total"))
    );

    // bob has used 2 of his 3 tokens (join, the bad frame): two more frames, one refused.
    bob.send_type("publish", json!({"channel": "news", "data": 1}))
        .await;
    bob.send_type("publish", json!({"channel": "news", "data": 2}))
        .await;
    bob.expect_error("RATE_LIMITED").await;
    let limited = scrape(&server).await;
    assert_eq!(limited.value("switchboard_rate_limited_total", &[]), 1.0);
    assert_eq!(
        limited.value("switchboard_messages_in_total", &[("type", "publish")]),
        2.0
    );

    drop(alice);
    wait_until("alice is gone", || server.hub.stats().connections == 1).await;
    let gone = scrape(&server).await;
    assert_eq!(gone.value("switchboard_connections", &[]), 1.0);
}

#[tokio::test]
async fn metrics_count_a_dropped_slow_consumer() {
    let server = TestServer::with(|s| s.max_queued_bytes = Some("64KiB".parse().unwrap())).await;
    let mut stalled = RawClient::connect(server.addr, "/?userId=stalled").await;
    stalled
        .send_frame(0x81, br#"{"type":"ping","payload":{}}"#)
        .await;
    wait_until("the stalled client is registered", || {
        server.hub.stats().connections == 1
    })
    .await;
    assert_eq!(
        scrape(&server)
            .await
            .value("switchboard_slow_consumers_dropped_total", &[]),
        0.0
    );
    // Up to 40 MB in 16 KiB frames (each fits the 64 KiB outbound limit): far more than the
    // socket buffers, so the queue overflows.
    let chunk = "x".repeat(16 * 1024);
    let frame = ServerFrame::custom("notice", json!({ "content": chunk }));
    let user = UserId::from_trusted("stalled");
    let hub = server.hub.clone();
    let sender = tokio::spawn(async move {
        for _ in 0..2560 {
            if hub.stats().slow_consumers_dropped > 0 {
                break;
            }
            hub.send_to_user(&user, &frame);
            tokio::task::yield_now().await;
        }
    });
    wait_until("the stalled client is dropped", || {
        server.hub.stats().slow_consumers_dropped == 1
    })
    .await;
    sender.await.unwrap();
    let dropped = scrape(&server).await;
    assert_eq!(
        dropped.value("switchboard_slow_consumers_dropped_total", &[]),
        1.0
    );
    assert!(dropped.value("switchboard_messages_out_total", &[("target", "user")]) >= 1.0);
}

#[tokio::test]
async fn the_collector_registers_in_an_application_registry() {
    let server = TestServer::start().await;
    let _alice = server.member("alice", "general").await;
    let registry = prometheus::Registry::new();
    registry
        .register(Box::new(switchboard::metrics::HubCollector::new(
            server.hub.clone(),
        )))
        .unwrap();
    let families = registry.gather();
    let connections = families
        .iter()
        .find(|f| f.name() == "switchboard_connections")
        .unwrap();
    assert_eq!(connections.get_metric()[0].get_gauge().get_value(), 1.0);
    let mut text = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&families, &mut text)
        .unwrap();
    let exposition = Exposition::parse(&text);
    assert_eq!(exposition.value("switchboard_rooms", &[]), 1.0);
}

#[tokio::test]
async fn stats_list_the_top_rooms_by_members() {
    let server = TestServer::start().await;
    let empty = server.stats().await;
    assert_eq!(empty["topRooms"], json!([]));

    // big: 3 users (one of them twice), mid-a and mid-b: 2 users each, then 9 rooms of one.
    let mut clients = Vec::new();
    for (user, room) in [
        ("u1", "big"),
        ("u2", "big"),
        ("u3", "big"),
        ("u3", "big"),
        ("u1", "mid-b"),
        ("u2", "mid-b"),
        ("u4", "mid-a"),
        ("u5", "mid-a"),
    ] {
        clients.push(server.member(user, room).await);
    }
    for i in 1..=9 {
        clients.push(
            server
                .member(&format!("solo{i}"), &format!("solo-{i}"))
                .await,
        );
    }
    let stats = server.stats().await;
    assert_eq!(stats["rooms"], 12);
    let top = stats["topRooms"].as_array().unwrap();
    assert_eq!(top.len(), 10, "{top:?}");
    assert_eq!(top[0], json!({"room": "big", "members": 3}));
    assert_eq!(top[1], json!({"room": "mid-a", "members": 2}));
    assert_eq!(top[2], json!({"room": "mid-b", "members": 2}));
    let solos: Vec<&str> = top[3..]
        .iter()
        .map(|r| r["room"].as_str().unwrap())
        .collect();
    assert_eq!(
        solos,
        [
            "solo-1", "solo-2", "solo-3", "solo-4", "solo-5", "solo-6", "solo-7"
        ]
    );
    assert!(top[3..].iter().all(|r| r["members"] == 1));
    // Rates and broker status are there for the dashboard.
    assert!(stats["messagesInPerSec"].is_number());
    assert!(stats["messagesOutPerSec"].is_number());
    assert_eq!(stats["brokerStatus"], "connected");
    // The library sees the same list.
    assert_eq!(server.hub.top_rooms(1)[0].room, RoomId::from_trusted("big"));
    // A lone node's cluster view has the same top rooms.
    let (status, body) = http_get(server.addr, "/stats?scope=cluster").await;
    assert_eq!(status, 200);
    let cluster: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cluster["topRooms"], stats["topRooms"]);
}

#[tokio::test]
async fn the_dashboard_is_served_with_its_live_counters() {
    let server = TestServer::start().await;
    let (status, body) = http_request(
        server.addr,
        "GET /dashboard HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    for stat in ["connections", "rooms", "onlineUsers", "messagesIn"] {
        assert!(
            body.contains(&format!("data-stat=\"{stat}\"")),
            "no data-stat {stat}"
        );
    }
    assert!(body.contains("/stats?scope=cluster"));
    assert!(body.contains("<canvas"));
    // Nothing is loaded from elsewhere.
    assert!(!body.contains("http://") && !body.contains("https://"));
    let (_, landing) = http_get(server.addr, "/").await;
    assert!(landing.contains("href=\"/dashboard\""));
}

/// A cluster node on `redis`, settled.
async fn cluster_node(redis: &RedisServer, name: &str) -> TestServer {
    TestServer::cluster_node(redis, name, |s| s.node_ttl = Some("2s".parse().unwrap())).await
}

#[tokio::test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server: --features external"
)]
async fn a_cluster_node_reports_the_cluster_and_top_rooms_over_every_node() {
    let redis = RedisServer::start().await;
    let a = cluster_node(&redis, "a").await;
    let b = cluster_node(&redis, "b").await;
    let _x = a.member("x", "shared").await;
    let _y = b.member("y", "shared").await;
    let _y2 = b.member("y", "b-only").await;
    let _z = b.member("z", "b-only").await;
    let _w = b.member("w", "b-only").await;
    let _v = a.member("v", "a-only").await;
    let addr = a.addr;
    // Each node's joins reach the store when its announcements are written.
    let top = json!([
        {"room": "b-only", "members": 3},
        {"room": "shared", "members": 2},
        {"room": "a-only", "members": 1},
    ]);
    let top = &top;
    wait_until_async("node A reports every node's rooms", || async move {
        let (_, body) = http_json(addr, "GET", "/stats?scope=cluster", None, &[]).await;
        body["nodeCount"] == 2 && body["topRooms"] == *top
    })
    .await;
    // Without a scope: this node's rooms only.
    let (_, node) = http_json(addr, "GET", "/stats", None, &[]).await;
    assert_eq!(
        node["topRooms"],
        json!([{"room": "a-only", "members": 1}, {"room": "shared", "members": 1}])
    );
    let metrics = scrape(&a).await;
    assert_eq!(metrics.value("switchboard_cluster_nodes", &[]), 2.0);
    assert_eq!(
        metrics.value(
            "switchboard_broker_state",
            &[("broker", "redis"), ("state", "connected")]
        ),
        1.0
    );
}

#[tokio::test]
async fn metrics_carry_the_build_and_the_process() {
    let server = TestServer::start().await;
    let metrics = scrape(&server).await;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        metrics.value("switchboard_build_info", &[("version", version)]),
        1.0
    );
    assert_eq!(metrics.types["switchboard_build_info"], "gauge");
    // Byte counters end in `_bytes_total`; the older names are gone.
    for old in ["switchboard_bytes_in_total", "switchboard_bytes_out_total"] {
        assert!(!metrics.has(old), "{old} is still exposed");
    }
    for name in [
        "switchboard_messages_in_bytes_total",
        "switchboard_messages_out_bytes_total",
    ] {
        assert_eq!(metrics.types[name], "counter", "{name}");
    }
    // The process metrics, unprefixed as every Prometheus client library names them. The
    // test runs the server in its own process, so they describe this one.
    assert_eq!(metrics.types["process_cpu_seconds_total"], "counter");
    // Counted in clock ticks (10 ms): a fresh test process may not have spent one yet.
    assert!(metrics.value("process_cpu_seconds_total", &[]) >= 0.0);
    assert!(metrics.value("process_resident_memory_bytes", &[]) > 1.0e6);
    let open = metrics.value("process_open_fds", &[]);
    // At least stdio and the listener.
    assert!(open >= 4.0, "{open}");
    assert!(metrics.value("process_max_fds", &[]) >= open);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = metrics.value("process_start_time_seconds", &[]);
    assert!(
        started <= now + 1.0 && started > now - 24.0 * 3600.0,
        "{started}"
    );
}

#[tokio::test]
async fn closes_are_counted_by_who_sent_them_and_their_code() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;

    let server = TestServer::start().await;
    let closed = |scrape: &Exposition, initiator: &str, code: &str| {
        scrape.value(
            "switchboard_connections_closed_total",
            &[("initiator", initiator), ("code", code)],
        )
    };
    let before = scrape(&server).await;
    assert_eq!(
        before.types["switchboard_connections_closed_total"],
        "counter"
    );
    assert_eq!(closed(&before, "server", "1008"), 0.0);

    // The server closes: 1008, as a ban through the API would.
    let mut banned = server.connect("mallory").await;
    let user = UserId::from_trusted("mallory");
    let code = switchboard::protocol::CloseCode::Policy;
    assert_eq!(server.hub.disconnect_user(&user, code, "banned"), 1);
    assert_eq!(banned.close_code().await, 1008);

    // Clients close: a normal close, and one with an application's own code.
    for (user, code) in [("alice", WsCode::Normal), ("bob", WsCode::Library(4000))] {
        let url = server.url(&format!("/?userId={user}"));
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let frame = CloseFrame {
            code,
            reason: "bye".into(),
        };
        ws.send(Message::Close(Some(frame))).await.unwrap();
        // The server's echo ends the handshake.
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut ws).await {
            if message.is_close() {
                break;
            }
        }
    }
    switchboard_testkit::wait_until_async("the closes are counted", || async {
        let now = scrape(&server).await;
        closed(&now, "server", "1008") == 1.0
            && closed(&now, "client", "1000") == 1.0
            && closed(&now, "client", "other") == 1.0
    })
    .await;
    let after = scrape(&server).await;
    assert_eq!(closed(&after, "server", "1000"), 0.0);
    assert_eq!(closed(&after, "client", "1008"), 0.0);
}
