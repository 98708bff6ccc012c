//! The state store's index of room members (issue 15): one Redis hash per room, `NODE\nUSER`
//! -> that node's connections of the user in the room, kept in step with the nodes' state by
//! their announcements, rewrites, departures and reaping, and read by the server API's member
//! list. Checked by reading Redis directly, on one Redis and on a Redis Cluster.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::Running;
use serde_json::json;
use switchboard_testkit::{
    Client, RedisClusterServer, RedisServer, TestServer, http_json, wait_until_async,
};

/// The index key of `room` under the default prefix.
fn index_key(room: &str) -> String {
    format!("switchboard:{{cluster}}rm:{room}")
}

/// The index of `room` as Redis at `url` holds it, fields `NODE/USER` (for readable asserts).
async fn index(url: &str, room: &str) -> HashMap<String, String> {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let fields: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(index_key(room))
        .query_async(&mut connection)
        .await
        .unwrap();
    fields
        .into_iter()
        .map(|(field, count)| (field.replace('\n', "/"), count))
        .collect()
}

/// Waits until the index of `room` at `url` is `expected` (`NODE/USER`, count).
async fn index_becomes(url: &str, room: &str, expected: &[(&str, &str)]) {
    let expected: HashMap<String, String> = expected
        .iter()
        .map(|(field, count)| ((*field).to_owned(), (*count).to_owned()))
        .collect();
    wait_until_async("the room index holds the expected members", || async {
        index(url, room).await == expected
    })
    .await;
}

/// The user ids the server API of `server` lists as members of `room`, or the error code.
async fn api_members(server: &TestServer, room: &str) -> Result<Vec<String>, (u16, String)> {
    let path = format!("/api/rooms/{room}/members");
    let (status, body) = http_json(server.addr, "GET", &path, None, &[]).await;
    if status != 200 {
        return Err((
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        ));
    }
    Ok(body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| member["userId"].as_str().unwrap().to_owned())
        .collect())
}

async fn leave(client: &mut Client, room: &str) {
    client
        .send_type("leave_room", json!({ "room": room }))
        .await;
    client.expect("room_left").await;
}

fn settings(s: &mut switchboard::config::RawSettings) {
    s.node_ttl = Some("2s".parse().unwrap());
    s.rate_limit = Some(0);
    s.api_insecure = Some(true);
}

#[tokio::test]
async fn the_index_follows_joins_leaves_departures_and_a_redis_restart() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let a = TestServer::cluster_node(&redis, "a", settings).await;
    let b = TestServer::cluster_node(&redis, "b", settings).await;
    let _alice = a.member("alice", "general").await;
    let _bob = b.member("bob", "general").await;
    let _bob_again = b.member("bob", "general").await;
    let mut carol = b.member("carol", "general").await;
    index_becomes(
        &url,
        "general",
        &[("a/alice", "1"), ("b/bob", "2"), ("b/carol", "1")],
    )
    .await;

    leave(&mut carol, "general").await;
    index_becomes(&url, "general", &[("a/alice", "1"), ("b/bob", "2")]).await;
    assert_eq!(api_members(&a, "general").await.unwrap(), ["alice", "bob"]);
    assert_eq!(api_members(&b, "general").await.unwrap(), ["alice", "bob"]);
    assert_eq!(
        api_members(&a, "nowhere").await,
        Err((404, "NOT_FOUND".to_owned()))
    );

    // A node that leaves takes its members out of the index with its state.
    assert!(b.shutdown().await);
    index_becomes(&url, "general", &[("a/alice", "1")]).await;
    assert_eq!(api_members(&a, "general").await.unwrap(), ["alice"]);

    // Redis lost everything: the node's rewrite puts its members back.
    redis.restart().await;
    index_becomes(&url, "general", &[("a/alice", "1")]).await;

    // The store is gone: the member list says so rather than guess.
    redis.stop().await;
    assert_eq!(
        api_members(&a, "general").await,
        Err((503, "UNAVAILABLE".to_owned()))
    );
}

