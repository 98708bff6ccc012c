//! Pub/sub channels: the subscribers (connections and application handlers) of exact channels
//! and of patterns (`room:*`), and the one delivery path of a publication to them.
//!
//! A channel exists only while it has a subscriber: the last unsubscribe removes its entry, so
//! channels nobody listens to hold no memory. A connection subscribed both to a channel and to a
//! pattern matching it gets each publication once. Exact channels are sharded; patterns are few
//! (clients need a permission for them) and share one lock.
//!
//! This part knows nothing of the broker or the cluster: a channel's first and last local
//! subscriber are told to a [`ChannelObserver`] under the channel's lock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use super::ConnHandle;
use super::pubsub::Publication;
use super::shard::Sharded;
use crate::ids::{ChannelId, ChannelPrefix, ChannelSpec, ConnId};

/// An application handler of publications.
pub(crate) type PublicationHandler = Arc<dyn Fn(&Publication) + Send + Sync>;

/// Told when a channel or pattern gets its first local subscriber or loses its last, under its
/// lock.
pub(super) trait ChannelObserver {
    /// `spec` got its first local subscriber.
    fn channel_occupied(&self, spec: &ChannelSpec);
    /// `spec` lost its last local subscriber.
    fn channel_vacated(&self, spec: &ChannelSpec);
}

/// A subscriber to add.
pub(super) enum Subscriber<'a> {
    Conn(&'a ConnHandle),
    Handler(u64, PublicationHandler),
}

/// A subscriber to remove.
#[derive(Clone, Copy)]
pub(super) enum SubscriberId {
    Conn(ConnId),
    Handler(u64),
}

/// The subscribers of one channel or pattern.
#[derive(Default)]
struct Subscribers {
    conns: HashMap<ConnId, ConnHandle>,
    handlers: Vec<(u64, PublicationHandler)>,
}

impl Subscribers {
    fn is_empty(&self) -> bool {
        self.conns.is_empty() && self.handlers.is_empty()
    }

    fn add(&mut self, subscriber: Subscriber<'_>) -> bool {
        match subscriber {
            Subscriber::Conn(conn) => self.conns.insert(conn.id(), conn.clone()).is_none(),
            Subscriber::Handler(id, handler) => {
                self.handlers.push((id, handler));
                true
            }
        }
    }

    fn remove(&mut self, subscriber: SubscriberId) -> bool {
        match subscriber {
            SubscriberId::Conn(id) => self.conns.remove(&id).is_some(),
            SubscriberId::Handler(id) => {
                let before = self.handlers.len();
                self.handlers.retain(|(h, _)| *h != id);
                before != self.handlers.len()
            }
        }
    }
}

/// The local recipients of one publication.
pub(super) struct Recipients {
    /// Connections that took the frame.
    pub(super) delivered: usize,
    /// Handlers to call, outside every lock.
    pub(super) handlers: Vec<PublicationHandler>,
}

/// The node's channels and patterns.
pub(super) struct Channels {
    exact: Sharded<ChannelId, Subscribers>,
    patterns: RwLock<HashMap<ChannelPrefix, Subscribers>>,
    count: AtomicUsize,
}

impl Channels {
    pub(super) fn new() -> Self {
        Self {
            exact: Sharded::new(),
            patterns: RwLock::new(HashMap::new()),
            count: AtomicUsize::new(0),
        }
    }

    /// Adds a subscriber to `spec`, creating its entry on the first; returns whether it was
    /// not subscribed before.
    pub(super) fn add(
        &self,
        spec: &ChannelSpec,
        subscriber: Subscriber<'_>,
        observer: &impl ChannelObserver,
    ) -> bool {
        let created = || {
            self.count.fetch_add(1, Ordering::Relaxed);
            observer.channel_occupied(spec);
            Subscribers::default()
        };
        match spec {
            ChannelSpec::Exact(channel) => {
                let mut exact = self.exact.write(channel);
                exact
                    .entry(channel.clone())
                    .or_insert_with(created)
                    .add(subscriber)
            }
            ChannelSpec::Prefix(prefix) => {
                let mut patterns = self.patterns.write();
                patterns
                    .entry(prefix.clone())
                    .or_insert_with(created)
                    .add(subscriber)
            }
        }
    }

    /// Removes a subscriber from `spec`, deleting its entry after the last; returns whether it
    /// was subscribed.
    pub(super) fn remove(
        &self,
        spec: &ChannelSpec,
        subscriber: SubscriberId,
        observer: &impl ChannelObserver,
    ) -> bool {
        match spec {
            ChannelSpec::Exact(channel) => {
                let mut exact = self.exact.write(channel);
                self.remove_from(&mut exact, channel, spec, subscriber, observer)
            }
            ChannelSpec::Prefix(prefix) => {
                let mut patterns = self.patterns.write();
                self.remove_from(&mut patterns, prefix, spec, subscriber, observer)
            }
        }
    }

