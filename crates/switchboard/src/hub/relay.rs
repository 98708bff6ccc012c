//! Relayed SSE POSTs (DESIGN.md §9, in a cluster): a client's POST may reach another node than
//! the one holding its SSE stream, so sticky sessions are an optimisation, not a requirement.
//! The node holding a stream subscribes to the connection's topic (`Topic::Connection`) while
//! the stream is open; a node that receives a POST for a connection id of another process
//! publishes the POST there, and the holder hands it to the connection layer through the
//! handler set here. The hub carries the bytes only: what they mean (and the session check)
//! belongs to `connection::sse`. A lone node subscribes to nothing and pays nothing.

use std::sync::OnceLock;

use bytes::Bytes;

use super::Hub;
use crate::broker::Topic;
use crate::ids::ConnId;

/// What a relayed POST is handed to on the node that holds its connection.
pub(crate) type RelayHandler = Box<dyn Fn(ConnId, &[u8]) + Send + Sync>;

/// The handler, set once when the instance is built.
#[derive(Default)]
pub(super) struct Relay {
    handler: OnceLock<RelayHandler>,
}

impl Hub {
    /// Sets what relayed POSTs are handed to (once; later calls are ignored).
    pub(crate) fn set_relay_handler(&self, handler: RelayHandler) {
        let _ = self.inner.relay.handler.set(handler);
    }

    /// Whether POSTs for other nodes' connections can be relayed: the node is in a cluster.
    pub(crate) fn relays_across_nodes(&self) -> bool {
        self.inner.cluster.node_count().is_some()
    }

    /// Starts receiving POSTs relayed to `conn`, an SSE connection of this node.
    pub(crate) fn relay_open(&self, conn: ConnId) {
        if self.relays_across_nodes() {
            self.inner
                .cluster
                .broker()
                .subscribe(&Topic::Connection(conn));
        }
    }

    /// Stops receiving POSTs relayed to `conn`.
    pub(crate) fn relay_close(&self, conn: ConnId) {
        if self.relays_across_nodes() {
            self.inner
                .cluster
                .broker()
                .unsubscribe(&Topic::Connection(conn));
        }
    }

    /// Sends `post` to the node holding `conn`, another node's connection. Fire and forget:
    /// when no node holds it (any more), nobody receives it.
    pub(crate) fn relay_to(&self, conn: ConnId, post: Bytes) {
        self.inner
            .cluster
            .publish(self.node_id(), Topic::Connection(conn), post);
    }

    /// A POST another node relayed to `conn`.
    pub(super) fn relay_received(&self, conn: ConnId, post: &[u8]) {
        if let Some(handler) = self.inner.relay.handler.get() {
            handler(conn, post);
        }
    }
}