/// Kim on the node `process`, joined to `general`.
async fn kim_joins(process: &Running) -> Client {
    let mut kim = Client::connect(&format!("ws://{}/?userId=kim", process.addr)).await;
    kim.join("general").await;
    kim
}

/// The in-process node `survivor` with alice in `general`, and a node process started with
/// `args` (named `name`) with kim in `general`, both in the index.
async fn alice_and_kim(
    redis: &RedisServer,
    args: &[&str],
    name: &str,
) -> (TestServer, Client, Running, Client) {
    let survivor = TestServer::cluster_node(redis, "survivor", settings).await;
    let process = Running::start(args, &[("REDIS_URL", &redis.url())]).await;
    let alice = survivor.member("alice", "general").await;
    let kim = kim_joins(&process).await;
    let kim_there = format!("{name}/kim");
    index_becomes(
        &redis.url(),
        "general",
        &[("survivor/alice", "1"), (&kim_there, "1")],
    )
    .await;
    (survivor, alice, process, kim)
}

#[tokio::test]
async fn a_dead_node_s_members_leave_the_index_when_it_is_reaped_or_found_stale() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let args = ["--node-ttl", "2s", "--node-id", "doomed"];
    let (survivor, _alice, doomed, _kim) = alice_and_kim(&redis, &args, "doomed").await;

    // SIGKILL: the reaper removes the node's members with its state.
    doomed.kill().await;
    index_becomes(&url, "general", &[("survivor/alice", "1")]).await;

    // An entry of a node whose state is gone (deleted by hand: it has no TTL) is not a
    // member, and the read that finds it removes it.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("HSET")
        .arg(index_key("general"))
        .arg("ghost\nzed")
        .arg(1)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(api_members(&survivor, "general").await.unwrap(), ["alice"]);
    assert_eq!(
        index(&url, "general").await,
        HashMap::from([("survivor/alice".to_owned(), "1".to_owned())])
    );
}

#[tokio::test]
async fn a_node_restarted_under_its_id_drops_its_predecessor_s_members() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    // A TTL that outlasts the test: nothing is reaped, the successor's rewrite must do it.
    let args = ["--node-ttl", "60s", "--node-id", "phoenix"];
    let (_survivor, _alice, predecessor, _kim) = alice_and_kim(&redis, &args, "phoenix").await;

    predecessor.kill().await;
    let successor = Running::start(&args, &[("REDIS_URL", &url)]).await;
    index_becomes(&url, "general", &[("survivor/alice", "1")]).await;
    let _kim = kim_joins(&successor).await;
    index_becomes(
        &url,
        "general",
        &[("survivor/alice", "1"), ("phoenix/kim", "1")],
    )
    .await;
}

#[tokio::test]
async fn the_index_works_on_a_redis_cluster() {
    let redis = RedisClusterServer::start().await;
    let a = TestServer::redis_cluster_node(&redis, "a", settings).await;
    let b = TestServer::redis_cluster_node(&redis, "b", settings).await;
    // The index lives with the membership state, on the master of the `{cluster}` slot.
    let port = redis.master_of(&index_key("general")).await;
    let url = format!("redis://127.0.0.1:{port}");
    let _alice = a.member("alice", "general").await;
    let mut bob = b.member("bob", "general").await;
    let _bob_elsewhere = b.member("bob", "random").await;
    index_becomes(&url, "general", &[("a/alice", "1"), ("b/bob", "1")]).await;
    index_becomes(&url, "random", &[("b/bob", "1")]).await;
    assert_eq!(api_members(&a, "general").await.unwrap(), ["alice", "bob"]);

    leave(&mut bob, "general").await;
    index_becomes(&url, "general", &[("a/alice", "1")]).await;
    assert!(b.shutdown().await);
    index_becomes(&url, "random", &[]).await;
    assert_eq!(api_members(&a, "general").await.unwrap(), ["alice"]);
}
