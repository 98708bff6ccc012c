//! What the cluster tests that watch a user arrive on one node and leave it share: the clients
//! on another node who see it.

// Each test binary that declares `mod onlookers` uses part of it.
#![allow(dead_code)]

use serde_json::json;
use switchboard_testkit::{Client, TestServer};

/// On a node that sees kim come and go elsewhere: `alice`, a member of `general`, and
/// `watcher`, who watches kim's presence.
pub(crate) struct Onlookers {
    pub(crate) alice: Client,
    pub(crate) watcher: Client,
}

impl Onlookers {
    pub(crate) async fn on(node: &TestServer) -> Self {
        let alice = node.member("alice", "general").await;
        let mut watcher = node.connect("watcher").await;
        watcher
            .send_type("subscribe", json!({"channel": "presence:kim"}))
            .await;
        watcher.expect("subscribed").await;
        assert_eq!(
            watcher.expect("presence").await["payload"]["status"],
            "offline"
        );
        node.settled().await;
        Self { alice, watcher }
    }

    /// Kim, on another node, came online and joined `general`.
    pub(crate) async fn saw_kim_arrive(&mut self) {
        assert_eq!(
            self.watcher.expect("presence").await["payload"]["status"],
            "online"
        );
        assert_eq!(self.alice.expect("user_joined").await["userId"], "kim");
    }

    /// Kim left the cluster: exactly one `offline` for each of them, then one `user_left` for
    /// alice, and nothing else (the barrier crosses Redis from `origin`, after the stopped
    /// node's last word).
    pub(crate) async fn saw_kim_leave_once(&mut self, here: &TestServer, origin: &TestServer) {
        let offline = self.alice.expect("presence").await;
        assert_eq!(
            (&offline["payload"]["userId"], &offline["payload"]["status"]),
            (&json!("kim"), &json!("offline"))
        );
        assert_eq!(self.alice.expect("user_left").await["userId"], "kim");
        let offline = self.watcher.expect("presence").await;
        assert_eq!(
            (&offline["payload"]["userId"], &offline["payload"]["status"]),
            (&json!("kim"), &json!("offline"))
        );
        self.alice.expect_nothing_pending_across(here, origin).await;
        self.watcher
            .expect_nothing_pending_across(here, origin)
            .await;
    }
}
