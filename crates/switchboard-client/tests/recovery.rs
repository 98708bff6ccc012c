//! Recovery as the application sees it (DESIGN.md §7), against the real server: a client whose
//! connection is cut (a TCP reset, as when a phone loses its network) while another client sends
//! gets every missed message once, in order, with `recovered: Some(true)`; after a server restart
//! it is told `recovered: Some(false)`; `history` returns what the server kept. And, against a
//! scripted server, a drop between a recovered rejoin and its replay asks for the replay again.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::config;
use switchboard_client::{Client, Event, Events, HistoryQuery, StreamPosition};
use switchboard_testkit::{TestServer, WAIT, next_event, received_events};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// A TCP proxy between a client and the server that the test can cut: [`Proxy::cut`] resets
/// every connection through it and refuses new ones (reset at once) until [`Proxy::open`]. So
/// the client is away for exactly as long as the test says, without a sleep.
struct Proxy {
    /// `ws://` URL of the proxy.
    url: String,
    /// Whether new connections are let through; read by the accept loop.
    open: Arc<AtomicBool>,
    /// Bumped by every cut; each pipe task watches it and resets its client when it changes.
    cuts: watch::Sender<u64>,
}

impl Proxy {
    async fn to(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0);
        let (gate, pipes) = (open.clone(), cuts.clone());
        // Accepts until the test's runtime ends.
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    reset(client);
                    continue;
                }
                let mut cut = pipes.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return reset(client);
                    };
                    let mut client = client;
                    let was_cut = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                        _ = cut.changed() => true,
                    };
                    if was_cut {
                        reset(client);
                    }
                });
            }
        });
        Self { url, open, cuts }
    }

    /// Resets the connections through the proxy; new ones are refused until [`Proxy::open`].
    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Drops a connection with a TCP reset: no close frame, no FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn server() -> TestServer {
    TestServer::with(|raw| raw.rate_limit = Some(0)).await
}

/// What the application saw of the streams: joins and subscriptions with their verdicts, and
/// messages and publications as (offset, number sent).
#[derive(Debug, PartialEq)]
enum Seen {
    Joined(Option<bool>),
    Subscribed(Option<bool>),
    Message(Option<u64>, Value),
    Publish(Option<u64>, Value),
}

fn seen(event: Event) -> Option<Seen> {
    Some(match event {
        Event::RoomJoined { recovered, .. } => Seen::Joined(recovered),
        Event::Subscribed { recovered, .. } => Seen::Subscribed(recovered),
        Event::Message {
            offset, payload, ..
        } => Seen::Message(offset, payload["content"].clone()),
        Event::Publish { offset, data, .. } => Seen::Publish(offset, data),
        _ => return None,
    })
}

/// The next `count` stream events, skipping the others (presence, connection events).
async fn next_seen(events: &mut Events, count: usize) -> Vec<Seen> {
    let mut got = Vec::new();
    while got.len() < count {
        let event = next_event(events, "a stream event", |e| seen(e.clone()).is_some()).await;
        got.extend(seen(event));
    }
    got
}

async fn say(client: &Client, content: Value) {
    let payload = json!({"room": "feed", "content": content});
    client.request("message", payload, WAIT).await.unwrap();
}

async fn publish(client: &Client, data: Value) {
    let payload = json!({"channel": "news", "data": data});
    client.request("publish", payload, WAIT).await.unwrap();
}

