//! The history part on its own, with the clock passed in: offsets, the size and age limits,
//! recovery at each edge, reads, and the sweep.

use std::time::Duration;

use bytes::Bytes;

use super::*;

fn history(size: usize, ttl_secs: u64) -> History {
    History::new(
        HistoryConfig {
            size,
            ttl: Duration::from_secs(ttl_secs),
        },
        false,
    )
}

fn room(name: &str) -> RoomId {
    RoomId::from_trusted(name)
}

/// Publishes `count` messages in `room` at hub-clock ms `now`; each frame is its offset's text.
fn publish(history: &History, room: &RoomId, count: usize, now: u64) {
    for _ in 0..count {
        let mut stream = history.room(room, now);
        let offset = stream.next_offset();
        stream.push(Bytes::from(offset.to_string()));
    }
}

fn offsets(frames: &[Bytes]) -> Vec<u64> {
    frames
        .iter()
        .map(|frame| std::str::from_utf8(frame).unwrap().parse().unwrap())
        .collect()
}

fn since(offset: u64, epoch: &str) -> StreamPosition {
    StreamPosition {
        offset,
        epoch: epoch.to_owned(),
    }
}

#[test]
fn offsets_start_at_one_and_grow_by_one_per_stream() {
    let history = history(10, 600);
    let (a, b) = (room("a"), room("b"));
    assert_eq!(history.room(&a, 0).position().offset, 0, "empty");
    publish(&history, &a, 3, 0);
    publish(&history, &b, 1, 0);
    assert_eq!(history.room(&a, 0).position().offset, 3);
    assert_eq!(history.room(&b, 0).position().offset, 1);
    assert_ne!(
        history.room(&a, 0).position().epoch,
        history.room(&b, 0).position().epoch,
        "each stream has its own epoch"
    );
    assert_eq!(history.counts(), (2, 4));
}

#[test]
fn recovery_succeeds_exactly_while_everything_after_the_position_is_kept() {
    let history = history(3, 600);
    let general = room("general");
    publish(&history, &general, 5, 0);
    let epoch = history.room(&general, 0).position().epoch;
    let mut stream = history.room(&general, 0);
    // Kept: 3, 4, 5. A client that saw 2 misses nothing that is gone.
    assert_eq!(
        stream.recover(&since(2, &epoch)),
        Recovery::Recovered(vec!["3".into(), "4".into(), "5".into()])
    );
    assert_eq!(
        stream.recover(&since(1, &epoch)),
        Recovery::Lost,
        "2 fell out"
    );
    assert_eq!(
        stream.recover(&since(5, &epoch)),
        Recovery::Recovered(vec![])
    );
    assert_eq!(
        stream.recover(&since(6, &epoch)),
        Recovery::Lost,
        "beyond the top"
    );
    assert_eq!(stream.recover(&since(5, "other")), Recovery::Lost);
    assert_eq!(history.counts().1, 3, "the size bounds what is kept");
}

#[test]
fn messages_expire_with_their_age_and_then_cannot_be_recovered() {
    let history = history(100, 10);
    let general = room("general");
    publish(&history, &general, 2, 0);
    publish(&history, &general, 1, 5_000);
    let epoch = history.room(&general, 0).position().epoch;
    let mut stream = history.room(&general, 9_999);
    assert!(
        stream.recover(&since(0, &epoch)).recovered(),
        "all three young"
    );
    drop(stream);
    let mut stream = history.room(&general, 10_001);
    assert_eq!(
        stream.recover(&since(0, &epoch)),
        Recovery::Lost,
        "1 and 2 are older than the ttl"
    );
    assert_eq!(
        stream.recover(&since(2, &epoch)),
        Recovery::Recovered(vec!["3".into()])
    );
    drop(stream);
    assert_eq!(history.counts().1, 1);
}

#[test]
fn an_empty_stream_recovers_its_own_epoch_at_zero() {
    let history = history(10, 600);
    let general = room("general");
    let epoch = history.room(&general, 0).position().epoch;
    assert!(
        history
            .room(&general, 0)
            .recover(&since(0, &epoch))
            .recovered()
    );
    publish(&history, &general, 2, 0);
    assert_eq!(
        history.room(&general, 0).recover(&since(0, &epoch)),
        Recovery::Recovered(vec!["1".into(), "2".into()])
    );
}

