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
