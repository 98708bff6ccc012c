//! Duplicate suppression: the ids of client frames processed on this connection within the
//! dedup window. A frame whose id is here is acknowledged again and not processed again.

use std::collections::VecDeque;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

use serde_json::value::RawValue;

/// At most this many ids are remembered per connection; the oldest is forgotten first.
const CAPACITY: usize = 256;

/// Recently processed ids (as 64-bit hashes of their JSON text) with the time they were seen.
/// Boxed and only while it holds any: one pointer in every connection's task, most of which
/// never send an id.
#[derive(Debug, Default)]
pub(crate) struct DedupWindow {
    // One word in the task instead of a `VecDeque`'s four: the extra allocation is made only
    // by connections that send ids.
    #[allow(clippy::box_collection)]
    entries: Option<Box<VecDeque<(u64, u64)>>>,
}

fn key(id: &RawValue) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id.get())
}

impl DedupWindow {
    /// Forgets ids older than `window_ms`; then says whether `id` was processed within it.
    pub(crate) fn contains(&mut self, id: &RawValue, now_ms: u64, window_ms: u64) -> bool {
        let Some(entries) = &mut self.entries else {
            return false;
        };
        while entries
            .front()
            .is_some_and(|&(_, at)| now_ms.saturating_sub(at) >= window_ms)
        {
            entries.pop_front();
        }
        if entries.is_empty() {
            // Give the memory back once nothing is remembered.
            self.entries = None;
            return false;
        }
        let key = key(id);
        entries.iter().any(|&(k, _)| k == key)
    }

    /// Remembers that `id` was processed at `now_ms`.
    pub(crate) fn insert(&mut self, id: &RawValue, now_ms: u64) {
        let entries = self.entries.get_or_insert_default();
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back((key(id), now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn remembers_within_the_window_only() {
        let mut window = DedupWindow::default();
        assert!(!window.contains(&id("\"a\""), 0, 1000));
        window.insert(&id("\"a\""), 0);
        assert!(window.contains(&id("\"a\""), 999, 1000));
        assert!(!window.contains(&id("\"b\""), 999, 1000));
        assert!(
            !window.contains(&id("1"), 999, 1000),
            "\"1\" and 1 are different ids"
        );
        assert!(!window.contains(&id("\"a\""), 1000, 1000));
        assert!(window.entries.is_none(), "nothing is kept once all expired");
    }

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut window = DedupWindow::default();
        for i in 0..=CAPACITY {
            window.insert(&id(&i.to_string()), 0);
        }
        assert!(!window.contains(&id("0"), 1, 1000));
        assert!(window.contains(&id("1"), 1, 1000));
        assert!(window.contains(&id(&CAPACITY.to_string()), 1, 1000));
    }
}