#[test]
fn reads_return_the_latest_or_the_first_after_a_position() {
    let history = history(10, 600);
    let general = room("general");
    publish(&history, &general, 6, 0);
    let epoch = history.room(&general, 0).position().epoch;
    let mut stream = history.room(&general, 0);
    assert_eq!(offsets(&stream.read(None, 10)), [1, 2, 3, 4, 5, 6]);
    assert_eq!(offsets(&stream.read(None, 2)), [5, 6]);
    assert_eq!(offsets(&stream.read(None, 0)), Vec::<u64>::new());
    assert_eq!(offsets(&stream.read(Some(&since(2, &epoch)), 2)), [3, 4]);
    assert_eq!(
        offsets(&stream.read(Some(&since(6, &epoch)), 10)),
        Vec::<u64>::new()
    );
    assert!(stream.read(Some(&since(2, "other")), 10).is_empty());
}

#[test]
fn the_sweep_keeps_streams_in_use_or_young_and_a_new_stream_has_a_new_epoch() {
    let history = history(10, 10);
    let (quiet, busy, joined) = (room("quiet"), room("busy"), room("joined"));
    publish(&history, &quiet, 1, 0);
    publish(&history, &busy, 1, 9_000);
    publish(&history, &joined, 1, 0);
    let old_epoch = history.room(&quiet, 0).position().epoch;
    assert_eq!(history.sweep(10_500, |room| room == &joined, |_| false), 1);
    assert_eq!(history.counts(), (2, 2));
    let fresh = history.room(&quiet, 10_500).position();
    assert_eq!(fresh.offset, 0);
    assert_ne!(
        fresh.epoch, old_epoch,
        "its history is gone: a new epoch says so"
    );
}

/// A cluster node's copy of a stream: (frame text) deliveries and what the copy asks for.
mod mirrored {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::hub::history::{StoreState, Stored};

    fn copy() -> History {
        History::new(
            HistoryConfig {
                size: 100,
                ttl: Duration::from_secs(600),
            },
            true,
        )
    }

    fn frame(offset: u64) -> (Bytes, Option<crate::ids::ConnId>) {
        (Bytes::from(offset.to_string()), None)
    }

    fn delivered(arrival: &Arrival) -> Vec<u64> {
        arrival
            .deliver
            .iter()
            .map(|(frame, _)| std::str::from_utf8(frame).unwrap().parse().unwrap())
            .collect()
    }

