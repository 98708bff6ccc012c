use super::{Announcement, Closing, FieldChanges, RUN_BYTES, Run, size_bound};
use crate::cluster::{Event, Version};
use crate::ids::{NodeId, RoomId, UserId};
use crate::presence::{Presence, Status};
use serde_json::value::RawValue;

fn user(name: &str, count: u32) -> Event {
    Event::User {
        user: UserId::from_trusted(name),
        count,
    }
}

fn member(room: &str, name: &str, count: u32) -> Event {
    Event::Member {
        room: RoomId::from_trusted(room),
        user: UserId::from_trusted(name),
        count,
    }
}

fn channel(name: &str, present: bool) -> Event {
    Event::Channel {
        channel: name.to_owned(),
        present,
    }
}

fn presence(name: &str, status: Status) -> Event {
    Event::Presence(Presence {
        user_id: UserId::from_trusted(name),
        status,
        metadata: None,
        last_seen: 7,
    })
}

fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(field, value)| ((*field).to_owned(), (*value).to_owned()))
        .collect()
}

/// Coalesces one run on its own.
fn coalesce(events: &[Event]) -> FieldChanges {
    super::coalesce(events, &mut Closing::default())
}

fn fields(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

#[test]
fn each_event_changes_its_own_field() {
    let changes = coalesce(&[
        user("alice", 1),
        member("general", "alice", 1),
        channel("news", true),
        channel("sports", false),
        member("general", "bob", 0),
    ]);
    assert_eq!(
        changes,
        FieldChanges {
            set: set(&[("u:alice", "1"), ("m:general\nalice", "1"), ("c:news", "1")]),
            delete: fields(&["c:sports", "m:general\nbob"]),
        }
    );
}

#[test]
fn a_field_set_then_deleted_ends_deleted() {
    let changes = coalesce(&[
        user("alice", 1),
        member("general", "alice", 1),
        member("general", "alice", 0),
        user("alice", 0),
    ]);
    assert_eq!(
        changes,
        FieldChanges {
            set: Vec::new(),
            delete: fields(&["u:alice", "m:general\nalice"]),
        }
    );
}

#[test]
fn a_field_deleted_then_set_ends_set_to_its_last_value() {
    let changes = coalesce(&[
        user("alice", 0),
        channel("news", false),
        user("alice", 1),
        channel("news", true),
        user("alice", 2),
    ]);
    assert_eq!(
        changes,
        FieldChanges {
            set: set(&[("u:alice", "2"), ("c:news", "1")]),
            delete: Vec::new(),
        }
    );
}

#[test]
fn presence_is_set_even_offline_by_choice_and_removed_when_the_user_leaves() {
    let online = coalesce(&[
        presence("alice", Status::Offline),
        presence("alice", Status::Away),
    ]);
    assert_eq!(online.delete, Vec::<String>::new());
    assert_eq!(online.set.len(), 1);
    assert_eq!(online.set[0].0, "p:alice");
    assert!(online.set[0].1.contains("\"away\""), "{}", online.set[0].1);

    // "Appear offline" while connected: kept, so a node that loads the hash shows it.
    let chosen = coalesce(&[
        user("alice", 1),
        presence("alice", Status::Online),
        presence("alice", Status::Offline),
    ]);
    assert_eq!(chosen.delete, Vec::<String>::new());
    assert_eq!(chosen.set[1].0, "p:alice");
    assert!(
        chosen.set[1].1.contains("\"offline\""),
        "{}",
        chosen.set[1].1
    );

    // The offline of the last connection closing removes it, in the same run or the next.
    let closed = coalesce(&[user("alice", 0), presence("alice", Status::Offline)]);
    assert_eq!(
        closed,
        FieldChanges {
            set: Vec::new(),
            delete: fields(&["u:alice", "p:alice"]),
        }
    );
    let mut closing = Closing::default();
    let first = super::coalesce(&[user("bob", 2), user("bob", 0)], &mut closing);
    assert_eq!(first.delete, fields(&["u:bob"]));
    let next = super::coalesce(&[presence("bob", Status::Offline)], &mut closing);
    assert_eq!(next.delete, fields(&["p:bob"]));
    // Once: bob's next offline, connected again, is chosen.
    let again = super::coalesce(
        &[user("bob", 1), presence("bob", Status::Offline)],
        &mut closing,
    );
    assert_eq!(again.set.len(), 2);
}

#[test]
fn reloads_and_deaths_change_no_field() {
    let changes = coalesce(&[
        Event::Reload,
        Event::Dead {
            node: NodeId::from_trusted("b"),
        },
    ]);
    assert_eq!(changes, FieldChanges::default());
}

fn encode(events: Vec<Event>, version: Option<Version>) -> Vec<u8> {
    serde_json::to_vec(&Announcement {
        origin: NodeId::from_trusted("a"),
        events,
        version,
    })
    .unwrap()
}

#[test]
fn each_event_of_an_announcement_gets_its_own_version_in_order() {
    let last = Version {
        instance: 9,
        seq: 12,
    };
    let payload = encode(
        vec![user("alice", 1), user("bob", 1), user("alice", 0)],
        Some(last),
    );
    let announcement = Announcement::decode(&payload).unwrap();
    assert_eq!(announcement.origin, NodeId::from_trusted("a"));
    let seqs: Vec<(Event, Option<u64>)> = announcement
        .versioned()
        .map(|(event, version)| {
            assert!(version.is_none_or(|version| version.instance == 9));
            (event, version.map(|version| version.seq))
        })
        .collect();
    assert_eq!(
        seqs,
        vec![
            (user("alice", 1), Some(10)),
            (user("bob", 1), Some(11)),
            (user("alice", 0), Some(12)),
        ]
    );
}

#[test]
fn an_unversioned_announcement_stays_unversioned() {
    let dead = Event::Dead {
        node: NodeId::from_trusted("b"),
    };
    let announcement = Announcement::decode(&encode(vec![dead.clone()], None)).unwrap();
    let events: Vec<_> = announcement.versioned().collect();
    assert_eq!(events, vec![(dead, None)]);
}

#[test]
fn announcements_whose_versions_do_not_add_up_are_refused() {
    let too_early = Version {
        instance: 1,
        seq: 1,
    };
    let payload = encode(vec![user("alice", 1), user("bob", 1)], Some(too_early));
    assert!(Announcement::decode(&payload).is_none());
    let empty = encode(Vec::new(), Some(too_early));
    assert!(Announcement::decode(&empty).is_none());
    assert!(Announcement::decode(b"{\"origin\":\"a\",\"event\":\"reload\"}").is_none());
    assert!(Announcement::decode(b"not json").is_none());
}

fn presence_with_metadata(name: &str, bytes: usize) -> Event {
    let metadata = format!("{{\"note\":\"{}\"}}", "x".repeat(bytes));
    Event::Presence(Presence {
        user_id: UserId::from_trusted(name),
        status: Status::Away,
        metadata: Some(RawValue::from_string(metadata).unwrap().into()),
        last_seen: u64::MAX,
    })
}

#[test]
fn the_size_bound_holds_for_every_kind_of_event() {
    let escaped = "\u{1}\"\\\u{7f}é";
    let events = [
        user(escaped, u32::MAX),
        member(escaped, escaped, u32::MAX),
        channel(escaped, true),
        presence(escaped, Status::Offline),
        presence_with_metadata(escaped, 1000),
        Event::Reload,
        Event::Dead {
            node: NodeId::from_trusted(escaped),
        },
    ];
    for event in events {
        let json = serde_json::to_vec(&event).unwrap();
        assert!(
            json.len() <= size_bound(&event),
            "{event:?}: {} bytes",
            json.len()
        );
    }
}

#[test]
fn a_run_ends_before_its_publication_passes_the_bound() {
    let mut run = Run::default();
    let mut runs = Vec::new();
    for n in 0..40 {
        runs.extend(run.push(presence_with_metadata(&format!("u{n}"), 64 * 1024)));
    }
    runs.push(run.take());
    assert!(runs.len() > 1, "40 x 64 KiB is more than one run");
    let mut names = Vec::new();
    for events in runs {
        let json = encode(events.clone(), None);
        assert!(json.len() <= RUN_BYTES, "a run of {} bytes", json.len());
        names.extend(events.into_iter().map(|event| match event {
            Event::Presence(presence) => presence.user_id.to_string(),
            other => panic!("{other:?}"),
        }));
    }
    let expected: Vec<String> = (0..40).map(|n| format!("u{n}")).collect();
    assert_eq!(names, expected, "every event, once, in order");
    assert!(run.take().is_empty());
}

#[test]
fn an_event_larger_than_the_bound_is_a_run_of_its_own() {
    let mut run = Run::default();
    assert!(run.push(user("a", 1)).is_none());
    let full = run.push(presence_with_metadata("big", RUN_BYTES));
    assert_eq!(full, Some(vec![user("a", 1)]));
    assert_eq!(run.push(user("b", 1)).map(|events| events.len()), Some(1));
    assert_eq!(run.take(), vec![user("b", 1)]);
}
