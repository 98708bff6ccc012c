//! Presence: whether a user is `online`, `away` or `offline`, with optional metadata and the
//! time they were last seen. Per user, across all of the user's connections.
//!
//! The rules (DESIGN.md §2, docs/protocol.md "Presence"):
//! - a user with at least one connection is `online`, or `away` once none of their connections
//!   has sent a message for the away timeout; a message makes them `online` again;
//! - a `presence` frame may set `away` or `offline` ("appear offline") explicitly; that choice
//!   sticks until the user sets `online`, which returns to the automatic rule;
//! - a user with no connection is `offline`; closing one of two tabs changes nothing.
//!
//! This module holds the pure state machine; the hub stores one `PresenceState` per user and
//! pushes a `presence` frame whenever `PresenceState::view` changes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::UserId;

/// A user's presence status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Connected and active.
    Online,
    /// Connected but inactive, or set away by the user.
    Away,
    /// Not connected, or set to appear offline.
    Offline,
}

/// A user's presence as clients and the APIs see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    /// The user.
    pub user_id: UserId,
    /// The status.
    pub status: Status,
    /// Metadata the user attached with a `presence` frame (such as `{"device":"mobile"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Arc<RawValue>>,
    /// Milliseconds since the epoch when the user was last active (or disconnected).
    pub last_seen: u64,
}

/// Metadata compared by its JSON text.
#[derive(Debug, Clone)]
struct Metadata(Arc<RawValue>);

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl PartialEq for Presence {
    fn eq(&self, other: &Self) -> bool {
        self.user_id == other.user_id
            && self.status == other.status
            && self.last_seen == other.last_seen
            && self.metadata.as_ref().map(|m| m.get()) == other.metadata.as_ref().map(|m| m.get())
    }
}

impl Presence {
    /// Whether `other` shows watchers what `self` shows: the same status and metadata (when the
    /// user was last seen aside). A presence that shows the same is not news.
    pub fn shows_the_same(&self, other: &Presence) -> bool {
        self.status == other.status
            && self.metadata.as_ref().map(|m| m.get()) == other.metadata.as_ref().map(|m| m.get())
    }
}

/// The mutable presence of one connected user (last activity is tracked by the hub).
#[derive(Debug)]
pub(crate) struct PresenceState {
    /// Set by a `presence` frame with `away` or `offline`; cleared by `online`.
    chosen: Option<Status>,
    /// Set by the away sweep, cleared by activity.
    idle: bool,
    /// What this node last showed of the user is another node's report, which differed from
    /// this state's own view ([`PresenceState::reported_elsewhere`]); cleared whenever this
    /// state's own view is shown again.
    elsewhere: bool,
    metadata: Option<Metadata>,
}

impl PresenceState {
    /// A user who just connected: online.
    pub(crate) fn connected() -> Self {
        Self {
            chosen: None,
            idle: false,
            elsewhere: false,
            metadata: None,
        }
    }

    /// The status others see.
    pub(crate) fn status(&self) -> Status {
        match (self.chosen, self.idle) {
            (Some(chosen), _) => chosen,
            (None, true) => Status::Away,
            (None, false) => Status::Online,
        }
    }

    /// The presence of `user`, last active at `last_seen` (epoch ms), as others see it.
    pub(crate) fn view(&self, user: &UserId, last_seen: u64) -> Presence {
        Presence {
            user_id: user.clone(),
            status: self.status(),
            metadata: self.metadata.as_ref().map(|m| m.0.clone()),
            last_seen,
        }
    }

    /// The user sent a message. Returns whether the visible presence changed.
    pub(crate) fn active(&mut self) -> bool {
        let changed = std::mem::replace(&mut self.idle, false) && self.chosen.is_none();
        self.shown_if(changed)
    }

    /// None of the user's connections has been active for the away timeout. Returns whether
    /// the visible presence changed.
    pub(crate) fn went_idle(&mut self) -> bool {
        let changed = !std::mem::replace(&mut self.idle, true) && self.chosen.is_none();
        self.shown_if(changed)
    }

    /// A `presence` frame: `online` returns to automatic status, `away`/`offline` stick;
    /// metadata replaces the previous metadata when given. Returns whether the visible presence
    /// changed, or is to be shown again: after another node's report, the user's own choice
    /// here is news even when it leaves this node's view as it was.
    pub(crate) fn set(&mut self, status: Status, metadata: Option<Arc<RawValue>>) -> bool {
        let before = (self.status(), self.metadata.clone());
        self.chosen = (status != Status::Online).then_some(status);
        self.idle = false;
        if let Some(metadata) = metadata {
            self.metadata = Some(Metadata(metadata));
        }
        let changed = before != (self.status(), self.metadata.clone()) || self.elsewhere;
        self.shown_if(changed)
    }

    /// Another node reported `other` as the user's presence, the cluster's latest (which
    /// differs from its previous report). Returns whether this node shows it to its clients:
    /// not when it shows what they last saw of the user here, this state's own view, unless
    /// they saw another node's report since. A user with tabs on two nodes that both go away
    /// is shown `away` once on each node.
    pub(crate) fn reported_elsewhere(&mut self, other: &Presence) -> bool {
        let same = self.status() == other.status
            && self.metadata.as_ref().map(|m| m.0.get())
                == other.metadata.as_ref().map(|m| m.get());
        let show = !same || self.elsewhere;
        self.elsewhere = !same;
        show
    }

