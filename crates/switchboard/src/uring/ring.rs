//! Each worker thread's ring (Linux): the queue of sends and the flush that submits them. The
//! invariants it keeps are in the parent module's doc.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};

use bytes::Bytes;
use io_uring::{IoUring, opcode, types};

use super::{Op, Send, Stage, State};

/// Entries of each ring: the most sends one flush submits; a full queue flushes at once.
pub(super) const ENTRIES: u32 = 256;

thread_local! {
    /// Set once this thread has run the park hook: only then are sends queued here, since
    /// only then will they be flushed.
    static HOOKED: Cell<bool> = const { Cell::new(false) };
    static RING: RefCell<Local> = const { RefCell::new(Local::Unopened) };
}

/// Sends submitted so far, all threads (one add per flush).
static SUBMITTED: AtomicU64 = AtomicU64::new(0);

/// The id of the next ring opened.
static NEXT_RING: AtomicU64 = AtomicU64::new(0);

/// Whether the refusal of io_uring was logged (once per process, not once per thread).
static REFUSAL_LOGGED: AtomicBool = AtomicBool::new(false);

enum Local {
    Unopened,
    /// Boxed: the ring is large, and a thread that never opens one keeps the small variants.
    Open(Box<Ring>),
    /// The kernel refused a ring, or one failed: this thread uses the portable path.
    Refused,
}

struct Ring {
    /// Unique in the process: tells a send queued here from one queued on another thread.
    id: u64,
    ring: IoUring,
    queued: Vec<Arc<Op>>,
}

pub(super) fn on_thread_park() {
    HOOKED.set(true);
    RING.with(|local| {
        if let Ok(mut local) = local.try_borrow_mut() {
            flush(&mut local);
        }
    });
}

pub(super) fn sends_submitted() -> u64 {
    SUBMITTED.load(Ordering::Relaxed)
}

pub(super) fn start(fd: i32, frames: Vec<Bytes>, cx: &Context<'_>) -> Result<Send, Vec<Bytes>> {
    if !HOOKED.get() {
        return Err(frames);
    }
    RING.with(|local| {
        let Ok(mut local) = local.try_borrow_mut() else {
            return Err(frames);
        };
        if matches!(*local, Local::Unopened) {
            *local = open();
        }
        let Local::Open(ring) = &mut *local else {
            return Err(frames);
        };
        let op = Arc::new(Op {
            fd,
            ring: ring.id,
            state: Mutex::new(State {
                stage: Stage::Queued,
                frames,
                waker: cx.waker().clone(),
            }),
        });
        ring.queued.push(Arc::clone(&op));
        if ring.queued.len() >= ENTRIES as usize {
            flush(&mut local);
        }
        Ok(Send(op))
    })
}

pub(super) fn expedite(op: &Arc<Op>) -> Option<Vec<Bytes>> {
    let mut state = op.lock();
    if !matches!(state.stage, Stage::Queued) {
        return None;
    }
    let here = RING.with(|local| {
        local
            .try_borrow()
            .is_ok_and(|local| matches!(&*local, Local::Open(ring) if ring.id == op.ring))
    });
    if !here {
        // Another thread's ring: cancelled under the lock, so its flush skips it.
        state.stage = Stage::Cancelled;
        return Some(std::mem::take(&mut state.frames));
    }
    drop(state);
    RING.with(|local| {
        if let Ok(mut local) = local.try_borrow_mut() {
            flush(&mut local);
        }
    });
    None
}

fn open() -> Local {
    match IoUring::new(ENTRIES) {
        Ok(ring) => Local::Open(Box::new(Ring {
            id: NEXT_RING.fetch_add(1, Ordering::Relaxed),
            ring,
            queued: Vec::with_capacity(ENTRIES as usize),
        })),
        Err(error) => {
            refused(&error);
            Local::Refused
        }
    }
}

fn refused(error: &std::io::Error) {
    if !REFUSAL_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(%error, "io_uring unavailable: writing with writev");
    }
}

