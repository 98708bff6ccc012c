//! [`Switchboard`]: the embeddable whole. Build one with [`Switchboard::builder`], mount
//! [`Switchboard::router`] into an axum application, and drive it through [`Switchboard::hub`].
//! The standalone server ([`crate::server`]) is a thin shell around it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use serde_json::Value;

use crate::auth::AuthConfig;
use crate::broker::{Broker, LocalBroker};
use crate::cluster::{ClusterError, Membership, NoPeers, RedisCluster, RedisConfig};
use crate::config::{ApiConfig, HubConfig, ProxyConfig, WebhookConfig};
use crate::connection::{Endpoint, SseLinks};
use crate::docstore::{DocStore, MemoryDocs};
use crate::handlers::{Extensions, MessageContext, Reject};
use crate::http::{self, ApiAccess, AppState, Routes};
use crate::hub::{ConnInfo, EventHook, Hub, HubEvent};
use crate::proxy::Proxy;
use crate::store::StreamStore;
use crate::webhooks::Webhooks;

/// The least a shutdown waits for Redis to take the node's departure, even when the
/// connections used the whole deadline: without it the others keep the node's users online
/// until its liveness expires.
pub const LEAVE_AT_LEAST: Duration = Duration::from_secs(1);

/// A Switchboard instance: the hub, its background sweeps and its connection tasks.
///
/// Dropping it stops the sweeps; call [`Switchboard::shutdown`] first to close connections
/// gracefully.
pub struct Switchboard {
    hub: Hub,
    /// The hub again, with the application's handlers: what every connection shares.
    endpoint: Arc<Endpoint>,
    api: ApiConfig,
    auth: AuthConfig,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// The Redis cluster's tasks (publisher, subscriber, liveness, reads), apart from `tasks`
    /// so that they outlive the connections: a shutdown leaves the cluster after the
    /// connections' departures were sent. `cancel` is a child of `cluster_cancel`.
    cluster_tasks: TaskTracker,
    cluster_cancel: CancellationToken,
    redis: Option<Arc<RedisCluster>>,
    /// Kept alive here: the hub's hook holds the webhooks weakly.
    webhooks: Option<Arc<Webhooks>>,
    /// Whether `/yjs` serves documents: on a lone node, and in a Redis cluster (whose store
    /// shares them); not with a broker of the application's that shares no documents.
    serves_documents: bool,
}

/// Builds a [`Switchboard`].
pub struct Builder {
    config: HubConfig,
    api: ApiConfig,
    auth: AuthConfig,
    broker: Option<Arc<dyn Broker>>,
    membership: Option<Arc<dyn Membership>>,
    store: Option<Arc<dyn StreamStore>>,
    documents: Option<Box<dyn DocStore>>,
    redis: Option<Arc<RedisCluster>>,
    extensions: Extensions,
    events: Vec<EventHook>,
    webhooks: Option<WebhookConfig>,
    proxy: Option<ProxyConfig>,
}

impl Builder {
    /// Settings of the server HTTP API under `/api` (default: every request refused, until a
    /// key is configured or the API is declared open with [`ApiConfig::insecure`]).
    pub fn api(mut self, api: ApiConfig) -> Self {
        self.api = api;
        self
    }

    /// Authentication (JWT on connect, permissions from claims), the origin allowlist and
    /// the admin key (default: authentication off, every origin, `/stats` open).
    pub fn auth(mut self, auth: AuthConfig) -> Self {
        self.auth = auth;
        self
    }

