//! Periodic work over all connections, done by a few sweeps instead of per-connection timers:
//! heartbeat pings and liveness, idle closing, removal of dead connections and empty rooms,
//! rate sampling for `/stats`, token expiry (`token_sweep`, when authentication is on) and,
//! with `--max-memory`, the memory sweep (`hub::memory`), which reads the resident memory.
//!
//! The sweep tasks hold only a weak reference to the hub and end when it is dropped or when the
//! cancellation token fires.

use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::tokens::{TOKEN_SWEEP_PERIOD, TokenReport};
use super::{CloseRequest, ConnHandle, Counters, Hub, HubInner};
use crate::auth::TokenExpiry;
use crate::protocol::{CloseCode, ServerFrame, ServerKind, now_ms};
use crate::ws::frame;

/// A connection still registered this long after its close was requested is considered dead:
/// its task should have ended within the close deadline.
pub(super) const DEAD_AFTER_MS: u64 = 30_000;

const HEARTBEAT_TIMEOUT: CloseRequest = CloseRequest {
    code: CloseCode::Normal,
    reason: std::borrow::Cow::Borrowed("heartbeat timeout"),
    graceful: false,
};

const IDLE_TIMEOUT: CloseRequest = CloseRequest {
    code: CloseCode::Normal,
    reason: std::borrow::Cow::Borrowed("idle timeout"),
    graceful: true,
};

/// How often open documents that changed are saved (their last client's departure saves at
/// once): what a crash can lose is at most this much of the edits that no client resends.
pub(crate) const DOCUMENT_SAVE_PERIOD: Duration = Duration::from_secs(5);

/// What a heartbeat sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct HeartbeatReport {
    pub(crate) pinged: usize,
    pub(crate) timed_out: usize,
}

/// What a cleanup sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CleanupReport {
    pub(crate) idle_closed: usize,
    pub(crate) dead_removed: usize,
    pub(crate) room_members_removed: usize,
    pub(crate) empty_rooms_removed: usize,
    pub(crate) offline_forgotten: usize,
    pub(crate) history_streams_removed: usize,
}

