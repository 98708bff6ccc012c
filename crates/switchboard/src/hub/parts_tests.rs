//! The hub's parts on their own: what each returns and what it tells its observer, in order,
//! without a broker or a cluster behind them.

use std::sync::Arc;

use parking_lot::Mutex;

use super::Wire;
use super::channels::{ChannelObserver, Channels, Subscriber, SubscriberId};
use super::registry::{Refusal, Registry, UserObserver};
use super::rooms::{Joined, MemberList, RoomObserver, Rooms};
use super::tests::user;
use crate::config::Config;
use crate::ids::{ChannelSpec, RoomId, UserId};

/// Records what the parts tell their observer, as short lines.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock())
    }

    fn note(&self, line: String) {
        self.0.lock().push(line);
    }
}

impl UserObserver for Recorder {
    fn user_arrived(&self, user: &UserId) {
        self.note(format!("arrived {user}"));
    }
    fn user_connections(&self, user: &UserId, count: u32) {
        self.note(format!("user {user} {count}"));
    }
    fn user_departed(&self, user: &UserId) {
        self.note(format!("departed {user}"));
    }
}

impl RoomObserver for Recorder {
    fn room_occupied(&self, room: &RoomId) {
        self.note(format!("occupied {room}"));
    }
    fn member_connections(&self, room: &RoomId, user: &UserId, count: u32) {
        self.note(format!("member {room} {user} {count}"));
    }
    fn room_vacated(&self, room: &RoomId) {
        self.note(format!("vacated {room}"));
    }
}

impl ChannelObserver for Recorder {
    fn channel_occupied(&self, spec: &ChannelSpec) {
        self.note(format!("occupied {spec}"));
    }
    fn channel_vacated(&self, spec: &ChannelSpec) {
        self.note(format!("vacated {spec}"));
    }
}

fn registry(max_connections: usize, max_per_user: usize) -> Registry {
    let mut limits = Config::default().hub.limits;
    limits.max_connections = max_connections;
    limits.max_connections_per_user = max_per_user;
    Registry::new(&limits)
}

#[test]
fn the_registry_tells_first_counts_and_last_in_order() {
    let registry = registry(10, 3);
    let seen = Recorder::default();
    let a1 = registry.admit(user("a"), Wire::Json, 0, 0, &seen).unwrap();
    assert!(a1.first_here);
    let a2 = registry.admit(user("a"), Wire::Json, 0, 0, &seen).unwrap();
    assert!(!a2.first_here);
    assert_eq!(seen.take(), ["arrived a", "user a 1", "user a 2"]);
    assert!(triomphe::Arc::ptr_eq(
        a1.handle.user_state(),
        a2.handle.user_state()
    ));
    let removed = registry.remove(&a1.handle, &seen).unwrap();
    assert!(!removed.last_here);
    assert!(registry.remove(&a1.handle, &seen).is_none(), "idempotent");
    let removed = registry.remove(&a2.handle, &seen).unwrap();
    assert!(removed.last_here);
    assert_eq!(seen.take(), ["user a 1", "user a 0", "departed a"]);
    assert_eq!((registry.connection_count(), registry.user_count()), (0, 0));
}

#[test]
fn a_registry_dropped_with_connections_in_it_frees_them() {
    let registry = registry(10, 3);
    let admitted = registry.admit(user("a"), Wire::Json, 0, 0, &Recorder::default());
    let state = admitted.unwrap().handle.user_state().clone();
    assert!(
        triomphe::Arc::count(&state) > 1,
        "the registry holds the user's state"
    );
    drop(registry);
    assert!(
        triomphe::Arc::is_unique(&state),
        "the registry and the user's connections let go of the state"
    );
}

#[test]
fn admission_counts_connections_elsewhere_and_refusals_leave_no_trace() {
    let registry = registry(2, 2);
    let seen = Recorder::default();
    assert_eq!(
        registry.admit(user("a"), Wire::Json, 2, 0, &seen).err(),
        Some(Refusal::UserFull),
        "two connections on other nodes fill the user's quota"
    );
    assert!(seen.take().is_empty());
    assert_eq!((registry.connection_count(), registry.user_count()), (0, 0));
    let _a = registry.admit(user("a"), Wire::Json, 1, 0, &seen).unwrap();
    let _b = registry.admit(user("b"), Wire::Json, 0, 0, &seen).unwrap();
    assert_eq!(
        registry.admit(user("c"), Wire::Json, 0, 0, &seen).err(),
        Some(Refusal::ServerFull)
    );
    assert_eq!((registry.connection_count(), registry.user_count()), (2, 2));
}

