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
        replica.apply(&node("a"), connected("alice", 2), None);
        replica.apply(&node("a"), member("general", "alice", 2), None);
    }
    replica.apply(&node("b"), connected("alice", 1), None);
    assert_eq!(replica.user_connections(&user("alice")), 3);
    assert!(replica.in_room(&room("general"), &user("alice")));
    assert_eq!(replica.room_users(&room("general")), vec![user("alice")]);
    assert_eq!(replica.user_rooms(&user("alice")), vec![room("general")]);
    replica.apply(&node("a"), member("general", "alice", 0), None);
    replica.apply(&node("a"), member("general", "alice", 0), None);
    assert!(!replica.in_room(&room("general"), &user("alice")));
    assert!(replica.rooms().next().is_none());
    replica.apply(&node("a"), connected("alice", 0), None);
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
        replica.apply(&node("a"), member("r", "u", 1), None),
        vec![joined.clone()]
    );
    assert!(
        replica
            .apply(&node("a"), member("r", "u", 2), None)
            .is_empty(),
        "another connection in the room: no news"
    );
    assert!(
        replica
            .apply(&node("b"), member("r", "u", 1), None)
            .is_empty(),
        "in the room on a second node: no news"
    );
    let mut from_snapshot = replica_with_member_from_snapshot();
    assert!(
        from_snapshot
            .apply(&node("a"), member("r", "u", 1), None)
            .is_empty(),
        "the snapshot already brought the arrival"
    );
    let changes = replica.apply(
        &node("a"),
        Event::Presence(presence("u", Status::Away)),
        None,
    );
    assert_eq!(
        changes,
        vec![Change::Presence {
            presence: presence("u", Status::Away),
            rooms: vec![room("r")],
            idle: false,
        }]
    );
    replica.apply(&node("b"), member("r", "u", 0), None);
    assert_eq!(
        replica.apply(&node("a"), member("r", "u", 0), None),
        vec![Change::Left {
            room: room("r"),
            user: user("u")
        }],
        "out of the room on its last node"
    );
    replica.apply(&node("a"), connected("u", 1), None);
    assert_eq!(replica.presence(&user("u")).unwrap().status, Status::Away);
    replica.apply(&node("a"), connected("u", 0), None);
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
    replica.apply(&dead, connected("only-there", 1), None);
    replica.apply(&dead, member("general", "only-there", 1), None);
    replica.apply(
        &dead,
        Event::Presence(presence("only-there", Status::Away)),
        None,
    );
    replica.apply(&dead, connected("both", 1), None);
    replica.apply(&dead, member("general", "both", 1), None);
    replica.apply(&node("alive"), connected("both", 1), None);
    replica.apply(&node("alive"), member("general", "both", 1), None);

    let changes = replica.apply(&node("alive"), Event::Dead { node: dead.clone() }, None);
    assert_eq!(changes.len(), 2, "{changes:?}");
    match &changes[0] {
        Change::Presence {
            presence, rooms, ..
        } => {
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
    assert!(replica.nodes().all(|n| n != &dead));
}

#[test]
fn reloading_a_snapshot_reports_the_difference() {
    let mut replica = Replica::default();
    let a = node("a");
    replica.apply(&a, connected("u", 1), None);
    replica.apply(&a, member("old", "u", 1), None);
    let mut snapshot = Snapshot::default();
    snapshot.users.insert(user("u"), 2);
    snapshot.members.insert((room("new"), user("u")), 1);
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
}

fn version(instance: u64, seq: u64) -> Option<Version> {
    Some(Version { instance, seq })
}

/// A's state after: kim connected (1), online (2), joined general (3).
fn kim_in_general(seq: u64) -> Snapshot {
    Snapshot {
        version: version(7, seq),
        users: [(user("kim"), 1)].into(),
        members: [((room("general"), user("kim")), 1)].into(),
        presence: [(user("kim"), presence("kim", Status::Online))].into(),
        ..Snapshot::default()
    }
}

#[test]
fn events_a_loaded_snapshot_holds_are_not_applied_again() {
    let mut replica = Replica::default();
    let changes = replica.replace(&node("a"), Some(kim_in_general(3)));
    assert_eq!(
        changes,
        vec![
            Change::Presence {
                presence: presence("kim", Status::Online),
                rooms: vec![],
                idle: false,
            },
            Change::Joined {
                room: room("general"),
                user: user("kim")
            }
        ],
        "the arrival, as the events would have shown it"
    );
    // The events the snapshot holds arrive after it: nothing more to show.
    for (seq, event) in [
        (1, connected("kim", 1)),
        (2, Event::Presence(presence("kim", Status::Online))),
        (3, member("general", "kim", 1)),
    ] {
        assert!(
            replica.apply(&node("a"), event, version(7, seq)).is_empty(),
            "event {seq}"
        );
    }
    // The next one counts.
    let away = Event::Presence(presence("kim", Status::Away));
    assert_eq!(replica.apply(&node("a"), away, version(7, 4)).len(), 1);
}

/// A node that reconnects to Redis rewrites its whole state at a version taken then, while
/// the events of what happened before (still queued) carry later versions: the snapshot holds
/// more than its version says, and the events that follow it bring nothing new.
#[test]
fn a_snapshot_ahead_of_its_version_shows_the_arrival_once() {
    let mut replica = Replica::default();
    let shown = replica.replace(&node("a"), Some(kim_in_general(1)));
    assert_eq!(shown.len(), 2, "online and joined: {shown:?}");
    for (seq, event) in [
        (2, connected("kim", 1)),
        (3, Event::Presence(presence("kim", Status::Online))),
        (4, member("general", "kim", 1)),
    ] {
        let changes = replica.apply(&node("a"), event, version(7, seq));
        assert!(changes.is_empty(), "event {seq} again: {changes:?}");
    }
    let away = Event::Presence(presence("kim", Status::Away));
    assert_eq!(replica.apply(&node("a"), away, version(7, 5)).len(), 1);
}

#[test]
fn a_presence_already_shown_from_another_node_is_not_shown_again() {
    let mut replica = Replica::default();
    let online = || Event::Presence(presence("kim", Status::Online));
    replica.apply(&node("a"), connected("kim", 1), None);
    assert_eq!(replica.apply(&node("a"), online(), None).len(), 1);
    replica.apply(&node("b"), connected("kim", 1), None);
    assert!(
        replica.apply(&node("b"), online(), None).is_empty(),
        "both nodes saw the user arrive first"
    );
    assert!(
        replica
            .replace(
                &node("c"),
                Some(Snapshot {
                    users: [(user("kim"), 1)].into(),
                    presence: [(user("kim"), presence("kim", Status::Online))].into(),
                    ..Snapshot::default()
                })
            )
            .is_empty(),
        "nor from a snapshot"
    );
    let metadata = serde_json::value::RawValue::from_string(r#"{"typing":true}"#.into())
        .map(std::sync::Arc::from)
        .ok();
    let typing = Presence {
        metadata,
        ..presence("kim", Status::Online)
    };
    assert_eq!(
        replica
            .apply(&node("b"), Event::Presence(typing), None)
            .len(),
        1,
        "new metadata is news"
    );
}

#[test]
fn a_snapshot_older_than_the_events_applied_changes_nothing() {
    let mut replica = Replica::default();
    let online = Event::Presence(presence("kim", Status::Online));
    replica.apply(&node("a"), connected("kim", 1), version(7, 1));
    let shown = replica.apply(&node("a"), online, version(7, 2));
    assert_eq!(
        shown,
        vec![Change::Presence {
            presence: presence("kim", Status::Online),
            rooms: vec![],
            idle: false,
        }],
        "online before the join: no room to tell"
    );
    replica.apply(&node("a"), member("general", "kim", 1), version(7, 3));
    let read_before_the_join = Snapshot {
        members: HashMap::new(),
        ..kim_in_general(2)
    };
    assert!(
        replica
            .replace(&node("a"), Some(read_before_the_join))
            .is_empty()
    );
    assert!(replica.in_room(&room("general"), &user("kim")));
}

#[test]
fn a_restarted_node_s_first_event_drops_what_its_old_process_held() {
    let mut replica = Replica::default();
    replica.replace(&node("a"), Some(kim_in_general(3)));
    // A new process under the same id: kim is gone with the old one.
    let changes = replica.apply(&node("a"), connected("lee", 1), version(8, 1));
    assert!(
        changes.contains(&Change::Left {
            room: room("general"),
            user: user("kim")
        }),
        "{changes:?}"
    );
    assert_eq!(replica.user_connections(&user("kim")), 0);
    assert_eq!(replica.user_connections(&user("lee")), 1);
}

#[test]
fn a_member_on_nodes_past_the_membership_bits_arrives_and_leaves_once() {
    let mut replica = Replica::default();
    let nodes: Vec<NodeId> = (0..70).map(|n| node(&format!("n{n}"))).collect();
    let mut changes = Vec::new();
    for n in &nodes {
        changes.extend(replica.apply(n, member("r", "u", 1), None));
    }
    assert_eq!(
        changes,
        vec![Change::Joined {
            room: room("r"),
            user: user("u")
        }]
    );
    // Out of the room everywhere but on one node past the bits, then there too.
    for n in &nodes[..69] {
        assert!(replica.apply(n, member("r", "u", 0), None).is_empty());
    }
    assert!(replica.in_room(&room("r"), &user("u")));
    assert_eq!(
        replica.apply(
            &nodes[0],
            Event::Dead {
                node: nodes[69].clone()
            },
            None
        ),
        vec![Change::Left {
            room: room("r"),
            user: user("u")
        }]
    );
    assert!(replica.rooms().next().is_none());
    assert!(replica.user_rooms(&user("u")).is_empty());
}

#[test]
fn a_user_on_several_nodes_has_each_node_s_count() {
    let mut replica = Replica::default();
    for (n, count) in [("a", 1), ("b", 2), ("c", 3)] {
        replica.apply(&node(n), connected("u", count), None);
    }
    assert_eq!(replica.user_connections(&user("u")), 6);
    replica.apply(&node("b"), connected("u", 0), None);
    assert_eq!(replica.user_connections(&user("u")), 4);
    replica.apply(&node("a"), connected("u", 5), None);
    assert_eq!(replica.connections(), 8);
    replica.replace(&node("c"), None);
    assert_eq!(replica.user_connections(&user("u")), 5);
    replica.apply(&node("b"), connected("u", 1), None);
    assert_eq!(replica.user_connections(&user("u")), 6);
    assert_eq!(replica.users().len(), 1);
}

#[test]
fn presence_metadata_is_kept_until_the_user_has_no_connection_left() {
    let mut replica = Replica::default();
    let metadata = serde_json::value::RawValue::from_string(r#"{"device":"mobile"}"#.into())
        .map(std::sync::Arc::from)
        .ok();
    let away = Presence {
        metadata: metadata.clone(),
        ..presence("u", Status::Away)
    };
    replica.apply(&node("a"), connected("u", 1), None);
    replica.apply(&node("a"), Event::Presence(away.clone()), None);
    assert_eq!(replica.presence(&user("u")), Some(away.clone()));
    assert_eq!(replica.users(), vec![away.clone()]);
    let changes = replica.replace(&node("a"), None);
    match &changes[..] {
        [Change::Presence { presence, .. }] => {
            assert_eq!(presence.status, Status::Offline);
            assert_eq!(
                presence.metadata.as_ref().map(|m| m.get()),
                Some(r#"{"device":"mobile"}"#)
            );
        }
        other => panic!("offline expected, got {other:?}"),
    }
    assert!(replica.presence(&user("u")).is_none());
}

#[test]
fn the_others_stay_whole_when_a_dead_node_s_memory_is_given_back() {
    let mut replica = Replica::default();
    for i in 0..1000 {
        let name = format!("a{i}");
        replica.apply(&node("a"), connected(&name, 1), None);
        replica.apply(&node("a"), member("big", &name, 1), None);
    }
    for i in 0..10 {
        let name = format!("b{i}");
        replica.apply(&node("b"), connected(&name, 1), None);
        replica.apply(&node("b"), member("big", &name, 1), None);
        replica.apply(&node("b"), member(&format!("own{i}"), &name, 1), None);
    }
    let changes = replica.replace(&node("a"), None);
    assert_eq!(
        changes.len(),
        2000,
        "offline and left for each of a's users"
    );
    let mut users = replica.room_users(&room("big"));
    users.sort();
    let mut expected: Vec<UserId> = (0..10).map(|i| user(&format!("b{i}"))).collect();
    expected.sort();
    assert_eq!(users, expected);
    assert!(replica.in_room(&room("own3"), &user("b3")));
    assert!(!replica.in_room(&room("own3"), &user("b4")));
    assert_eq!(replica.user_rooms(&user("b3")).len(), 2);
    assert_eq!(replica.connections(), 10);
    // The table keeps working after the renumbering.
    assert_eq!(
        replica.apply(&node("b"), member("own3", "b4", 1), None),
        vec![Change::Joined {
            room: room("own3"),
            user: user("b4")
        }]
    );
    replica.apply(&node("c"), connected("b4", 2), None);
    assert_eq!(replica.user_connections(&user("b4")), 3);
}

#[test]
fn an_offline_from_a_node_whose_last_tab_closed_shows_only_once_no_node_has_the_user() {
    let mut replica = Replica::default();
    replica.apply(&node("a"), connected("kim", 1), None);
    replica.apply(&node("b"), connected("kim", 1), None);
    // A's tab closes: A reports it, although B still has one.
    replica.apply(&node("a"), connected("kim", 0), None);
    let offline = Event::Presence(presence("kim", Status::Offline));
    assert!(
        replica.apply(&node("a"), offline.clone(), None).is_empty(),
        "still connected on b"
    );
    // Chosen while connected ("appear offline"): shown.
    assert_eq!(replica.apply(&node("b"), offline.clone(), None).len(), 1);
    replica.apply(&node("b"), connected("kim", 0), None);
    let changes = replica.apply(&node("b"), offline, None);
    assert!(
        matches!(&changes[..], [Change::Presence { presence, .. }] if presence.status == Status::Offline),
        "{changes:?}"
    );
    assert_eq!(replica.user_connections(&user("kim")), 0);
}

#[test]
fn an_idle_away_is_marked_and_a_report_is_news_against_what_this_node_showed() {
    let mut replica = Replica::default();
    replica.apply(&node("a"), connected("kim", 1), None);
    let online = presence("kim", Status::Online);
    assert_eq!(
        replica
            .apply(&node("a"), Event::Presence(online.clone()), None)
            .len(),
        1
    );
    let changes = replica.apply(&node("a"), Event::Idle(presence("kim", Status::Away)), None);
    assert!(
        matches!(&changes[..], [Change::Presence { idle: true, .. }]),
        "{changes:?}"
    );
    // What this node showed of its own tab decides: a's `online` is news after an `away`.
    replica.shown_here(&online);
    assert!(
        replica
            .apply(&node("a"), Event::Presence(online.clone()), None)
            .is_empty()
    );
    replica.shown_here(&presence("kim", Status::Away));
    assert_eq!(
        replica
            .apply(&node("a"), Event::Presence(online), None)
            .len(),
        1
    );
    // Not for a user no other node connects.
    replica.shown_here(&presence("solo", Status::Away));
    assert!(replica.presence(&user("solo")).is_none());
}
