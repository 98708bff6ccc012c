//! [`Switchboard`]: the embeddable whole. Build one with [`Switchboard::builder`], mount
//! [`Switchboard::router`] into an axum application, and drive it through [`Switchboard::hub`].
//! The standalone server ([`crate::server`]) is a thin shell around it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, LocalBroker};
use crate::config::HubConfig;
use crate::http::{self, AppState};
use crate::hub::Hub;

/// A Switchboard instance: the hub, its background sweeps and its connection tasks.
///
/// Dropping it stops the sweeps; call [`Switchboard::shutdown`] first to close connections
/// gracefully.
pub struct Switchboard {
    hub: Hub,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

/// Builds a [`Switchboard`].
pub struct Builder {
    config: HubConfig,
    broker: Option<Arc<dyn Broker>>,
}

impl Builder {
    /// Uses `broker` to reach other nodes (default: none, a standalone node).
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Builds the instance and starts its sweeps. Must be called inside a tokio runtime.
    pub fn build(self) -> Switchboard {
        let broker = self
            .broker
            .unwrap_or_else(|| Arc::new(LocalBroker::standalone()));
        let hub = Hub::new(self.config, broker);
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        hub.spawn_maintenance(&tasks, &cancel);
        Switchboard { hub, tasks, cancel }
    }
}

impl Switchboard {
    /// Starts building an instance with `config`.
    pub fn builder(config: HubConfig) -> Builder {
        Builder {
            config,
            broker: None,
        }
    }

    /// The hub: send to rooms, users and everyone; query connections and rooms.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The WebSocket endpoint (`/`, `/ws`) and the HTTP routes (`/stats`, `/health`, `/ready`),
    /// ready to be served or merged into an application's router.
    pub fn router(&self) -> Router {
        http::router(AppState {
            hub: self.hub.clone(),
            tasks: self.tasks.clone(),
        })
    }

    /// Closes every connection with 1001 and waits up to `timeout` for them to finish.
    /// Returns whether they all finished in time.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        let asked = self.hub.shutdown();
        tracing::info!(connections = asked, "closing connections");
        self.cancel.cancel();
        self.tasks.close();
        tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok()
    }

    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }
}

impl Drop for Switchboard {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