impl Hub {
    /// Spawns the sweeps on `tasks`; they stop when `cancel` fires or the hub is dropped.
    /// With `tokens` (authentication is on), the token sweep runs too, with those settings.
    pub(crate) fn spawn_maintenance(
        &self,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
        tokens: Option<TokenExpiry>,
    ) {
        let config = &self.inner.config;
        let every =
            |period: Duration, sweep: fn(&Hub)| self.spawn_sweep(tasks, cancel, period, sweep);
        every(config.heartbeat.interval, |hub| {
            let report = hub.heartbeat_sweep();
            if report.timed_out > 0 {
                tracing::info!(timed_out = report.timed_out, "heartbeat sweep");
            }
        });
        every(config.cleanup_interval, |hub| {
            let report = hub.cleanup_sweep();
            if report != CleanupReport::default() {
                tracing::info!(
                    idle_closed = report.idle_closed,
                    dead_removed = report.dead_removed,
                    room_members_removed = report.room_members_removed,
                    empty_rooms_removed = report.empty_rooms_removed,
                    offline_forgotten = report.offline_forgotten,
                    history_streams_removed = report.history_streams_removed,
                    "cleanup sweep"
                );
            } else {
                tracing::debug!("cleanup sweep: nothing to do");
            }
        });
        let away_period =
            (config.away_timeout / 10).clamp(Duration::from_millis(50), Duration::from_secs(10));
        every(away_period, |hub| {
            let changed = hub.away_sweep();
            if changed > 0 {
                tracing::debug!(users = changed, "away sweep");
            }
        });
        every(Duration::from_secs(1), |hub| {
            hub.inner.rates.sample(&hub.inner.counters, hub.now_ms());
        });
        every(DOCUMENT_SAVE_PERIOD, |hub| {
            let saved = hub.save_documents();
            if saved > 0 {
                tracing::debug!(documents = saved, "documents saved");
            }
        });
        if self.inner.cluster.store().is_some() && self.inner.history.enabled() {
            every(super::early::SWEEP_EVERY, Hub::answer_overdue);
        }
        #[cfg(target_os = "linux")]
        if config.limits.max_memory.is_some() {
            every(super::memory::MEMORY_SWEEP_PERIOD, |hub| {
                match crate::process::memory::resident_bytes() {
                    Ok(resident) => {
                        let report = hub.memory_sweep(resident);
                        if report.shed > 0 {
                            tracing::info!(
                                shed = report.shed,
                                queued_bytes = report.shed_bytes,
                                resident,
                                "memory sweep: closed the connections with the largest queues"
                            );
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot read the resident memory"),
                }
            });
        }
        if let Some(tokens) = tokens {
            self.spawn_sweep(tasks, cancel, TOKEN_SWEEP_PERIOD, move |hub| {
                let report = hub.token_sweep(&tokens, now_ms());
                if report != TokenReport::default() {
                    tracing::debug!(
                        warned = report.warned,
                        expired = report.expired,
                        "token sweep"
                    );
                }
            });
        }
    }

    /// Spawns a task on `tasks` that runs `sweep` every `period`, holding only a weak
    /// reference to the hub; it ends when `cancel` fires or the hub is dropped.
    fn spawn_sweep(
        &self,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
        period: Duration,
        sweep: impl Fn(&Hub) + Send + 'static,
    ) {
        let weak: Weak<HubInner> = std::sync::Arc::downgrade(&self.inner);
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                sweep(&Hub { inner });
            }
        });
    }

    /// Pings every open connection and closes those silent for longer than the heartbeat
    /// timeout.
    pub(crate) fn heartbeat_sweep(&self) -> HeartbeatReport {
        let heartbeat = self.inner.config.heartbeat;
        let timeout = heartbeat.timeout.as_millis() as u64;
        let now = self.now_ms();
        let ping = frame::ping_frame();
        let app_ping: Option<Bytes> = heartbeat.app_ping.then(|| {
            ServerFrame::new(
                ServerKind::Ping,
                serde_json::json!({ "timestamp": now_ms() }),
            )
            .encode()
        });
        // One MessagePack form for all the sweep's MessagePack clients.
        let app_ping = app_ping.as_ref().map(super::Outgoing::new);
        let mut report = HeartbeatReport::default();
        self.for_each_open(|handle| {
            if now.saturating_sub(handle.last_seen()) >= timeout {
                if handle.close(HEARTBEAT_TIMEOUT, now) {
                    report.timed_out += 1;
                }
                return;
            }
            // Control frames are tiny and bounded by the sweep period, so the byte limit that
            // protects against slow consumers still applies to them without special cases.
            if self.push(handle, &ping) {
                report.pinged += 1;
            }
            // Never compressed: the connection's task knows an app-level ping by its text.
            if let Some(app_ping) = app_ping.as_ref().filter(|_| handle.speaks_json()) {
                self.push(handle, &app_ping.for_wire(handle.wire(), None, 0));
            }
        });
        Counters::add(
            &self.inner.counters.heartbeat_timeouts,
            report.timed_out as u64,
        );
        report
    }

    /// Closes idle connections (no traffic either way for `idle_timeout`, heartbeats aside:
    /// see `ConnHandle::last_active`), removes dead ones and empty rooms.
    pub(crate) fn cleanup_sweep(&self) -> CleanupReport {
        let now = self.now_ms();
        let mut report = CleanupReport::default();
        if let Some(idle) = self.inner.config.idle_timeout {
            let idle = idle.as_millis() as u64;
            self.for_each_open(|handle| {
                if now.saturating_sub(handle.last_active()) >= idle
                    && handle.close(IDLE_TIMEOUT, now)
                {
                    report.idle_closed += 1;
                }
            });
        }
        Counters::add(
            &self.inner.counters.idle_timeouts,
            report.idle_closed as u64,
        );
        let is_dead = |handle: &ConnHandle| {
            handle
                .closing_since()
                .is_some_and(|since| now.saturating_sub(since) >= DEAD_AFTER_MS)
        };
        let mut dead = Vec::new();
        self.inner.registry.for_each_conn(|handle| {
            if is_dead(handle) {
                dead.push(handle.clone());
            }
        });
        for handle in &dead {
            tracing::warn!(conn = %handle.id(), user = %handle.user(), "removing a dead connection");
            self.unregister(handle);
        }
        report.dead_removed = dead.len();
        (report.room_members_removed, report.empty_rooms_removed) = self.purge_rooms(is_dead);
        report.offline_forgotten = self.purge_offline();
        report.history_streams_removed = self.sweep_history();
        report
    }

    pub(super) fn for_each_open(&self, mut visit: impl FnMut(&ConnHandle)) {
        self.inner.registry.for_each_conn(|handle| {
            if handle.closing_since().is_none() {
                visit(handle);
            }
        });
    }
}