#[test]
fn rooms_report_users_not_connections_and_tell_first_and_last() {
    let registry = registry(10, 3);
    let quiet = Recorder::default();
    let a1 = registry
        .admit(user("a"), Wire::Json, 0, 0, &quiet)
        .unwrap()
        .handle;
    let a2 = registry
        .admit(user("a"), Wire::Json, 0, 0, &quiet)
        .unwrap()
        .handle;
    let b = registry
        .admit(user("b"), Wire::Json, 0, 0, &quiet)
        .unwrap()
        .handle;
    let rooms = Rooms::new();
    let seen = Recorder::default();
    let general = RoomId::from_trusted("general");
    assert_eq!(
        rooms.join(&general, &a1, &seen),
        Joined::Joined {
            user_connections: 1
        }
    );
    assert_eq!(rooms.join(&general, &a1, &seen), Joined::Already);
    rooms.join(&general, &a2, &seen);
    rooms.join(&general, &b, &seen);
    assert_eq!(
        seen.take(),
        [
            "occupied general",
            "member general a 1",
            "member general a 2",
            "member general b 1"
        ]
    );
    assert_eq!(rooms.leave(&general, &a1, &seen), Some(1));
    assert_eq!(rooms.leave(&general, &a1, &seen), None, "not a member");
    assert_eq!(rooms.leave(&general, &a2, &seen), Some(0));
    assert_eq!(rooms.count(), 1);
    assert_eq!(rooms.leave(&general, &b, &seen), Some(0));
    assert_eq!(
        seen.take(),
        [
            "member general a 1",
            "member general a 0",
            "member general b 0",
            "vacated general"
        ]
    );
    assert_eq!(rooms.count(), 0);
}

#[test]
fn member_lists_merge_other_nodes_once_and_count_past_the_cap() {
    let registry = registry(10, 3);
    let quiet = Recorder::default();
    let rooms = Rooms::new();
    let general = RoomId::from_trusted("general");
    for name in ["a", "b", "c"] {
        let handle = registry
            .admit(user(name), Wire::Json, 0, 0, &quiet)
            .unwrap()
            .handle;
        rooms.join(&general, &handle, &quiet);
    }
    let others = vec![user("c"), user("d"), user("e")];
    let MemberList { users, count } = rooms.member_list(&general, others.clone(), 4);
    assert_eq!(count, 5, "c is on both nodes and counts once");
    assert_eq!(users.len(), 4);
    let all = rooms.member_list(&general, others, usize::MAX);
    let mut names: Vec<&str> = all.users.iter().map(UserId::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    let elsewhere = rooms.member_list(&RoomId::from_trusted("empty"), vec![user("z")], 10);
    assert_eq!((elsewhere.users, elsewhere.count), (vec![user("z")], 1));
}

#[test]
fn a_purge_removes_dead_members_and_empty_rooms_and_tells_the_observer() {
    let registry = registry(10, 3);
    let quiet = Recorder::default();
    let alive = registry
        .admit(user("alive"), Wire::Json, 0, 0, &quiet)
        .unwrap()
        .handle;
    let dead = registry
        .admit(user("dead"), Wire::Json, 0, 0, &quiet)
        .unwrap()
        .handle;
    let rooms = Rooms::new();
    let (shared, lonely) = (
        RoomId::from_trusted("shared"),
        RoomId::from_trusted("lonely"),
    );
    rooms.join(&shared, &alive, &quiet);
    rooms.join(&shared, &dead, &quiet);
    rooms.join(&lonely, &dead, &quiet);
    let seen = Recorder::default();
    let purged = rooms.purge(|handle| handle.id() == dead.id(), &seen);
    assert_eq!((purged.members.len(), purged.rooms), (2, 1));
    let mut told = seen.take();
    told.sort();
    assert_eq!(
        told,
        [
            "member lonely dead 0",
            "member shared dead 0",
            "vacated lonely"
        ]
    );
    assert!(rooms.has_user(&shared, alive.user()));
    assert!(!rooms.has_user(&shared, dead.user()));
}

#[test]
fn channels_tell_first_and_last_subscriber_whatever_its_kind() {
    let registry = registry(10, 3);
    let quiet = Recorder::default();
    let a = registry
        .admit(user("a"), Wire::Json, 0, 0, &quiet)
        .unwrap()
        .handle;
    let channels = Channels::new();
    let seen = Recorder::default();
    let news = ChannelSpec::parse("news", 128).unwrap();
    assert!(channels.add(&news, Subscriber::Conn(&a), &seen));
    assert!(!channels.add(&news, Subscriber::Conn(&a), &seen));
    assert!(channels.add(&news, Subscriber::Handler(7, Arc::new(|_| {})), &seen));
    assert!(channels.remove(&news, SubscriberId::Conn(a.id()), &seen));
    assert_eq!(channels.count(), 1, "the handler keeps it");
    assert!(channels.remove(&news, SubscriberId::Handler(7), &seen));
    assert!(!channels.remove(&news, SubscriberId::Handler(7), &seen));
    assert_eq!(seen.take(), ["occupied news", "vacated news"]);
    assert!(channels.names().is_empty());
}
