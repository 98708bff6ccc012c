use super::*;

fn node(name: &str) -> NodeId {
    NodeId::from_trusted(name)
}

fn user(name: &str) -> UserId {
    UserId::from_trusted(name)
}

fn room(name: &str) -> RoomId {
    RoomId::from_trusted(name)
}

fn member(r: &str, u: &str, count: u32) -> Event {
    Event::Member {
        room: room(r),
        user: user(u),
        count,
    }
}

fn connected(u: &str, count: u32) -> Event {
    Event::User {
        user: user(u),
        count,
    }
}

fn presence(u: &str, status: Status) -> Presence {
    Presence {
        user_id: user(u),
        status,
        metadata: None,
        last_seen: 5,
    }
}

#[test]
fn absolute_counts_make_events_idempotent() {
    let mut replica = Replica::default();
    for _ in 0..2 {
        replica.apply(&node("a"), connected("alice", 2));
        replica.apply(&node("a"), member("general", "alice", 2));
    }
    replica.apply(&node("b"), connected("alice", 1));
    assert_eq!(replica.user_connections(&user("alice")), 3);
    assert!(replica.in_room(&room("general"), &user("alice")));
    assert_eq!(replica.room_users(&room("general")), vec![user("alice")]);
    assert_eq!(replica.user_rooms(&user("alice")), vec![room("general")]);
    replica.apply(&node("a"), member("general", "alice", 0));
    replica.apply(&node("a"), member("general", "alice", 0));
    assert!(!replica.in_room(&room("general"), &user("alice")));
    assert!(replica.rooms().next().is_none());
    replica.apply(&node("a"), connected("alice", 0));
    assert_eq!(replica.user_connections(&user("alice")), 1);
}

#[test]
fn a_member_arrives_and_leaves_once_and_presence_always_shows() {
    let mut replica = Replica::default();
    let joined = Change::Joined {
        room: room("r"),
        user: user("u"),
    };
    assert_eq!(
        replica.apply(&node("a"), member("r", "u", 1)),
        vec![joined.clone()]
    );
    assert!(
        replica.apply(&node("a"), member("r", "u", 2)).is_empty(),
        "another connection in the room: no news"
    );
    assert!(
        replica.apply(&node("b"), member("r", "u", 1)).is_empty(),
        "in the room on a second node: no news"
    );
    let mut from_snapshot = replica_with_member_from_snapshot();
    assert!(
        from_snapshot
            .apply(&node("a"), member("r", "u", 1))
            .is_empty(),
        "the snapshot already brought the arrival"
    );
    let changes = replica.apply(&node("a"), Event::Presence(presence("u", Status::Away)));
    assert_eq!(
        changes,
        vec![Change::Presence {
            presence: presence("u", Status::Away),
            rooms: vec![room("r")]
        }]
    );
    replica.apply(&node("b"), member("r", "u", 0));
    assert_eq!(
        replica.apply(&node("a"), member("r", "u", 0)),
        vec![Change::Left {
            room: room("r"),
            user: user("u")
        }],
        "out of the room on its last node"
    );
    replica.apply(&node("a"), connected("u", 1));
    assert_eq!(replica.presence(&user("u")).unwrap().status, Status::Away);
    replica.apply(&node("a"), connected("u", 0));
    assert!(
        replica.presence(&user("u")).is_none(),
        "no connection left anywhere"
    );
}

#[test]
fn a_node_with_nothing_is_known_once_its_snapshot_is_loaded() {
    let mut replica = Replica::default();
    assert!(
        replica
            .replace(&node("idle"), Some(Snapshot::default()))
            .is_empty()
    );
    assert_eq!(replica.nodes().collect::<Vec<_>>(), [&node("idle")]);
    replica.replace(&node("idle"), None);
    assert!(replica.nodes().next().is_none());
}

/// A replica that learned of u in r on node a from a's snapshot.
fn replica_with_member_from_snapshot() -> Replica {
    let mut replica = Replica::default();
    let snapshot = Snapshot {
        members: [((room("r"), user("u")), 1)].into(),
        ..Snapshot::default()
    };
    let changes = replica.replace(&node("a"), Some(snapshot));
    assert_eq!(
        changes,
        vec![Change::Joined {
            room: room("r"),
            user: user("u")
        }]
    );
    replica
}

#[test]
fn a_dead_node_takes_its_users_offline_and_out_of_rooms_unless_present_elsewhere() {
    let mut replica = Replica::default();
    let dead = node("dead");
    replica.apply(&dead, connected("only-there", 1));
    replica.apply(&dead, member("general", "only-there", 1));
    replica.apply(&dead, Event::Presence(presence("only-there", Status::Away)));
    replica.apply(&dead, connected("both", 1));
    replica.apply(&dead, member("general", "both", 1));
    replica.apply(&node("alive"), connected("both", 1));
    replica.apply(&node("alive"), member("general", "both", 1));
    replica.apply(
        &dead,
        Event::Channel {
            channel: "news".into(),
            present: true,
        },
    );

    let changes = replica.apply(&node("alive"), Event::Dead { node: dead.clone() });
    assert_eq!(changes.len(), 2, "{changes:?}");
    match &changes[0] {
        Change::Presence { presence, rooms } => {
            assert_eq!(rooms, &[room("general")], "shown where the user was");
            assert_eq!(presence.user_id, user("only-there"));
            assert_eq!(presence.status, Status::Offline);
            assert_eq!(presence.last_seen, 5, "the last known presence is kept");
        }
        other => panic!("offline first, got {other:?}"),
    }
    assert_eq!(
        changes[1],
        Change::Left {
            room: room("general"),
            user: user("only-there")
        }
    );
    assert!(replica.in_room(&room("general"), &user("both")));
    assert_eq!(replica.user_connections(&user("both")), 1);
    assert!(replica.channels().next().is_none());
    assert!(replica.nodes().all(|n| n != &dead));
}

#[test]
fn reloading_a_snapshot_reports_the_difference() {
    let mut replica = Replica::default();
    let a = node("a");
    replica.apply(&a, connected("u", 1));
    replica.apply(&a, member("old", "u", 1));
    let mut snapshot = Snapshot::default();
    snapshot.users.insert(user("u"), 2);
    snapshot.members.insert((room("new"), user("u")), 1);
    snapshot.channels.insert("c".into());
    let changes = replica.replace(&a, Some(snapshot.clone()));
    assert_eq!(
        changes,
        vec![
            Change::Left {
                room: room("old"),
                user: user("u")
            },
            Change::Joined {
                room: room("new"),
                user: user("u")
            },
        ]
    );
    assert_eq!(replica.user_connections(&user("u")), 2);
    assert!(
        replica.replace(&a, Some(snapshot)).is_empty(),
        "same snapshot, no change"
    );
    assert_eq!(replica.channels().count(), 1);
}
