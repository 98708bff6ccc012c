//! Duplicate suppression: the ids of client frames processed on this connection within the
//! dedup window. A frame whose id is here is acknowledged again, with the offset its first
//! `ack` carried, and not processed again.

use std::collections::VecDeque;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

use serde_json::value::RawValue;

use crate::hub::LaterOffset;

/// At most this many ids are remembered per connection; the oldest is forgotten first.
const CAPACITY: usize = 256;

/// The offset a processed frame's `ack` carried, or will carry once the cluster's store
/// answers.
#[derive(Debug)]
pub(crate) enum AckOffset {
    /// Known when it was acked (`None`: not a stream message, or history is off).
    Now(Option<u64>),
    /// Given by the cluster's store; read when a repeat asks for it.
    Later(LaterOffset),
}

impl AckOffset {
    fn get(&self) -> Option<u64> {
        match self {
            Self::Now(offset) => *offset,
            Self::Later(later) => later.get(),
        }
    }
}

/// A processed id: a 64-bit hash of its JSON text, when it was seen, and its ack's offset.
#[derive(Debug)]
struct Seen {
    key: u64,
    at_ms: u64,
    offset: AckOffset,
}

/// Recently processed ids with the time they were seen. Boxed and only while it holds any:
/// one pointer in every connection's task, most of which never send an id.
#[derive(Debug, Default)]
pub(crate) struct DedupWindow {
    // One word in the task instead of a `VecDeque`'s four: the extra allocation is made only
    // by connections that send ids.
    #[allow(clippy::box_collection)]
    entries: Option<Box<VecDeque<Seen>>>,
}

fn key(id: &RawValue) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id.get())
}

impl DedupWindow {
    /// Forgets ids older than `window_ms`; then, when `id` was processed within it, gives
    /// the offset its `ack` carried (`Some(None)`: processed, acked without one).
    pub(crate) fn acked(
        &mut self,
        id: &RawValue,
        now_ms: u64,
        window_ms: u64,
    ) -> Option<Option<u64>> {
        let entries = self.entries.as_mut()?;
        while entries
            .front()
            .is_some_and(|seen| now_ms.saturating_sub(seen.at_ms) >= window_ms)
        {
            entries.pop_front();
        }
        if entries.is_empty() {
            // Give the memory back once nothing is remembered.
            self.entries = None;
            return None;
        }
        let key = key(id);
        entries
            .iter()
            .find(|seen| seen.key == key)
            .map(|seen| seen.offset.get())
    }

    /// Remembers that `id` was processed at `now_ms`, and its ack's offset.
    pub(crate) fn insert(&mut self, id: &RawValue, now_ms: u64, offset: AckOffset) {
        let entries = self.entries.get_or_insert_default();
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back(Seen {
            key: key(id),
            at_ms: now_ms,
            offset,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    const NONE: AckOffset = AckOffset::Now(None);

    #[test]
    fn remembers_within_the_window_only() {
        let mut window = DedupWindow::default();
        assert_eq!(window.acked(&id("\"a\""), 0, 1000), None);
        window.insert(&id("\"a\""), 0, NONE);
        assert_eq!(window.acked(&id("\"a\""), 999, 1000), Some(None));
        assert_eq!(window.acked(&id("\"b\""), 999, 1000), None);
        assert_eq!(
            window.acked(&id("1"), 999, 1000),
            None,
            "\"1\" and 1 are different ids"
        );
        assert_eq!(window.acked(&id("\"a\""), 1000, 1000), None);
        assert!(window.entries.is_none(), "nothing is kept once all expired");
    }

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut window = DedupWindow::default();
        for i in 0..=CAPACITY {
            window.insert(&id(&i.to_string()), 0, NONE);
        }
        assert_eq!(window.acked(&id("0"), 1, 1000), None);
        assert_eq!(window.acked(&id("1"), 1, 1000), Some(None));
        assert_eq!(
            window.acked(&id(&CAPACITY.to_string()), 1, 1000),
            Some(None)
        );
    }

    #[test]
    fn a_repeat_gets_the_offset_of_the_first_ack_even_one_given_later() {
        let mut window = DedupWindow::default();
        window.insert(&id("1"), 0, AckOffset::Now(Some(7)));
        let later = LaterOffset::default();
        window.insert(&id("2"), 0, AckOffset::Later(later.clone()));
        assert_eq!(window.acked(&id("1"), 1, 1000), Some(Some(7)));
        assert_eq!(
            window.acked(&id("2"), 1, 1000),
            Some(None),
            "the store has not answered yet"
        );
        later.set(Some(8));
        assert_eq!(window.acked(&id("2"), 2, 1000), Some(Some(8)));
    }
}