#[tokio::test]
async fn a_cut_connection_comes_back_with_every_missed_message_once_and_in_order() {
    let server = server().await;
    let proxy = Proxy::to(server.addr).await;
    let (reader, mut events) = Client::connect(config(&proxy.url, "reader")).await.unwrap();
    reader.room("feed").join().await.unwrap();
    reader.channel("news").subscribe().await.unwrap();
    let (writer, mut writer_events) = Client::connect(config(&server.url(""), "writer"))
        .await
        .unwrap();
    writer.room("feed").join().await.unwrap();
    say(&writer, json!("before")).await;
    publish(&writer, json!("before")).await;
    // The reader's own message: not delivered back to it, its ack says where it went.
    reader.room("feed").send("mine").unwrap();
    next_event(
        &mut writer_events,
        "the reader's message",
        |e| matches!(e, Event::Message { payload, .. } if payload["content"] == "mine"),
    )
    .await;
    assert_eq!(
        next_seen(&mut events, 4).await,
        [
            Seen::Joined(None),
            Seen::Subscribed(None),
            Seen::Message(Some(1), json!("before")),
            Seen::Publish(Some(1), json!("before")),
        ]
    );
    received_events(&reader, &mut events).await;
    let epoch = reader.room("feed").position().unwrap().epoch;
    assert_eq!(
        reader.room("feed").position(),
        Some(StreamPosition {
            offset: 2,
            epoch: epoch.clone()
        }),
        "the ack of its own message moved the reader on"
    );

    proxy.cut();
    next_event(&mut events, "disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    for n in 1..=5 {
        say(&writer, json!(n)).await;
        publish(&writer, json!(n)).await;
    }
    proxy.open();

    let mut expected = vec![Seen::Joined(Some(true))];
    expected.extend((1..=5).map(|n| Seen::Message(Some(n + 2), json!(n))));
    expected.push(Seen::Subscribed(Some(true)));
    expected.extend((1..=5).map(|n| Seen::Publish(Some(n + 1), json!(n))));
    assert_eq!(next_seen(&mut events, expected.len()).await, expected);
    let after: Vec<_> = received_events(&reader, &mut events)
        .await
        .into_iter()
        .filter_map(seen)
        .collect();
    assert_eq!(after, [], "nothing twice");
    assert_eq!(
        reader.room("feed").position(),
        Some(StreamPosition { offset: 7, epoch })
    );

    // Live delivery goes on from there.
    say(&writer, json!("live")).await;
    assert_eq!(
        next_seen(&mut events, 1).await,
        [Seen::Message(Some(8), json!("live"))]
    );
}

/// A scripted server's side of one connection, for what the real server cannot be made to do
/// on cue: drop a connection right after a recovered `room_joined`, before the replay.
struct Scripted {
    ws: WebSocketStream<TcpStream>,
}

impl Scripted {
    /// Accepts the client's next connection and sends `connect`.
    async fn accept(listener: &TcpListener) -> Self {
        let (tcp, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("the client to connect again")
            .unwrap();
        let mut scripted = Self {
            ws: tokio_tungstenite::accept_async(tcp).await.unwrap(),
        };
        scripted
            .send(json!({"type": "connect", "payload": {"connectionId": "1", "userId": "reader"}}))
            .await;
        scripted
    }

    async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    /// The client's next frame.
    async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next()).await.unwrap();
            if let Some(Ok(Message::Text(text))) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// Answers a `join_room` with the stream at `offset`, and `recovered` when given.
    async fn joined(&mut self, join: &Value, offset: u64, recovered: Option<bool>) {
        let mut payload = json!({"room": "r", "members": [], "memberCount": 1,
            "offset": offset, "epoch": "e"});
        if let Some(recovered) = recovered {
            payload["recovered"] = json!(recovered);
        }
        self.send(
            json!({"type": "room_joined", "room": "r", "id": join["id"], "payload": payload}),
        )
        .await;
    }

    async fn message(&mut self, offset: u64) {
        self.send(json!({"type": "message", "room": "r", "offset": offset,
            "payload": {"content": offset}}))
            .await;
    }
}

async fn message_seen(events: &mut Events, offset: u64) {
    next_event(
        events,
        "a message",
        |e| matches!(e, Event::Message { offset: Some(o), .. } if *o == offset),
    )
    .await;
}

#[tokio::test]
async fn a_drop_before_the_replay_arrives_asks_for_it_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let connecting = tokio::spawn(Client::connect(config(&url, "reader")));
    let mut server = Scripted::accept(&listener).await;
    let (reader, mut events) = connecting.await.unwrap().unwrap();
    let joining = tokio::spawn({
        let reader = reader.clone();
        async move { reader.room("r").join().await.map(|_| ()) }
    });
    let join = server.recv().await;
    assert_eq!(
        join["payload"],
        json!({"room": "r"}),
        "a first join has no since"
    );
    server.joined(&join, 3, None).await;
    joining.await.unwrap().unwrap();
    server.message(4).await;
    message_seen(&mut events, 4).await;
    drop(server);

    // Recovered, and the connection drops after the first replayed message.
    let mut server = Scripted::accept(&listener).await;
    let join = server.recv().await;
    assert_eq!(join["payload"]["since"], json!({"offset": 4, "epoch": "e"}));
    server.joined(&join, 9, Some(true)).await;
    server.message(5).await;
    message_seen(&mut events, 5).await;
    drop(server);

    let mut server = Scripted::accept(&listener).await;
    let join = server.recv().await;
    assert_eq!(
        join["payload"]["since"],
        json!({"offset": 5, "epoch": "e"}),
        "the rest of the replay is asked for again, not skipped"
    );
    // Not recovered: the client starts again from the stream's latest.
    server.joined(&join, 9, Some(false)).await;
    next_event(&mut events, "room_joined", |e| {
        matches!(
            e,
            Event::RoomJoined {
                recovered: Some(false),
                ..
            }
        )
    })
    .await;
    let position = reader.room("r").position().unwrap();
    assert_eq!((position.offset, position.epoch.as_str()), (9, "e"));
}

