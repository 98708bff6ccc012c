//! Announcements: the wire form of the cluster event channel, and how a run of this node's
//! membership changes goes to Redis as one transaction. It does not decide what a run is
//! (the publisher, `tasks.rs`, does: the announcements queued one after another with nothing
//! else between them), nor what an event means to the replica (`replica.rs`).
//!
//! One run, one transaction: `MULTI`, one `HSET` of every field the run sets and of the
//! version field, one `HDEL` of every field it deletes, one `PUBLISH` of all its events in
//! order, `EXEC`. Each field takes its last value in the run, so a field set then deleted ends
//! deleted and the reverse ends set, as if the events had been written one by one. A run of
//! one event costs no more than one announcement did before batching (five commands; four
//! when it sets its field, which shares the version's `HSET`); a run of hundreds (a burst of
//! connections) costs the same five at most (issue 15). What the store derives from the facts
//! the run changes (`indexes.rs`: the room member index, the cluster counts) follows in the same
//! transaction, one script before the hash's writes.
//!
//! A run is also bounded in bytes ([`Run`]): a publication goes to every node's subscribing
//! connection at once, and Redis closes a subscriber whose output buffer passes 32 MiB (its
//! default `client-output-buffer-limit pubsub`); a batch of presence changes with large
//! metadata (up to 64 KiB each) would otherwise make one publication of many MiB.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Event, Shared, Version, indexes, keys};
use crate::ids::{NodeId, UserId};
use crate::presence::Status;

/// The most bytes a run's events take (by [`size_bound`]), but for one event that is larger
/// by itself; its publication adds only the origin and the version.
pub(super) const RUN_BYTES: usize = 256 * 1024;

/// The announcements of a run under way, with a bound on the size of their publication.
#[derive(Debug, Default)]
pub(super) struct Run {
    events: Vec<Event>,
    /// The sum of [`size_bound`] over `events`.
    bytes: usize,
}

impl Run {
    /// Adds `event`. When it would take the run past [`RUN_BYTES`], the run so far is
    /// returned, to be written first, and `event` starts the next one.
    pub(super) fn push(&mut self, event: Event) -> Option<Vec<Event>> {
        let size = size_bound(&event);
        let full = (!self.events.is_empty() && self.bytes + size > RUN_BYTES).then(|| self.take());
        self.bytes += size;
        self.events.push(event);
        full
    }

    /// The run so far, leaving it empty.
    pub(super) fn take(&mut self) -> Vec<Event> {
        self.bytes = 0;
        std::mem::take(&mut self.events)
    }
}

/// At least the bytes `event` takes in an announcement's JSON: names at six bytes per byte
/// (the longest JSON escape, `\u001f`), the metadata as the raw JSON it is kept as, and the
/// keys, punctuation and numbers within a fixed allowance.
pub(super) fn size_bound(event: &Event) -> usize {
    const FIXED: usize = 128;
    let names = match event {
        Event::User { user, .. } => user.as_str().len(),
        Event::Member { room, user, .. } => room.as_str().len() + user.as_str().len(),
        Event::Channel { channel, .. } => channel.len(),
        Event::Presence(presence) | Event::Idle(presence) => {
            let metadata = presence.metadata.as_ref().map_or(0, |raw| raw.get().len());
            return FIXED + 6 * presence.user_id.as_str().len() + metadata;
        }
        Event::Reload => 0,
        Event::Dead { node } => node.as_str().len(),
    };
    FIXED + 6 * names
}

/// What a node publishes on the cluster event channel: its events, in the order it made them.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Announcement {
    pub(super) origin: NodeId,
    pub(super) events: Vec<Event>,
    /// The origin's version once the last event is applied, also written to its state hash in
    /// the same transaction; each earlier event's `seq` is one less than the next one's.
    /// `None` for what a node announces about another (a reaped node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) version: Option<Version>,
}

impl Announcement {
    /// Decodes a publication of the event channel; `None` when it does not parse or its
    /// versions do not add up (more events than sequence numbers up to the last one's).
    pub(super) fn decode(payload: &[u8]) -> Option<Self> {
        let announcement: Self = serde_json::from_slice(payload).ok()?;
        if let Some(last) = announcement.version {
            let count = u64::try_from(announcement.events.len()).ok()?;
            // Sequences start at 1, and the first event's is `last.seq - count + 1`.
            if count == 0 || last.seq < count {
                return None;
            }
        }
        Some(announcement)
    }