    fn remove_from<K: std::hash::Hash + Eq>(
        &self,
        map: &mut HashMap<K, Subscribers>,
        key: &K,
        spec: &ChannelSpec,
        subscriber: SubscriberId,
        observer: &impl ChannelObserver,
    ) -> bool {
        let Some(entry) = map.get_mut(key) else {
            return false;
        };
        let removed = entry.remove(subscriber);
        if entry.is_empty() {
            map.remove(key);
            self.count.fetch_sub(1, Ordering::Relaxed);
            observer.channel_vacated(spec);
        }
        removed
    }

    /// Offers a publication's frame on `channel` to its subscribers, exact and by pattern, each
    /// connection once, except `except`; collects the handlers to call.
    pub(super) fn deliver(
        &self,
        channel: &ChannelId,
        except: Option<ConnId>,
        mut deliver: impl FnMut(&ConnHandle) -> bool,
    ) -> Recipients {
        let patterns = self.patterns.read();
        let matching: Vec<&Subscribers> = patterns
            .iter()
            .filter(|(prefix, _)| prefix.matches(channel))
            .map(|(_, subscribers)| subscribers)
            .collect();
        let mut delivered = 0;
        let mut handlers = Vec::new();
        // Only needed when a connection could be reached twice.
        let mut seen: HashSet<ConnId> = HashSet::new();
        let mut offer = |id: &ConnId, handle: &ConnHandle, check_seen: bool| {
            if Some(*id) != except && (!check_seen || seen.insert(*id)) && deliver(handle) {
                delivered += 1;
            }
        };
        if let Some(subscribers) = self.exact.read(channel).get(channel) {
            for (id, handle) in &subscribers.conns {
                offer(id, handle, !matching.is_empty());
            }
            handlers.extend(subscribers.handlers.iter().map(|(_, h)| h.clone()));
        }
        for subscribers in matching {
            for (id, handle) in &subscribers.conns {
                offer(id, handle, true);
            }
            handlers.extend(subscribers.handlers.iter().map(|(_, h)| h.clone()));
        }
        Recipients {
            delivered,
            handlers,
        }
    }

    /// Adds the connections subscribed to `channel` (exactly or by pattern) to `into`.
    pub(super) fn collect_subscribers(
        &self,
        channel: &ChannelId,
        into: &mut HashMap<ConnId, ConnHandle>,
    ) {
        if let Some(subscribers) = self.exact.read(channel).get(channel) {
            into.extend(subscribers.conns.iter().map(|(id, h)| (*id, h.clone())));
        }
        for (prefix, subscribers) in self.patterns.read().iter() {
            if prefix.matches(channel) {
                into.extend(subscribers.conns.iter().map(|(id, h)| (*id, h.clone())));
            }
        }
    }

    /// How many connections but `except` subscribe to `channel`, exactly or by pattern (a
    /// connection subscribed both ways counts once).
    pub(super) fn connection_count(&self, channel: &ChannelId, except: Option<ConnId>) -> usize {
        let patterns = self.patterns.read();
        let mut matching = patterns
            .iter()
            .filter(|(prefix, _)| prefix.matches(channel))
            .peekable();
        if matching.peek().is_none() {
            let exact = self.exact.read(channel);
            return exact.get(channel).map_or(0, |subscribers| {
                let excluded = except.is_some_and(|id| subscribers.conns.contains_key(&id));
                subscribers.conns.len() - usize::from(excluded)
            });
        }
        let mut seen: HashSet<ConnId> = matching
            .flat_map(|(_, subscribers)| subscribers.conns.keys().copied())
            .collect();
        if let Some(subscribers) = self.exact.read(channel).get(channel) {
            seen.extend(subscribers.conns.keys().copied());
        }
        seen.len() - except.map_or(0, |id| usize::from(seen.contains(&id)))
    }

    /// Whether `channel` has a local subscriber of its own (patterns aside).
    pub(super) fn contains(&self, channel: &ChannelId) -> bool {
        self.exact.read(channel).contains_key(channel)
    }

    /// The names of every channel and pattern with a local subscriber (patterns end in `*`).
    pub(super) fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.exact
            .for_each(|channel, _| names.push(channel.to_string()));
        names.extend(self.patterns.read().keys().map(ToString::to_string));
        names
    }

    /// Channels and patterns with at least one local subscriber.
    pub(super) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}
