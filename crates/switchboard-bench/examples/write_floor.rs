//! The floor of the fan-out path: what one `write(2)` of a small frame to a loopback TCP socket
//! costs the writing thread, with nothing else (no WebSocket, no queues, no async runtime).
//!
//! A writer thread sends `FRAME` bytes to each of `SOCKETS` connected sockets in turn, `ROUNDS`
//! times, first one frame per `write` and then `BATCH` frames per `write`; a reader thread drains
//! the other ends with large reads. The writer's own CPU time (utime + stime of the thread, from
//! `/proc/thread-self/stat`) divided by the frames written is the cost per delivery that any
//! server doing one write per recipient and message pays at least.
//!
//!     cargo run --release -p switchboard-bench --example write_floor [SOCKETS ROUNDS FRAME BATCH]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            std::io::Error::new(
                ErrorKind::InvalidInput,
                "usage: write_floor [SOCKETS ROUNDS FRAME BATCH] (numbers)",
            )
        })?;
    let sockets = args.first().copied().unwrap_or(1000);
    let rounds = args.get(1).copied().unwrap_or(200);
    let frame = args.get(2).copied().unwrap_or(72);
    let batch = args.get(3).copied().unwrap_or(16);

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut writers = Vec::with_capacity(sockets);
    let mut readers = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let writer = TcpStream::connect(listener.local_addr()?)?;
        writer.set_nodelay(true)?;
        let (reader, _) = listener.accept()?;
        reader.set_nonblocking(true)?;
        writers.push(writer);
        readers.push(reader);
    }
    let done = Arc::new(AtomicBool::new(false));
    let drain = {
        let done = done.clone();
        std::thread::spawn(move || drain_all(readers, &done))
    };

    for (label, per_write) in [("1 frame per write", 1), ("batched", batch)] {
        let chunk = vec![b'x'; frame * per_write];
        let writes = rounds / per_write.max(1);
        let cpu_before = thread_cpu_secs()?;
        let started = Instant::now();
        for _ in 0..writes {
            for writer in &mut writers {
                writer.write_all(&chunk)?;
            }
        }
        let cpu = thread_cpu_secs()? - cpu_before;
        let frames = (writes * per_write * sockets) as f64;
        println!(
            "{label:>18}: {per_write:>3} x {frame} B per write, {frames:.0} frames in {:.2} s, \
             writer CPU {:.2} us per frame, {:.2} us per write",
            started.elapsed().as_secs_f64(),
            cpu * 1e6 / frames,
            cpu * 1e6 / (writes * sockets) as f64,
        );
    }
    done.store(true, Ordering::Relaxed);
    drain
        .join()
        .map_err(|_| std::io::Error::other("the reader thread panicked"))?
}

/// Reads everything that arrives on `readers` until `done`.
fn drain_all(mut readers: Vec<TcpStream>, done: &AtomicBool) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    while !done.load(Ordering::Relaxed) {
        for reader in &mut readers {
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// This thread's user + system CPU time in seconds.
fn thread_cpu_secs() -> std::io::Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the name.
    Ok((ticks(11) + ticks(12)) / clock_ticks_per_sec())
}

/// The kernel's clock tick (`getconf CLK_TCK`), 100 on Linux unless told otherwise.
fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}