    /// A user's first connection on this node while they have others elsewhere: the state
    /// takes over the presence the cluster last reported, which is what this node's clients
    /// were shown. An `offline` while connected was chosen ("appear offline") and sticks, as
    /// chosen statuses do; an `away` is taken for idleness (on one node, a new tab of an idle
    /// user finds them away until a message); the metadata is kept. Returns whether the user
    /// is now idle.
    pub(crate) fn adopt(&mut self, reported: &Presence) -> bool {
        self.chosen = (reported.status == Status::Offline).then_some(Status::Offline);
        self.idle = reported.status == Status::Away;
        self.metadata = reported.metadata.clone().map(Metadata);
        self.elsewhere = false;
        self.idle
    }

    /// Whether the user is away for idleness (not by choice): another node's idleness then
    /// agrees with this one.
    pub(crate) fn idle_away(&self) -> bool {
        self.chosen.is_none() && self.idle
    }

    /// Whether what this node last showed of the user was another node's report.
    pub(crate) fn shows_elsewhere(&self) -> bool {
        self.elsewhere
    }

    /// Whether what this node last showed of the user was another node's report; it is this
    /// state's own view from now on.
    pub(crate) fn take_elsewhere(&mut self) -> bool {
        std::mem::take(&mut self.elsewhere)
    }

    /// Passes `changed` through; when the hub is about to show this state's own view, what it
    /// shows no longer comes from elsewhere.
    fn shown_if(&mut self, changed: bool) -> bool {
        if changed {
            self.elsewhere = false;
        }
        changed
    }

    /// The user's last connection closed at `now_epoch_ms`: their final, offline presence.
    pub(crate) fn disconnected(&self, user: &UserId, now_epoch_ms: u64) -> Presence {
        Presence {
            status: Status::Offline,
            ..self.view(user, now_epoch_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(text: &str) -> Option<Arc<RawValue>> {
        Some(Arc::from(RawValue::from_string(text.to_owned()).unwrap()))
    }

    #[test]
    fn connected_users_are_online_until_idle_and_back_on_activity() {
        let mut state = PresenceState::connected();
        assert_eq!(state.status(), Status::Online);
        assert!(state.went_idle());
        assert!(!state.went_idle(), "already away");
        assert_eq!(state.status(), Status::Away);
        assert!(state.active());
        assert!(!state.active(), "already online");
        assert_eq!(state.view(&UserId::from_trusted("u"), 6).last_seen, 6);
    }

    #[test]
    fn a_chosen_status_sticks_through_activity_and_idleness() {
        let mut state = PresenceState::connected();
        assert!(state.set(Status::Offline, None));
        assert_eq!(state.status(), Status::Offline);
        assert!(!state.active());
        assert!(!state.went_idle());
        assert_eq!(state.status(), Status::Offline);
        assert!(state.set(Status::Online, None));
        assert_eq!(state.status(), Status::Online);
    }

    #[test]
    fn metadata_changes_are_changes_and_repeats_are_not() {
        let mut state = PresenceState::connected();
        assert!(state.set(Status::Online, meta(r#"{"device":"web"}"#)));
        assert!(!state.set(Status::Online, meta(r#"{"device":"web"}"#)));
        assert!(
            !state.set(Status::Online, None),
            "no metadata keeps the old"
        );
        assert!(state.set(Status::Online, meta(r#"{"device":"ios"}"#)));
        let presence = state.disconnected(&UserId::from_trusted("u"), 9);
        assert_eq!(presence.status, Status::Offline);
        assert_eq!(presence.metadata.unwrap().get(), r#"{"device":"ios"}"#);
    }

    fn report(status: Status, metadata: Option<Arc<RawValue>>) -> Presence {
        Presence {
            user_id: UserId::from_trusted("u"),
            status,
            metadata,
            last_seen: 1,
        }
    }

    #[test]
    fn another_node_s_report_is_shown_when_it_differs_from_what_was_last_shown() {
        let mut state = PresenceState::connected();
        assert!(state.went_idle());
        assert!(
            !state.reported_elsewhere(&report(Status::Away, None)),
            "away here already"
        );
        assert!(
            state.reported_elsewhere(&report(Status::Away, meta("{}"))),
            "other metadata"
        );
        assert!(
            state.reported_elsewhere(&report(Status::Away, None)),
            "what was last shown is the other node's: this one's own view is news again"
        );
        assert!(!state.reported_elsewhere(&report(Status::Away, None)));
        assert!(state.reported_elsewhere(&report(Status::Online, None)));
        assert!(state.active(), "back online here");
        assert!(
            !state.reported_elsewhere(&report(Status::Online, None)),
            "shown by this node's own change"
        );
    }

    #[test]
    fn a_state_adopts_what_another_node_reported() {
        let user = UserId::from_trusted("u");
        let mut state = PresenceState::connected();
        assert!(!state.adopt(&report(Status::Offline, meta("{}"))));
        assert_eq!(state.view(&user, 0).status, Status::Offline);
        assert!(!state.active(), "a chosen offline sticks");
        assert!(state.adopt(&report(Status::Away, None)), "idle");
        assert!(state.view(&user, 0).metadata.is_none());
        assert!(state.active(), "a message ends the idleness");
        assert!(!state.reported_elsewhere(&report(Status::Online, None)));
    }

    #[test]
    fn the_user_s_own_choice_is_shown_again_after_another_node_s_report() {
        let mut state = PresenceState::connected();
        assert!(state.reported_elsewhere(&report(Status::Away, None)));
        assert!(
            state.set(Status::Online, None),
            "online here, after away elsewhere"
        );
        assert!(!state.set(Status::Online, None), "a repeat is not news");
    }
}
