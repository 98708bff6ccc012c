//! The scripts of `indexes.rs` against a real Redis and a model: random runs of fact changes,
//! rewrites and drops on three nodes, each followed by a comparison of the counts and the room
//! index with what the nodes' facts say they must be.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redis::AsyncCommands;
use switchboard_testkit::RedisServer;

use super::super::conn::Conn;
use super::super::keys::{self, Keys};
use super::*;
use crate::cluster::Version;

const NODES: [&str; 3] = ["n0", "n1", "n2"];
const USERS: [&str; 4] = ["ann", "ben", "cy", "dee"];
const ROOMS: [&str; 3] = ["hall", "kitchen", "attic"];
const CHANNELS: [&str; 2] = ["news", "weather"];

/// Each node's facts: field -> count.
type Facts = BTreeMap<&'static str, BTreeMap<String, u32>>;

/// A random fact and a new count for it.
fn random_fact(rng: &mut fastrand::Rng) -> (String, u32) {
    let user = USERS[rng.usize(..USERS.len())];
    match rng.u8(..3) {
        0 => (format!("u:{user}"), rng.u32(..3)),
        1 => (
            format!("m:{}\n{user}", ROOMS[rng.usize(..ROOMS.len())]),
            rng.u32(..3),
        ),
        _ => (
            format!("c:{}", CHANNELS[rng.usize(..CHANNELS.len())]),
            rng.u32(..2),
        ),
    }
}

/// Writes `node`'s changes as `announcements::add_run` does: the script, then the hash.
async fn write_run(keys: &Keys, connection: &mut Conn, node: &NodeId, run: &[(String, u32)]) {
    let set: Vec<(String, String)> = run
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(field, count)| (field.clone(), count.to_string()))
        .collect();
    let deleted: Vec<String> = run
        .iter()
        .filter(|(_, count)| *count == 0)
        .map(|(field, _)| field.clone())
        .collect();
    let mut pipe = redis::pipe();
    pipe.cmd("MULTI").ignore();
    add_changes(keys, &mut pipe, node, set.iter(), &deleted);
    let state = keys.state(node);
    pipe.hset(&state, "version", "1:1").ignore();
    if !set.is_empty() {
        pipe.hset_multiple(&state, &set).ignore();
    }
    if !deleted.is_empty() {
        pipe.hdel(&state, deleted).ignore();
    }
    pipe.cmd("EXEC").ignore();
    pipe.query_async::<()>(connection).await.unwrap();
}

/// Rewrites `node`'s state to `facts` as `rewrite.rs` does after a reconnect: the difference
/// with what the store holds, here in transactions of two fields.
async fn rewrite(keys: &Keys, connection: &mut Conn, node: &NodeId, facts: &BTreeMap<String, u32>) {
    let wanted: Vec<(String, String)> = facts
        .iter()
        .map(|(field, count)| (field.clone(), count.to_string()))
        .chain([("p:ann".to_owned(), "{\"status\":\"online\"}".to_owned())])
        .collect();
    let mut held: HashMap<String, String> = connection.hgetall(keys.state(node)).await.unwrap();
    held.remove("version");
    let changes = super::super::rewrite::difference(held, wanted);
    let mut pipe = redis::pipe();
    super::super::rewrite::add_chunks(keys, &mut pipe, node, &changes, 2);
    pipe.hset(keys.state(node), "version", "1:2").ignore();
    pipe.query_async::<()>(connection).await.unwrap();
}

/// A Redis of its own, a connection to it, and the keys under the prefix `t:`.
async fn store() -> (RedisServer, Conn, Keys) {
    let redis = RedisServer::start().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let connection = Conn::Single(client.get_connection_manager().await.unwrap());
    (redis, connection, Keys::new("t:", false))
}

/// The counts and the room index the facts make.
fn expected(facts: &Facts) -> (ClusterCounts, BTreeMap<String, BTreeMap<String, String>>) {
    let mut users: HashMap<&str, u32> = HashMap::new();
    let mut members: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut channels = BTreeSet::new();
    let mut index: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut counts = ClusterCounts::default();
    for (node, fields) in facts {
        for (field, &count) in fields {
            if let Some(user) = field.strip_prefix("u:") {
                *users.entry(user).or_default() += count;
                counts.connections += u64::from(count);
            } else if let Some(member) = field.strip_prefix("m:") {
                let (room, user) = member.split_once('\n').unwrap();
                members.entry(room).or_default().insert(user);
                index
                    .entry(room.to_owned())
                    .or_default()
                    .insert(format!("{node}\n{user}"), count.to_string());
            } else if let Some(channel) = field.strip_prefix("c:") {
                channels.insert(channel);
            }
        }
    }
    counts.users = users.len();
    counts.rooms = members.len();
    counts.channels = channels.len();
    let mut top: Vec<(RoomId, usize)> = members
        .iter()
        .map(|(room, users)| (RoomId::from_trusted(*room), users.len()))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.top_rooms = top;
    (counts, index)
}