    /// Handles client messages of type `kind` (any type the protocol does not define) with
    /// `handler`, which may reply, send to rooms, broadcast, or refuse with an error code.
    /// Handlers run on the connection's task and must not block.
    pub fn on_message(
        mut self,
        kind: impl Into<String>,
        handler: impl Fn(&MessageContext<'_>, &Value) -> Result<(), Reject> + Send + Sync + 'static,
    ) -> Self {
        self.extensions
            .messages
            .insert(kind.into(), Arc::new(handler));
        self
    }

    /// Calls `hook` when a connection has been admitted, before its `connect` frame is sent.
    pub fn on_connect(mut self, hook: impl Fn(&ConnInfo) + Send + Sync + 'static) -> Self {
        self.extensions.on_connect.push(Arc::new(hook));
        self
    }

    /// Calls `hook` when a connection has closed and left its rooms.
    pub fn on_disconnect(mut self, hook: impl Fn(&ConnInfo) + Send + Sync + 'static) -> Self {
        self.extensions.on_disconnect.push(Arc::new(hook));
        self
    }

    /// Calls `hook` with every lifecycle event of this node: rooms and channels occupied and
    /// vacated, members added and removed, presence changes ([`HubEvent`]). Hooks run under
    /// the lock of the room or channel the event is about: they must be quick (queue the
    /// event) and must not call into the hub.
    pub fn on_event(mut self, hook: impl Fn(&HubEvent) + Send + Sync + 'static) -> Self {
        self.events.push(Arc::new(hook));
        self
    }

    /// Sends the lifecycle events, and client messages of the types listed, to the backend's
    /// webhook endpoints ([`crate::webhooks`]).
    pub fn webhooks(mut self, config: WebhookConfig) -> Self {
        self.webhooks = Some(config);
        self
    }

    /// Asks the application's backend about connects, joins, subscribes and custom message
    /// types (the proxies `config` sets; docs/proxy.md).
    pub fn proxy(mut self, config: ProxyConfig) -> Self {
        self.proxy = Some(config);
        self
    }

    /// Uses `broker` to reach other nodes (default: none, a standalone node). Membership stays
    /// node-local; use [`Builder::redis`] for a full cluster.
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Keeps Yjs documents that no client has open in `store` (default: in memory).
    pub fn documents(mut self, store: Box<dyn DocStore>) -> Self {
        self.documents = Some(store);
        self
    }

    /// Joins the cluster that shares the Redis at `config.url`: publications, presence and
    /// membership become cluster-wide. Nothing connects until [`Builder::build`]; an
    /// unreachable Redis is retried with backoff while the node serves local traffic.
    /// Redis is also the store of streams (offsets and history are shared by every node) and
    /// of Yjs documents (any node serves any document).
    pub fn redis(mut self, config: &RedisConfig) -> Result<Self, ClusterError> {
        let node = self.config.node_id.clone();
        let cluster = Arc::new(RedisCluster::new(config, node, self.config.history)?);
        if self.config.history.size > 0 {
            self.store = Some(cluster.clone());
        }
        self.documents = Some(Box::new((*cluster).clone()));
        self.broker = Some(cluster.clone());
        self.membership = Some(cluster.clone());
        self.redis = Some(cluster);
        Ok(self)
    }

    /// Builds the instance and starts its sweeps. Must be called inside a tokio runtime.
    pub fn build(self) -> Switchboard {
        let serves_documents = self.broker.is_none() || self.redis.is_some();
        let broker = self
            .broker
            .unwrap_or_else(|| Arc::new(LocalBroker::standalone()));
        let membership = self.membership.unwrap_or_else(|| Arc::new(NoPeers));
        let documents = self
            .documents
            .unwrap_or_else(|| Box::new(MemoryDocs::default()));
        let hub = Hub::new(self.config, broker, membership, self.store, documents);
        let tasks = TaskTracker::new();
        let cluster_tasks = TaskTracker::new();
        let cluster_cancel = CancellationToken::new();
        let cancel = cluster_cancel.child_token();
        let tokens = self.auth.jwt.is_some().then_some(self.auth.expiry);
        hub.spawn_maintenance(&tasks, &cancel, tokens);
        let mut events = self.events;
        let mut extensions = self.extensions;
        let webhooks = self.webhooks.map(|config| {
            let holders = self
                .redis
                .clone()
                .map(|redis| redis as Arc<dyn crate::cluster::Holders>);
            let webhooks = Webhooks::new(config, hub.clone(), holders);
            // The senders outlive the connections, as the cluster's tasks do, so that the
            // departures of a shutdown are sent.
            webhooks.spawn(&cluster_tasks, &cluster_cancel);
            events.push(webhooks.hook());
            for (kind, handler) in webhooks.client_types() {
                let handler = move |context: &MessageContext<'_>, payload: &Value| {
                    handler(context, payload);
                    Ok(())
                };
                extensions.messages.insert(kind, Arc::new(handler));
            }
            webhooks
        });
        hub.set_event_hooks(events);
        if let Some(redis) = &self.redis {
            redis.spawn(&cluster_tasks, &cluster_cancel);
        }
        match (&self.api.key, self.api.insecure) {
            (Some(_), _) => {}
            (None, true) => tracing::warn!(
                "the server API (/api) is open (api_insecure): anyone who can reach it can use it"
            ),
            (None, false) => tracing::info!(
                "the server API (/api) refuses every request: set --api-key to use it"
            ),
        }
        match &self.auth.jwt {
            Some(jwt) => tracing::info!(algorithm = jwt.algorithm(), "authentication on (JWT)"),
            None => tracing::info!("authentication off: clients choose their userId"),
        }
        let endpoint = Arc::new(Endpoint {
            hub: hub.clone(),
            extensions,
            jwt: self.auth.jwt.clone(),
            expiry: self.auth.expiry,
            proxy: self
                .proxy
                .map(|config| Arc::new(Proxy::new(config, hub.clone()))),
            sse: SseLinks::default(),
        });
        // POSTs relayed from other nodes reach this node's SSE connections; weak, as the hub
        // is inside the endpoint.
        let relay_to = Arc::downgrade(&endpoint);
        let relay_tasks = tasks.clone();
        hub.set_relay_handler(Box::new(move |conn, post| {
            let Some(endpoint) = relay_to.upgrade() else {
                return;
            };
            if let Some(handling) = endpoint.sse.relayed(&endpoint.hub, conn, post) {
                relay_tasks.spawn(handling);
            }
        }));
        Switchboard {
            hub,
            endpoint,
            api: self.api,
            auth: self.auth,
            tasks,
            cancel,
            cluster_tasks,
            cluster_cancel,
            redis: self.redis,
            serves_documents,
            webhooks,
        }
    }
}