    /// The events in order, each with its own version.
    pub(super) fn versioned(self) -> impl Iterator<Item = (Event, Option<Version>)> {
        let count = self.events.len() as u64;
        let version = self.version;
        self.events.into_iter().zip(1..).map(move |(event, nth)| {
            let version = version.map(|last| Version {
                instance: last.instance,
                // `decode` checked that the first event's seq is at least 1.
                seq: last.seq.saturating_sub(count - nth),
            });
            (event, version)
        })
    }
}

/// The fields of a node's hash that a run of events changes, each to its last value in the
/// run, in the order of their first change.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct FieldChanges {
    /// Fields to set, with their values.
    pub(super) set: Vec<(String, String)>,
    /// Fields to delete.
    pub(super) delete: Vec<String>,
}

/// The users whose last connection on this node closed (an [`Event::User`] with count 0) and
/// whose `offline`, which the hub announces next, is not written yet. That `offline` removes
/// the user's presence from the node's hash; an `offline` a connected user chose ("appear
/// offline") is kept there like any presence, so that a node that loads the hash shows them
/// offline rather than online. Only the publisher task writes runs, so it is used in order.
#[derive(Debug, Default)]
pub(super) struct Closing(HashSet<UserId>);

/// Coalesces `events` into the field changes that leave the hash as writing them one by one
/// would. Events without a field (`Reload`, `Dead`) change none.
pub(super) fn coalesce(events: &[Event], closing: &mut Closing) -> FieldChanges {
    let mut last: Vec<(String, Option<String>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (field, value) in events
        .iter()
        .filter_map(|event| field_change(event, closing))
    {
        match index.get(&field) {
            Some(&at) => last[at].1 = value,
            None => {
                index.insert(field.clone(), last.len());
                last.push((field, value));
            }
        }
    }
    let mut changes = FieldChanges::default();
    for (field, value) in last {
        match value {
            Some(value) => changes.set.push((field, value)),
            None => changes.delete.push(field),
        }
    }
    changes
}

/// The field an event changes, and its new value (`None`: deleted); notes in `closing` the
/// users whose last connection here closed.
fn field_change(event: &Event, closing: &mut Closing) -> Option<(String, Option<String>)> {
    let count = |count: u32| (count > 0).then(|| count.to_string());
    match event {
        Event::User { user, count: n } => {
            if *n == 0 {
                closing.0.insert(user.clone());
            } else {
                closing.0.remove(user);
            }
            Some((keys::user_field(user), count(*n)))
        }
        Event::Member {
            room,
            user,
            count: n,
        } => Some((keys::member_field(room, user), count(*n))),
        Event::Channel { channel, present } => Some((
            keys::channel_field(channel),
            present.then(|| "1".to_owned()),
        )),
        Event::Presence(presence) | Event::Idle(presence) => {
            let closed = presence.status == Status::Offline && closing.0.remove(&presence.user_id);
            let value = if closed {
                None
            } else {
                serde_json::to_string(presence).ok()
            };
            Some((keys::presence_field(&presence.user_id), value))
        }
        Event::Reload | Event::Dead { .. } => None,
    }
}

/// Adds a run of this node's announcements to `pipe` as one transaction: a snapshot read by
/// another node holds all of the run and its version, or none of it. Versions the run.
pub(super) fn add_run(shared: &Shared, pipe: &mut redis::Pipeline, events: Vec<Event>) {
    if events.is_empty() {
        return;
    }
    let state = shared.keys.state(&shared.node);
    let version = shared.take_versions(events.len());
    let FieldChanges { set, delete } = coalesce(&events, &mut shared.closing.lock());
    pipe.cmd("MULTI").ignore();
    indexes::add_changes(&shared.keys, pipe, &shared.node, set.iter(), &delete);
    let mut hset = redis::cmd("HSET");
    hset.arg(&state);
    for (field, value) in &set {
        hset.arg(field).arg(value);
    }
    hset.arg(keys::VERSION_FIELD)
        .arg(keys::version_value(version));
    pipe.add_command(hset).ignore();
    if !delete.is_empty() {
        pipe.hdel(&state, delete).ignore();
    }
    publish(shared, pipe, events, Some(version));
    pipe.cmd("EXEC").ignore();
}

/// Publishes `events` from this node on the event channel, `version` being the last one's.
pub(super) fn publish(
    shared: &Shared,
    pipe: &mut redis::Pipeline,
    events: Vec<Event>,
    version: Option<Version>,
) {
    let announcement = Announcement {
        origin: shared.node.clone(),
        events,
        version,
    };
    if let Ok(json) = serde_json::to_vec(&announcement) {
        pipe.publish(shared.keys.events(), json).ignore();
    }
}

#[cfg(test)]
#[path = "announcements_tests.rs"]
mod tests;