    fn read(epoch: &str, top: u64, offsets: std::ops::RangeInclusive<u64>) -> StoreState {
        StoreState {
            epoch: Arc::from(epoch),
            top,
            messages: offsets
                .map(|offset| Stored {
                    offset,
                    at: 0,
                    frame: frame(offset).0,
                    except: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_join_waits_for_the_first_read_and_messages_meanwhile_are_kept() {
        let history = copy();
        let room = room("r");
        let mut stream = history.room(&room, 0);
        assert!(!stream.synced());
        let answered = Arc::new(AtomicUsize::new(0));
        let seen = answered.clone();
        let start = stream.when_synced(Box::new(move |stream| {
            assert!(stream.synced());
            seen.store(stream.position().offset as usize, Ordering::SeqCst);
        }));
        assert!(start, "the first waiter starts the read");
        assert!(
            !stream.when_synced(Box::new(|_| {})),
            "one read for all waiters"
        );
        // Published while the read runs: kept, not delivered (nobody is a member yet).
        assert!(delivered(&stream.receive("e1", 6, frame(6))).is_empty());
        let mut arrival = stream.apply_read(read("e1", 5, 1..=5));
        assert!(arrival.deliver.is_empty(), "no member had anything");
        assert_eq!(arrival.deferred.len(), 2);
        for answer in std::mem::take(&mut arrival.deferred) {
            answer(&mut stream);
        }
        assert_eq!(answered.load(Ordering::SeqCst), 6, "the waiter saw 1..=6");
        assert_eq!(offsets(&stream.read(None, 10)), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn messages_come_out_in_order_once_and_a_gap_waits_for_a_read() {
        let history = copy();
        let room = room("r");
        let mut stream = history.room(&room, 0);
        stream.when_synced(Box::new(|_| {}));
        let _ = stream.apply_read(read("e1", 2, 1..=2));
        assert_eq!(delivered(&stream.receive("e1", 3, frame(3))), [3]);
        assert!(
            delivered(&stream.receive("e1", 3, frame(3))).is_empty(),
            "a duplicate"
        );
        let gap = stream.receive("e1", 6, frame(6));
        assert!(
            gap.deliver.is_empty() && gap.read,
            "4 and 5 are missing: read the store"
        );
        let more = stream.receive("e1", 7, frame(7));
        assert!(more.deliver.is_empty() && !more.read, "one read at a time");
        let filled = stream.apply_read(read("e1", 7, 1..=7));
        assert_eq!(
            delivered(&filled),
            [4, 5, 6, 7],
            "the gap, then what waited, in order"
        );
        assert!(!filled.read);
    }

    #[test]
    fn a_doubted_copy_holds_joins_and_a_new_epoch_starts_it_over() {
        let history = copy();
        let room = room("r");
        let mut stream = history.room(&room, 0);
        stream.when_synced(Box::new(|_| {}));
        let _ = stream.apply_read(read("e1", 3, 1..=3));
        assert!(stream.doubt(), "a read for the doubt");
        assert!(!stream.synced(), "joins wait");
        assert!(stream.current(), "members are still served");
        assert!(
            !stream.when_synced(Box::new(|_| {})),
            "the read is under way"
        );
        assert!(
            delivered(&stream.receive("e2", 1, frame(1))).is_empty(),
            "held in doubt"
        );
        let fresh = stream.apply_read(read("e2", 1, 1..=1));
        assert_eq!(
            delivered(&fresh),
            [1],
            "the new epoch's message reaches the members"
        );
        assert_eq!(fresh.deferred.len(), 1);
        assert_eq!(stream.position().epoch, "e2");
        assert_eq!(stream.position().offset, 1);
        stream.unsync();
        assert!(!stream.synced() && !stream.current());
    }

    #[test]
    fn a_client_ahead_of_this_copy_waits_until_it_caught_up() {
        let history = copy();
        let room = room("r");
        let mut stream = history.room(&room, 0);
        stream.when_synced(Box::new(|_| {}));
        let _ = stream.apply_read(read("e1", 3, 1..=3));
        let ahead = since(5, "e1");
        assert!(
            stream.behind(&ahead),
            "another node already delivered 4 and 5"
        );
        assert!(!stream.behind(&since(3, "e1")));
        assert!(
            !stream.behind(&since(9, "other")),
            "another epoch is no position here"
        );
        let recovered = Arc::new(AtomicUsize::new(0));
        let seen = recovered.clone();
        let read_now = stream.after_catching_up(Box::new(move |stream| {
            let position = since(5, "e1");
            if stream.recover(&position).recovered() {
                seen.store(1, Ordering::SeqCst);
            }
        }));
        assert!(read_now);
        let mut caught_up = stream.apply_read(read("e1", 6, 1..=6));
        assert_eq!(
            delivered(&caught_up),
            [4, 5, 6],
            "the members get what the read brought"
        );
        for answer in std::mem::take(&mut caught_up.deferred) {
            answer(&mut stream);
        }
        assert_eq!(recovered.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_member_answered_before_the_first_read_gets_what_was_stored_since_once() {
        let history = copy();
        let room = room("r");
        let mut stream = history.room(&room, 1_000);
        assert!(
            stream.answered_early(),
            "the first early answer starts the read"
        );
        assert!(!stream.answered_early(), "one read for all");
        // Published while the read runs.
        assert!(delivered(&stream.receive("e1", 6, frame(6))).is_empty());
        let mut state = read("e1", 5, 1..=5);
        for message in &mut state.messages {
            // 1 to 3 were stored before the member was answered, 4 and 5 after.
            message.at = if message.offset <= 3 { 500 } else { 1_000 };
        }
        let arrival = stream.apply_read(state);
        assert_eq!(delivered(&arrival), [4, 5, 6]);
        assert!(stream.synced());
        assert!(
            delivered(&stream.receive("e1", 5, frame(5))).is_empty(),
            "a late copy of one the read brought is not delivered twice"
        );
        assert_eq!(delivered(&stream.receive("e1", 7, frame(7))), [7]);
        assert!(!stream.answered_early(), "a synced copy needs no read");
    }
}
