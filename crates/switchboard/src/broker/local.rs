//! The in-process broker. A node on its own uses [`LocalBroker::standalone`], whose methods
//! return at once: single-node delivery pays nothing for the cluster path. Several hubs in one
//! process (tests, or an application embedding more than one) can share a [`LocalBus`], which
//! routes publications between them exactly as a networked broker would.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{Mutex, RwLock};

use super::{Broker, BrokerSink, BrokerStatus, Envelope, Topic};

/// An in-process bus connecting the hubs of one process.
#[derive(Clone, Default)]
pub struct LocalBus {
    members: Arc<RwLock<Vec<Arc<Member>>>>,
}

/// One node's seat on a bus.
struct Member {
    sink: OnceLock<Weak<dyn BrokerSink>>,
    topics: Mutex<HashSet<Topic>>,
}

/// The in-process [`Broker`].
pub struct LocalBroker {
    seat: Option<(LocalBus, Arc<Member>)>,
}

impl LocalBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// A broker for one more node on this bus.
    pub fn broker(&self) -> LocalBroker {
        let member = Arc::new(Member {
            sink: OnceLock::new(),
            topics: Mutex::new(HashSet::new()),
        });
        self.members.write().push(member.clone());
        LocalBroker {
            seat: Some((self.clone(), member)),
        }
    }
}

impl LocalBroker {
    /// A broker for a node that has no peers.
    pub fn standalone() -> Self {
        Self { seat: None }
    }
}

impl Broker for LocalBroker {
    fn dropped(&self) -> u64 {
        // Delivery to the peers is a function call: nothing is ever queued or dropped.
        0
    }

    fn start(&self, sink: Weak<dyn BrokerSink>) {
        if let Some((_, member)) = &self.seat {
            // The hub calls this once; a second call keeps the first sink.
            let _ = member.sink.set(sink);
        }
    }

    fn publish(&self, envelope: Envelope) {
        let Some((bus, me)) = &self.seat else {
            return;
        };
        // Collect the sinks first so no bus lock is held while a peer hub delivers.
        let sinks: Vec<Arc<dyn BrokerSink>> = bus
            .members
            .read()
            .iter()
            .filter(|m| {
                !Arc::ptr_eq(m, me) && m.topics.lock().iter().any(|t| t.covers(&envelope.topic))
            })
            .filter_map(|m| m.sink.get().and_then(Weak::upgrade))
            .collect();
        for sink in sinks {
            sink.deliver(&envelope);
        }
    }

    fn subscribe(&self, topic: &Topic) {
        if let Some((_, member)) = &self.seat {
            member.topics.lock().insert(topic.clone());
        }
    }

    fn unsubscribe(&self, topic: &Topic) {
        if let Some((_, member)) = &self.seat {
            member.topics.lock().remove(topic);
        }
    }

    fn status(&self) -> BrokerStatus {
        BrokerStatus::Connected
    }

    fn settled(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "local"
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        if let Some((bus, me)) = &self.seat {
            bus.members.write().retain(|m| !Arc::ptr_eq(m, me));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::conformance;

    #[test]
    fn local_bus_conforms() {
        let bus = LocalBus::new();
        conformance::run(&|| (crate::ids::NodeId::random(), Arc::new(bus.broker())));
    }
}
