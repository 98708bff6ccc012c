use std::sync::Mutex;

use super::*;
use crate::hub::tests::{drain, hub, subscribe, user};

fn exact(name: &str) -> ChannelSpec {
    ChannelSpec::Exact(ChannelId::from_trusted(name))
}

fn pattern(text: &str) -> ChannelSpec {
    ChannelSpec::parse(text, 128).unwrap()
}

#[test]
fn a_channel_exists_only_while_subscribed() {
    let hub = hub();
    let a = hub.register(user("a")).unwrap();
    assert!(subscribe(&hub, &exact("news"), &a));
    assert!(!subscribe(&hub, &exact("news"), &a), "already subscribed");
    assert_eq!(hub.stats().channels, 1);
    assert!(hub.unsubscribe_conn(&exact("news"), &a));
    assert!(!hub.unsubscribe_conn(&exact("news"), &a));
    assert_eq!(hub.stats().channels, 0);
    assert!(hub.inner.channels.names().is_empty());
}

#[test]
fn exact_and_pattern_subscribers_get_each_publication_once() {
    let hub = hub();
    let both = hub.register(user("both")).unwrap();
    let by_pattern = hub.register(user("pattern")).unwrap();
    let other = hub.register(user("other")).unwrap();
    subscribe(&hub, &exact("room:general"), &both);
    subscribe(&hub, &pattern("room:*"), &both);
    subscribe(&hub, &pattern("*"), &both);
    subscribe(&hub, &pattern("room:*"), &by_pattern);
    subscribe(&hub, &exact("room:random"), &other);
    let delivered = hub.pubsub().publish("room:general", &"hi").unwrap();
    assert_eq!(delivered, 2);
    assert_eq!(drain(&both).0.len(), 1);
    assert_eq!(drain(&by_pattern).0.len(), 1);
    assert!(drain(&other).0.is_empty());
}

#[test]
fn handlers_see_what_connections_see_until_dropped() {
    let hub = hub();
    let seen: Arc<Mutex<Vec<Publication>>> = Arc::default();
    let sink = seen.clone();
    let subscription = hub
        .pubsub()
        .subscribe("user:*", move |p| sink.lock().unwrap().push(p.clone()))
        .unwrap();
    assert_eq!(hub.stats().channels, 1, "a handler keeps the pattern alive");
    hub.pubsub()
        .publish_as("user:123", &serde_json::json!({"n": 1}), Some(&user("bob")))
        .unwrap();
    hub.pubsub().publish("other:1", &1).unwrap();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].channel.as_str(), "user:123");
        assert_eq!(seen[0].user_id.as_ref().map(UserId::as_str), Some("bob"));
        assert_eq!(seen[0].data, serde_json::json!({"n": 1}));
    }
    subscription.unsubscribe();
    assert_eq!(hub.stats().channels, 0);
    hub.pubsub().publish("user:123", &2).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn library_publish_refuses_bad_and_reserved_channels() {
    let hub = hub();
    assert!(matches!(
        hub.pubsub().publish("bad name", &1),
        Err(PublishError::InvalidChannel(_))
    ));
    assert!(matches!(
        hub.pubsub().publish("presence:alice", &1),
        Err(PublishError::Reserved)
    ));
    assert!(hub.pubsub().subscribe("a*b", |_| {}).is_err());
}

#[test]
fn publications_cross_hubs_on_a_bus_with_handlers_on_both_sides() {
    let bus = crate::broker::LocalBus::new();
    let config = crate::config::Config::default().hub;
    let hub_a = Hub::new(
        config.clone(),
        Arc::new(bus.broker()),
        Arc::new(crate::cluster::NoPeers),
        None,
        Box::new(crate::docstore::MemoryDocs::default()),
    );
    let hub_b = Hub::new(
        config,
        Arc::new(bus.broker()),
        Arc::new(crate::cluster::NoPeers),
        None,
        Box::new(crate::docstore::MemoryDocs::default()),
    );
    let on_b = hub_b.register(user("b")).unwrap();
    subscribe(&hub_b, &exact("event:login"), &on_b);
    let seen: Arc<Mutex<Vec<Publication>>> = Arc::default();
    let sink = seen.clone();
    let _handler = hub_b
        .pubsub()
        .subscribe("event:*", move |p| sink.lock().unwrap().push(p.clone()))
        .unwrap();
    hub_a
        .pubsub()
        .publish_as("event:login", &"x", Some(&user("alice")))
        .unwrap();
    assert_eq!(drain(&on_b).0.len(), 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].user_id.as_ref().map(UserId::as_str), Some("alice"));
    assert_eq!(seen[0].data, serde_json::json!("x"));
}