#[tokio::test]
async fn after_a_server_restart_the_application_is_told_to_reload() {
    let first = server().await;
    let port = first.addr.port();
    let (reader, mut events) = Client::connect(config(&first.url(""), "reader"))
        .await
        .unwrap();
    reader.room("feed").join().await.unwrap();
    reader.channel("news").subscribe().await.unwrap();
    let (writer, _) = Client::connect(config(&first.url(""), "writer"))
        .await
        .unwrap();
    writer.room("feed").join().await.unwrap();
    say(&writer, json!("before")).await;
    next_seen(&mut events, 3).await;
    let old = reader.room("feed").position().unwrap();
    assert_eq!(old.offset, 1);

    writer.close();
    assert!(first.shutdown().await, "clean shutdown");
    next_event(&mut events, "disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let second = TestServer::start_with(port, |raw| raw.rate_limit = Some(0), |_| {}).await;
    let rejoined = next_event(&mut events, "room_joined", |e| {
        matches!(e, Event::RoomJoined { .. })
    })
    .await;
    let Event::RoomJoined {
        position: Some(position),
        recovered,
        ..
    } = rejoined
    else {
        panic!("{rejoined:?}")
    };
    assert_eq!(
        recovered,
        Some(false),
        "the history went with the old server"
    );
    assert_ne!(position.epoch, old.epoch);
    assert_eq!(position.offset, 0);
    assert_eq!(
        next_seen(&mut events, 1).await,
        [Seen::Subscribed(Some(false))]
    );
    assert_eq!(reader.room("feed").position(), Some(position.clone()));

    // From the new epoch on, the client follows the new stream.
    let (writer, _) = Client::connect(config(&second.url(""), "writer"))
        .await
        .unwrap();
    writer.room("feed").join().await.unwrap();
    say(&writer, json!("after")).await;
    assert_eq!(
        next_seen(&mut events, 1).await,
        [Seen::Message(Some(1), json!("after"))]
    );
    assert_eq!(
        reader.room("feed").position().unwrap().epoch,
        position.epoch
    );
}

#[tokio::test]
async fn history_returns_what_the_server_kept() {
    let server = TestServer::with(|raw| {
        raw.rate_limit = Some(0);
        raw.history_size = Some(5);
    })
    .await;
    let (reader, mut events) = Client::connect(config(&server.url(""), "reader"))
        .await
        .unwrap();
    reader.room("feed").join().await.unwrap();
    for n in 1..=7 {
        say(&reader, json!(n)).await;
        publish(&reader, json!(n)).await;
    }

    let page = reader.history(HistoryQuery::room("feed")).await.unwrap();
    assert_eq!(page.offset, 7);
    let epoch = page.epoch.clone();
    assert_eq!(reader.room("feed").position().unwrap().epoch, epoch);
    let contents: Vec<_> = page
        .publications
        .into_iter()
        .map(|frame| seen(Event::from(frame)).unwrap())
        .collect();
    let kept: Vec<_> = (3..=7).map(|n| Seen::Message(Some(n), json!(n))).collect();
    assert_eq!(
        contents, kept,
        "the latest five, oldest first, as delivered"
    );

    // Each stream has its own epoch.
    let news = reader.history(HistoryQuery::channel("news")).await.unwrap();
    assert_eq!(news.offset, 7);
    let since = StreamPosition {
        offset: 3,
        epoch: news.epoch,
    };
    let page = reader
        .history(HistoryQuery::channel("news").limit(2).since(since))
        .await
        .unwrap();
    let data: Vec<_> = page.publications.iter().map(|f| &f.payload).collect();
    assert_eq!(data, [&json!(4), &json!(5)]);
    assert_eq!(page.publications[0].offset, Some(4));

    let refused = reader
        .history(HistoryQuery::channel("presence:someone"))
        .await
        .unwrap_err();
    assert!(refused.is_server_error("FORBIDDEN"), "{refused}");
    let too_many = reader
        .history(HistoryQuery::room("feed").limit(6))
        .await
        .unwrap_err();
    assert!(too_many.is_server_error("INVALID_MESSAGE"), "{too_many}");
    let others: Vec<_> = received_events(&reader, &mut events)
        .await
        .into_iter()
        .filter(|e| matches!(e, Event::Other(_) | Event::Error { .. }))
        .collect();
    assert_eq!(
        others,
        [],
        "answered pages and refusals are not also events"
    );
}
