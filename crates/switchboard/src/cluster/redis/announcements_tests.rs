use super::{Announcement, FieldChanges, coalesce};
use crate::cluster::{Event, Version};
use crate::ids::{NodeId, RoomId, UserId};
use crate::presence::{Presence, Status};

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
fn presence_is_set_until_the_user_goes_offline() {
    let online = coalesce(&[
        presence("alice", Status::Offline),
        presence("alice", Status::Away),
    ]);
    assert_eq!(online.delete, Vec::<String>::new());
    assert_eq!(online.set.len(), 1);
    assert_eq!(online.set[0].0, "p:alice");
    assert!(online.set[0].1.contains("\"away\""), "{}", online.set[0].1);

    let offline = coalesce(&[
        presence("alice", Status::Online),
        presence("alice", Status::Offline),
    ]);
    assert_eq!(
        offline,
        FieldChanges {
            set: Vec::new(),
            delete: fields(&["p:alice"]),
        }
    );
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
