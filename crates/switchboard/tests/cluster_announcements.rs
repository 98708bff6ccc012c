//! Membership announcements in batches (issue 15): what a burst of connections costs Redis, and
//! that the other nodes still see every change, from the event channel and from the state
//! hash.

#![allow(clippy::unwrap_used)]

use futures_util::future::join_all;
use serde_json::json;
use switchboard::ids::RoomId;
use switchboard_testkit::{Client, RedisServer, TestServer, wait_until_async};

/// Connections in the burst.
const CLIENTS: usize = 200;

/// The commands a node's announcements are made of. Besides them, only a room's first join
/// sends one of them here: the stream read creates the room's epoch with an `HSET` (in its
/// script, which `INFO commandstats` counts). Liveness uses `SET` and `SADD`, subscriptions
/// their own commands, and no message is published.
const ANNOUNCING: [&str; 5] = ["multi", "hset", "hdel", "publish", "exec"];

/// Before batching, every announcement was its own `MULTI`, `HSET` or `HDEL` of its field,
/// `HSET` of the version, `PUBLISH`, `EXEC`: five commands. A lifecycle here announces six
/// changes (connect: the user's connections and presence; join; leave; close: connections and
/// presence again), so the unbatched code made 31 of these commands per connection in this
/// test (30, and the room's `HSET`), whatever the timing. Batched, a run of announcements costs
/// at most five commands together, but how many share a run depends on timing (what is queued
/// while the previous pipeline is in flight): 1.4 to 1.8 per connection where this was
/// written. So this is an upper bound that the unbatched code exceeds threefold, and that even
/// runs of one event each would exceed (4 or 5 commands each: 28 per connection).
const MOST_PER_CONNECTION: f64 = 10.0;

async fn node(redis: &RedisServer, name: &str) -> TestServer {
    TestServer::cluster_node(redis, name, |s| {
        s.node_ttl = Some("2s".parse().unwrap());
        s.rate_limit = Some(0);
    })
    .await
}

/// Calls of the announcing commands Redis processed so far.
async fn announcing_calls(admin: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            if !ANNOUNCING.contains(&name) {
                return None;
            }
            let calls = stats.strip_prefix("calls=")?.split(',').next()?;
            calls.parse::<u64>().ok()
        })
        .sum()
}

/// Waits until `server` sees, on the other nodes, `count` connections, each of its own user
/// in a room of their own: in the state store's counts, and in its own view of the others
/// (which the announcements bring after the store has them).
async fn sees(server: &TestServer, count: usize) {
    let last = RoomId::from_trusted(format!("room{}", CLIENTS - 1));
    let last = &last;
    wait_until_async(
        "the store and the node see the other nodes' connections",
        || async move {
            let stats = server.hub.cluster_stats().await.unwrap();
            let stored = stats.connections == count as u64
                && stats.online_users == count
                && stats.rooms == count;
            let seen = server.hub.presence().online_users().len() == count
                && server.hub.room_members(last).len() == usize::from(count > 0);
            stored && seen
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_shares_announcements_and_every_node_sees_it_all() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();

    let before_joins = announcing_calls(&mut admin).await;
    let mut clients: Vec<Client> = join_all((0..CLIENTS).map(|n| {
        let a = &a;
        async move { a.member(&format!("user{n}"), &format!("room{n}")).await }
    }))
    .await;
    sees(&b, CLIENTS).await;
    let joins = announcing_calls(&mut admin).await - before_joins;

    // A node that starts now reads a's state hash: every field the batches set is there.
    let c = node(&redis, "c").await;
    sees(&c, CLIENTS).await;

    let before_leaves = announcing_calls(&mut admin).await;
    join_all(
        clients
            .iter_mut()
            .enumerate()
            .map(|(n, client)| async move {
                client
                    .send_type("leave_room", json!({ "room": format!("room{n}") }))
                    .await;
                client.expect("room_left").await;
            }),
    )
    .await;
    drop(clients);
    sees(&b, 0).await;
    let leaves = announcing_calls(&mut admin).await - before_leaves;

    // And every field the batches deleted is gone.
    let d = node(&redis, "d").await;
    sees(&d, 0).await;
    sees(&c, 0).await;

    let per_connection = (joins + leaves) as f64 / CLIENTS as f64;
    assert!(
        per_connection <= MOST_PER_CONNECTION,
        "{per_connection} announcing commands per connection ({joins} for the connects and \
         joins, {leaves} for the leaves and closes of {CLIENTS}): announcements are not batched"
    );
}