impl Switchboard {
    /// Starts building an instance with `config`.
    pub fn builder(config: HubConfig) -> Builder {
        Builder {
            config,
            api: ApiConfig::default(),
            auth: AuthConfig::default(),
            broker: None,
            membership: None,
            store: None,
            documents: None,
            redis: None,
            extensions: Extensions::default(),
            events: Vec::new(),
            webhooks: None,
            proxy: None,
        }
    }

    /// The hub: send to rooms, users and everyone; query connections and rooms.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The WebSocket endpoint (`/`, `/ws`), Yjs documents (`/yjs/{document}`) and the HTTP
    /// routes (`/health`, `/ready`, the pages, and the admin routes of
    /// [`Switchboard::admin_router`]), ready to be served or merged into an application's
    /// router.
    pub fn router(&self) -> Router {
        http::router(self.state(), Routes::All)
    }

    /// [`Switchboard::router`] without the admin routes, for a public listener when
    /// [`Switchboard::admin_router`] is served on another (404 for them here).
    pub fn public_router(&self) -> Router {
        http::router(self.state(), Routes::Public)
    }

    /// The admin routes only: `/stats`, `/metrics`, `/dashboard` and the server API under
    /// `/api`, for an internal listener.
    pub fn admin_router(&self) -> Router {
        http::router(self.state(), Routes::Admin)
    }

    /// What the handlers share (the standalone server's accept path answers WebSocket
    /// upgrades with it directly).
    pub(crate) fn state(&self) -> AppState {
        AppState {
            hub: self.hub.clone(),
            endpoint: self.endpoint.clone(),
            tasks: self.tasks.clone(),
            api: ApiAccess::from_config(&self.api),
            auth: self.auth.clone(),
            shutdown: self.cancel.clone(),
            serves_documents: self.serves_documents,
        }
    }

    /// Closes every connection with 1001 and waits up to `timeout` for them to finish.
    /// Returns whether they all finished in time.
    ///
    /// In a Redis cluster the node then leaves the cluster (see [`RedisCluster::leave`]): the
    /// other nodes drop its users and memberships at once, announcing `offline` and
    /// `user_left` to their clients, instead of waiting for its liveness to expire. That
    /// waits for Redis until the deadline, or [`LEAVE_AT_LEAST`] past it when the
    /// connections used it all; an unreachable Redis only costs that wait.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let asked = self.hub.shutdown();
        tracing::info!(connections = asked, "closing connections");
        self.cancel.cancel();
        self.tasks.close();
        let finished = tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_ok();
        // Each document was saved when its last client left; these are the documents of
        // connections that did not finish in time.
        self.hub.save_documents();
        if let Some(redis) = &self.redis {
            let within = || {
                deadline
                    .saturating_duration_since(tokio::time::Instant::now())
                    .max(LEAVE_AT_LEAST)
            };
            if let Some(webhooks) = &self.webhooks {
                webhooks.depart(within()).await;
            }
            if redis.leave(within()).await {
                tracing::info!("left the cluster");
            } else {
                tracing::warn!(
                    "could not tell the cluster this node left: the others will reap it when its liveness expires"
                );
            }
        }
        // The webhook senders try once more to send what the departures queued.
        self.cluster_cancel.cancel();
        self.cluster_tasks.close();
        let rest = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(LEAVE_AT_LEAST);
        let _ = tokio::time::timeout(rest, self.cluster_tasks.wait()).await;
        finished
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
        // Cancels `cancel` too, its child.
        self.cluster_cancel.cancel();
    }
}