#[test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server: --features external"
)]
fn random_runs_rewrites_and_drops_keep_the_counts_and_the_index_exact() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (_redis, mut connection, keys) = store().await;
        let scripts = IndexScripts::new();
        let mut rng = fastrand::Rng::with_seed(15);
        let mut facts: Facts = NODES.iter().map(|node| (*node, BTreeMap::new())).collect();
        for step in 0..400 {
            let name = NODES[rng.usize(..NODES.len())];
            let node = NodeId::from_trusted(name);
            let held = facts.get_mut(name).unwrap();
            match rng.u8(..20) {
                0 if step % 2 == 0 => {
                    // Reaped: page by page, then the rest.
                    drop_pages(&scripts, &keys, &mut connection, &node)
                        .await
                        .unwrap();
                    let mut pipe = redis::pipe();
                    add_drop(&keys, &mut pipe, &node);
                    pipe.query_async::<()>(&mut connection).await.unwrap();
                    held.clear();
                }
                0 => {
                    let mut pipe = redis::pipe();
                    pipe.cmd("MULTI").ignore();
                    add_drop(&keys, &mut pipe, &node);
                    pipe.cmd("EXEC").ignore();
                    pipe.query_async::<()>(&mut connection).await.unwrap();
                    held.clear();
                }
                1 => {
                    // The node's facts moved on while its writes were lost: it rewrites.
                    for _ in 0..rng.usize(..6) {
                        let (field, count) = random_fact(&mut rng);
                        if count == 0 {
                            held.remove(&field);
                        } else {
                            held.insert(field, count);
                        }
                    }
                    rewrite(&keys, &mut connection, &node, held).await;
                }
                _ => {
                    // A run's changes, each field at its last value (as `coalesce` makes them).
                    let mut run: BTreeMap<String, u32> = BTreeMap::new();
                    for _ in 0..rng.usize(1..6) {
                        let (field, count) = random_fact(&mut rng);
                        run.insert(field, count);
                    }
                    let run: Vec<(String, u32)> = run.into_iter().collect();
                    write_run(&keys, &mut connection, &node, &run).await;
                    for (field, count) in run {
                        if count == 0 {
                            held.remove(&field);
                        } else {
                            held.insert(field, count);
                        }
                    }
                }
            }
            for (name, held) in &facts {
                let state: BTreeMap<String, String> = connection
                    .hgetall(keys.state(&NodeId::from_trusted(*name)))
                    .await
                    .unwrap();
                let state: BTreeMap<String, u32> = (state.into_iter())
                    .filter(|(field, _)| keys::is_fact(field))
                    .map(|(field, count)| (field, count.parse().unwrap()))
                    .collect();
                assert_eq!(&state, held, "step {step}: the state of {name}");
            }
            let (counts_now, index_now) = expected(&facts);
            let read = counts(&keys, &mut connection, 10).await.unwrap();
            assert_eq!(read, counts_now, "step {step}: {facts:?}");
            for room in ROOMS {
                let held: BTreeMap<String, String> = connection
                    .hgetall(keys.room_index(&RoomId::from_trusted(room)))
                    .await
                    .unwrap();
                let want = index_now.get(room).cloned().unwrap_or_default();
                assert_eq!(held, want, "step {step}: the index of {room}");
            }
        }
        // Every node gone: nothing is left counted.
        for name in NODES {
            let mut pipe = redis::pipe();
            add_drop(&keys, &mut pipe, &NodeId::from_trusted(name));
            pipe.query_async::<()>(&mut connection).await.unwrap();
        }
        let left: Vec<String> = connection.keys("t:*").await.unwrap();
        assert_eq!(left, Vec::<String>::new());
    });
}

#[test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server: --features external"
)]
fn a_large_dead_node_is_dropped_page_by_page_to_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (_redis, mut connection, keys) = store().await;
        let (dead, alive) = (NodeId::from_trusted("dead"), NodeId::from_trusted("alive"));
        // Three pages and more of a hash Redis keeps as a table, not a list.
        let run: Vec<(String, u32)> = (0..1_500)
            .flat_map(|n| {
                [
                    (format!("u:user-{n}"), 1),
                    (format!("m:room-{}\nuser-{n}", n % 10), 1),
                ]
            })
            .collect();
        write_run(&keys, &mut connection, &dead, &run).await;
        write_run(
            &keys,
            &mut connection,
            &alive,
            &[("u:user-0".to_owned(), 2)],
        )
        .await;
        let before = counts(&keys, &mut connection, 1).await.unwrap();
        assert_eq!(
            (before.connections, before.users, before.rooms),
            (1_502, 1_500, 10)
        );

        drop_pages(&IndexScripts::new(), &keys, &mut connection, &dead)
            .await
            .unwrap();
        let state: HashMap<String, String> = connection.hgetall(keys.state(&dead)).await.unwrap();
        assert_eq!(
            state,
            HashMap::new(),
            "every field is gone, the version too"
        );
        let after = counts(&keys, &mut connection, 1).await.unwrap();
        let want = ClusterCounts {
            connections: 2,
            users: 1,
            ..ClusterCounts::default()
        };
        assert_eq!(after, want, "the living node's user alone");
    });
}

#[test]
fn a_load_reads_versions_and_members_and_skips_what_does_not_parse() {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let load = parse_load(
        &strings(&["n1", "7:3", "n2", "garbage"]),
        &strings(&["n1", "alice", "2", "n1", "bob", "x", "n{", "carol", "1"]),
    );
    assert_eq!(
        load.versions,
        vec![(
            NodeId::from_trusted("n1"),
            Version {
                instance: 7,
                seq: 3
            }
        )]
    );
    assert_eq!(
        load.members,
        vec![(NodeId::from_trusted("n1"), UserId::from_trusted("alice"), 2)]
    );
}