/// Submits every queued send and reaps every completion; a ring that fails is closed for good
/// (invariant 4).
fn flush(local: &mut Local) {
    let Local::Open(ring) = local else {
        return;
    };
    if ring.queued.is_empty() {
        return;
    }
    let ops = std::mem::take(&mut ring.queued);
    let mut guards: Vec<MutexGuard<'_, State>> = ops.iter().map(|op| op.lock()).collect();
    let result = submit(&mut ring.ring, &ops, &mut guards);
    let mut wake: Vec<Waker> = Vec::new();
    for state in &mut guards {
        if let Stage::Done(written) = state.stage {
            let complete = usize::try_from(written)
                .is_ok_and(|written| written == state.frames.iter().map(Bytes::len).sum::<usize>());
            if complete {
                state.frames = Vec::new();
            }
            if !complete {
                wake.push(state.waker.clone());
            }
        }
    }
    drop(guards);
    // The queue's allocation is kept for the next wake-up.
    ring.queued = ops;
    ring.queued.clear();
    if let Err(error) = result {
        refused(&error);
        *local = Local::Refused;
    }
    for waker in wake {
        waker.wake();
    }
}

/// Builds one entry per queued send, submits them all and waits for all their completions.
/// Every queued send ends `Done` (an entry that could not be submitted: `EAGAIN`, so its frames
/// go the portable way) or stays `Cancelled`. The locks in `guards` are held throughout.
fn submit(
    ring: &mut IoUring,
    ops: &[Arc<Op>],
    guards: &mut [MutexGuard<'_, State>],
) -> std::io::Result<()> {
    let queued = |state: &State| matches!(state.stage, Stage::Queued);
    let buffers: usize = guards
        .iter()
        .filter(|state| queued(state))
        .map(|state| state.frames.len())
        .sum();
    // Both sized before the first pointer into them is taken; neither grows after
    // (invariant 1).
    let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(buffers);
    let mut spans: Vec<(usize, usize, usize)> = Vec::with_capacity(guards.len());
    for (index, state) in guards.iter().enumerate() {
        if queued(state) {
            let first = iovecs.len();
            iovecs.extend(state.frames.iter().map(|frame| libc::iovec {
                iov_base: frame.as_ptr().cast_mut().cast(),
                iov_len: frame.len(),
            }));
            spans.push((index, first, iovecs.len() - first));
        }
    }
    let mut headers: Vec<libc::msghdr> = spans
        .iter()
        .map(|&(_, first, count)| {
            // SAFETY: `msghdr` is plain data (integers and pointers) for which all zeroes is
            // the valid empty header.
            let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
            header.msg_iov = iovecs[first..].as_mut_ptr();
            header.msg_iovlen = count;
            header
        })
        .collect();
    let mut submitted = 0;
    let mut failed: Option<std::io::Error> = None;
    {
        let mut queue = ring.submission();
        for (header, &(index, _, _)) in headers.iter_mut().zip(&spans) {
            let entry = opcode::SendMsg::new(types::Fd(ops[index].fd), header)
                .flags((libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u32)
                .build()
                .user_data(index as u64);
            // SAFETY: the entry points at `header`, its `iovec`s and the frames they point at,
            // all alive and unmoved until every completion is reaped below (invariant 1); its
            // socket stays open while we hold its op's lock (invariant 2).
            if unsafe { queue.push(&entry) }.is_err() {
                break;
            }
            submitted += 1;
        }
    }
    SUBMITTED.fetch_add(submitted as u64, Ordering::Relaxed);
    let mut reaped = 0;
    while reaped < submitted {
        if let Err(error) = ring.submit_and_wait(submitted - reaped) {
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            failed = Some(error);
            break;
        }
        for completion in ring.completion() {
            let index = usize::try_from(completion.user_data()).unwrap_or(usize::MAX);
            if let Some(state) = guards.get_mut(index) {
                state.stage = Stage::Done(completion.result());
                reaped += 1;
            }
        }
    }
    let unreaped = reaped < submitted;
    for (position, &(index, _, _)) in spans.iter().enumerate() {
        let state = &mut guards[index];
        if !queued(state) {
            continue;
        }
        if position < submitted {
            // The ring failed with this send in the kernel's hands: its buffers are leaked,
            // never freed under it (invariant 1), and the connection fails.
            std::mem::forget(std::mem::take(&mut state.frames));
            state.stage = Stage::Done(-libc::EIO);
        } else {
            // Never submitted: `EAGAIN` puts its frames back in front of its connection's
            // queue, for the portable path.
            state.stage = Stage::Done(-libc::EAGAIN);
        }
    }
    if unreaped {
        std::mem::forget(headers);
        std::mem::forget(iovecs);
    }
    failed.map_or(Ok(()), Err)
}
