//! A node whose subscription to Redis was cut while it kept its other connection (a network
//! blip, a proxy's idle cut, `CLIENT KILL`) missed the other nodes' announcements meanwhile:
//! when it subscribes again it catches up with what they hold, members and presence, and
//! tells its clients once, without waiting for the others to change again.

#![allow(clippy::unwrap_used)]

use switchboard::broker::BrokerStatus;
use switchboard::ids::{RoomId, UserId};
use switchboard::presence::Status;
use switchboard_testkit::{Client, RedisServer, TestServer, wait_until, wait_until_async};

/// The ids of the Pub/Sub connections of Redis user `user`.
async fn pubsub_ids(admin: &mut redis::aio::MultiplexedConnection, user: &str) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(admin)
        .await
        .unwrap();
    list.lines()
        .filter(|line| line.split(' ').any(|field| field == format!("user={user}")))
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}

async fn acl(admin: &mut redis::aio::MultiplexedConnection, rule: &[&str]) {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(rule)
        .query_async(admin)
        .await
        .unwrap();
}

#[tokio::test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server: --features external"
)]
async fn a_node_whose_subscription_was_cut_catches_up_with_what_it_missed() {
    let redis = RedisServer::start().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    acl(&mut admin, &["alpha", "on", ">secret", "~*", "&*", "+@all"]).await;
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    let a = TestServer::cluster_node(&redis, "a", |s| {
        s.redis_url = Some(format!("redis://alpha:secret@127.0.0.1:{port}"));
    })
    .await;
    let b = TestServer::cluster_node(&redis, "b", |_| {}).await;
    let mut alice = a.member("alice", "lobby").await;

    // A's subscribing connection is cut and cannot come back; its publishing one stays.
    acl(&mut admin, &["alpha", "off"]).await;
    let ids = pubsub_ids(&mut admin, "alpha").await;
    assert_eq!(ids.len(), 1, "one subscribing connection: {ids:?}");
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&ids[0])
        .query_async(&mut admin)
        .await
        .unwrap();
    wait_until("A's subscription is down", || {
        a.hub.stats().broker_status == BrokerStatus::Degraded
    })
    .await;

    // Meanwhile on B: bob arrives and joins the lobby; the store has it.
    let mut bob = Client::connect(&format!("ws://{}/?userId=bob", b.addr)).await;
    bob.join("lobby").await;
    let lobby = RoomId::from_trusted("lobby");
    let user = UserId::from_trusted("bob");
    wait_until_async("the store holds bob in the lobby", || {
        let (hub, lobby, user) = (&b.hub, &lobby, &user);
        async move {
            (hub.cluster_room_members(lobby).await).is_ok_and(|members| members.contains(user))
        }
    })
    .await;
    assert!(
        !a.hub.room_members(&lobby).contains(&user),
        "A did not hear of it"
    );

    // A subscribes again: it knows bob is online and in the lobby, with nothing else changing.
    acl(&mut admin, &["alpha", "on"]).await;
    a.settled().await;
    wait_until("A knows bob is in the lobby", || {
        a.hub.room_members(&lobby).contains(&user)
    })
    .await;
    let presence = a.hub.presence().get(&user);
    assert_eq!(presence.status, Status::Online);
    let notice = alice.expect("user_joined").await;
    assert_eq!(notice["userId"], "bob", "{notice}");
    alice.expect_nothing_pending().await;
}
