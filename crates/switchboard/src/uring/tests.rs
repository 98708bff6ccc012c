//! The ring's invariants, checked on real sockets: a send is written whole and in order, the
//! frames are released after it, a full socket answers `EAGAIN` with its frames given back, a
//! dropped send is never written, and a thread that never parked keeps the portable path.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::{Done, Send, on_thread_park};
use crate::wake_counter::WakeCounter;

fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (reader, _) = listener.accept().unwrap();
    writer.set_nonblocking(true).unwrap();
    (writer, reader)
}

fn frames(parts: &[&'static [u8]]) -> Vec<Bytes> {
    parts.iter().map(|part| Bytes::from_static(part)).collect()
}

/// Runs `test` on a fresh thread (fresh thread-locals), after its first park.
fn on_a_hooked_thread(test: impl FnOnce() + std::marker::Send + 'static) {
    std::thread::spawn(move || {
        on_thread_park();
        test();
    })
    .join()
    .unwrap();
}

#[test]
fn a_send_is_written_whole_in_order_and_releases_its_frames() {
    on_a_hooked_thread(|| {
        let (writer, mut reader) = pair();
        let (counter, waker) = WakeCounter::new();
        let cx = Context::from_waker(&waker);
        let shared = Bytes::from(b"-shared".to_vec());
        let mut queued = frames(&[b"one", b"two"]);
        queued.push(shared.clone());
        let send = Send::start(writer.as_raw_fd(), queued, &cx).ok().unwrap();
        assert!(send.poll_done().is_pending(), "written before the flush");
        on_thread_park();
        assert!(matches!(send.poll_done(), Poll::Ready(Done::Complete)));
        assert_eq!(counter.count(), 0, "woken without need");
        assert!(
            shared.is_unique(),
            "the ring kept the frame after its completion"
        );
        let mut received = [0u8; 13];
        reader.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"onetwo-shared");
    });
}

#[test]
fn expediting_a_send_on_this_thread_flushes_the_ring() {
    on_a_hooked_thread(|| {
        let (writer, mut reader) = pair();
        let waker = WakeCounter::new().1;
        let cx = Context::from_waker(&waker);
        let send = Send::start(writer.as_raw_fd(), frames(&[b"now"]), &cx)
            .ok()
            .unwrap();
        assert!(
            send.expedite().is_none(),
            "a send of this thread was taken back"
        );
        assert!(matches!(send.poll_done(), Poll::Ready(Done::Complete)));
        let mut received = [0u8; 3];
        reader.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"now");
    });
}

#[test]
fn expediting_a_send_from_another_thread_takes_it_back_unwritten() {
    on_a_hooked_thread(|| {
        let (writer, mut reader) = pair();
        let waker = WakeCounter::new().1;
        let cx = Context::from_waker(&waker);
        let send = Send::start(writer.as_raw_fd(), frames(&[b"back"]), &cx)
            .ok()
            .unwrap();
        let taken = std::thread::spawn(move || send.expedite().map(|frames| frames.len()))
            .join()
            .unwrap();
        assert_eq!(taken, Some(1));
        on_thread_park();
        drop(writer);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "a send taken back was written: {rest:?}");
    });
}

#[test]
fn a_full_socket_answers_eagain_and_gives_the_frames_back() {
    on_a_hooked_thread(|| {
        let (writer, _reader) = pair();
        let (counter, waker) = WakeCounter::new();
        let cx = Context::from_waker(&waker);
        let chunk = Bytes::from(vec![7u8; 1 << 20]);
        let mut partial = false;
        for _ in 0..64 {
            let send = Send::start(writer.as_raw_fd(), Vec::from([chunk.clone()]), &cx)
                .ok()
                .unwrap();
            on_thread_park();
            match send.poll_done() {
                Poll::Ready(Done::Partial { written, frames }) => {
                    assert!(written < chunk.len());
                    assert_eq!(frames.len(), 1, "the frames were not given back");
                    partial = true;
                    break;
                }
                Poll::Ready(Done::Complete) => {}
                Poll::Ready(Done::Failed) => panic!("the send failed"),
                Poll::Pending => panic!("not done after the flush"),
            }
        }
        assert!(partial, "the socket never filled");
        assert!(counter.count() >= 1, "a short write must wake");
    });
}

#[test]
fn a_dropped_send_is_never_written() {
    on_a_hooked_thread(|| {
        let (writer, mut reader) = pair();
        let waker = WakeCounter::new().1;
        let cx = Context::from_waker(&waker);
        let frame = Bytes::from(b"never".to_vec());
        let send = Send::start(writer.as_raw_fd(), Vec::from([frame.clone()]), &cx)
            .ok()
            .unwrap();
        drop(send);
        assert!(frame.is_unique(), "the cancelled send kept its frame");
        drop(writer);
        on_thread_park();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "a cancelled send was written: {rest:?}");
    });
}

#[test]
fn a_send_dropped_on_another_thread_waits_or_cancels() {
    on_a_hooked_thread(|| {
        let (writer, mut reader) = pair();
        let waker = WakeCounter::new().1;
        let cx = Context::from_waker(&waker);
        let send = Send::start(writer.as_raw_fd(), frames(&[b"moved"]), &cx)
            .ok()
            .unwrap();
        // The task moved to another worker, which drops it while this thread flushes.
        let other = std::thread::spawn(move || drop(send));
        on_thread_park();
        other.join().unwrap();
        drop(writer);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty() || rest == b"moved", "torn send: {rest:?}");
    });
}

#[test]
fn a_thread_that_never_parked_keeps_the_portable_path() {
    std::thread::spawn(|| {
        let (writer, _reader) = pair();
        let waker = WakeCounter::new().1;
        let cx = Context::from_waker(&waker);
        let given = Send::start(writer.as_raw_fd(), frames(&[b"a"]), &cx);
        assert_eq!(given.err().map(|frames| frames.len()), Some(1));
    })
    .join()
    .unwrap();
}

#[test]
fn a_full_queue_flushes_at_once() {
    on_a_hooked_thread(|| {
        let (writer, mut reader) = pair();
        let waker = WakeCounter::new().1;
        let cx = Context::from_waker(&waker);
        let count = super::imp::ENTRIES as usize;
        let sends: Vec<Send> = (0..count)
            .map(|_| {
                Send::start(writer.as_raw_fd(), frames(&[b"z"]), &cx)
                    .ok()
                    .unwrap()
            })
            .collect();
        assert!(
            sends.iter().all(|send| send.poll_done().is_ready()),
            "a full queue waited for the park"
        );
        let mut received = vec![0u8; count];
        reader.read_exact(&mut received).unwrap();
        assert!(received.iter().all(|&byte| byte == b'z'));
    });
}
