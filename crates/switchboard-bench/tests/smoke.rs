//! Smoke test of the load tool: every scenario, small, against the real `switchboard` binary.
//!
//! Checks correctness only (exit status, one parsable JSON line, expected counts, no loss),
//! never timings. The server binary is the one `cargo test --workspace` builds next to ours,
//! when it is newer than every source file of the server and the protocol crates; otherwise
//! (`cargo test -p switchboard-bench`, or a tree edited since) it is built into a target
//! directory of its own, since the outer cargo may hold the lock on ours, and a failed build
//! fails the test: a stale server is never tested. Set `SWITCHBOARD_BIN` to use another binary.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_testkit::free_port;

/// A server child process, killed (by its pid) when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(server_binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--rate-limit", "0", "--max-connections-per-user", "100"])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the switchboard server");
        // A process that starts listening tells nobody: poll, with a bound. These tests are
        // synchronous (no runtime, nothing in process to freeze), so a thread sleep is right.
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            // A failed test whose server had already gone: say so (and how it ended).
            eprintln!("the server on port {} had exited: {status}", self.port);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server binary, found or built once per test process.
fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(find_or_build_server)
}

fn find_or_build_server() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHBOARD_BIN") {
        return path.into();
    }
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_switchboard-bench"));
    let profile_dir = bench.parent().expect("the bench binary has a directory");
    let beside = profile_dir.join("switchboard");
    if modified(&beside).is_some_and(|built| built >= newest_source()) {
        return beside;
    }
    let own_target = profile_dir
        .parent()
        .expect("the profile directory is in a target directory")
        .join("bench-smoke-server");
    let built = own_target.join("debug").join("switchboard");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "switchboard", "--bin", "switchboard"])
        .env("CARGO_TARGET_DIR", &own_target)
        .status()
        .expect("run cargo build -p switchboard");
    assert!(status.success(), "cargo build -p switchboard failed");
    built
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// When what the server binary is built from last changed: its crate's sources and manifest,
/// the protocol crate, and the pages and scripts it embeds (its tests do not count).
fn newest_source() -> std::time::SystemTime {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the bench crate is in crates/");
    let root = crates.parent().expect("crates/ is in the workspace");
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut pending = vec![
        crates.join("switchboard/src"),
        crates.join("switchboard/Cargo.toml"),
        crates.join("switchboard-protocol"),
        root.join("web"),
        root.join("clients/js/dist"),
    ];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path).into_iter().flatten().flatten();
            pending.extend(entries.map(|entry| entry.path()));
        } else if let Some(time) = modified(&path) {
            newest = newest.max(time);
        }
    }
    newest
}

/// Runs the tool; asserts it exits 0 and prints exactly one JSON line; returns that record.
fn bench(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard-bench"))
        .args(args)
        .args(["--timeout", "60"])
        .output()
        .expect("run switchboard-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{args:?} exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let records: Vec<&str> = stdout.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(records.len(), 1, "one JSON line expected in:\n{stdout}");
    serde_json::from_str(records[0]).expect("the JSON line parses")
}

fn no_losses(record: &Value) {
    assert_eq!(record["loss"], 0, "{record}");
    assert_eq!(record["delivered"], record["expected"], "{record}");
    assert_eq!(record["errors"], 0, "{record}");
    assert_eq!(record["server_closes"], serde_json::json!({}), "{record}");
}

#[test]
fn fanout_delivers_every_message_to_every_other_member() {
    let server = Server::start();
    let record = bench(&[
        "fanout",
        "--url",
        &server.url(),
        "--server-pid",
        &server.pid(),
        "--rooms",
        "2",
        "--subscribers",
        "5",
        "--publishers",
        "1",
        "--rate",
        "20",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--sample-all",
    ]);
    assert_eq!(record["scenario"], "fanout");
    assert_eq!(record["connections"], 12);
    // 2 publishers x 20 messages, each to the 5 subscribers of its room.
    assert_eq!(record["sent"], 40);
    assert_eq!(record["expected"], 200);
    no_losses(&record);
    assert!(
        record["latency_us"]["samples"].as_u64().unwrap() > 0,
        "{record}"
    );
    assert_eq!(record["servers"][0]["pid"].to_string(), server.pid());
}

#[test]
fn fanout_in_msgpack_delivers_every_message_with_its_stamp() {
    let server = Server::start();
    let record = bench(&[
        "fanout",
        "--url",
        &server.url(),
        "--format",
        "msgpack",
        "--rooms",
        "1",
        "--subscribers",
        "3",
        "--rate",
        "20",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--size",
        "4096",
        "--sample-all",
    ]);
    // 20 messages to each of the 3 subscribers: recognised as deliveries in MessagePack.
    assert_eq!(record["expected"], 60);
    no_losses(&record);
    assert_eq!(record["latency_us"]["samples"], 60, "every stamp was found");
    // A 4 KiB content in a frame of little more (setup frames add a small share).
    let wire = record["wire_bytes_per_delivery"].as_f64().unwrap();
    assert!((4096.0..5000.0).contains(&wire), "{record}");
}

#[test]
fn connect_opens_every_connection() {
    let server = Server::start();
    let record = bench(&[
        "connect",
        "--url",
        &server.url(),
        "--connections",
        "50",
        "--concurrency",
        "10",
    ]);
    assert_eq!(record["scenario"], "connect");
    assert_eq!(record["connected"], 50, "{record}");
    assert_eq!(record["failed"], 0);
    assert_eq!(record["handshake_us"]["samples"], 50);
}

#[test]
fn broadcast_reaches_every_connection_including_the_publisher() {
    let server = Server::start();
    let record = bench(&[
        "broadcast",
        "--url",
        &server.url(),
        "--connections",
        "10",
        "--rate",
        "20",
        "--duration",
        "1",
        "--warmup",
        "0",
    ]);
    assert_eq!(record["scenario"], "broadcast");
    assert_eq!(record["connections"], 10);
    assert_eq!(record["sent"], 20);
    assert_eq!(record["expected"], 200);
    no_losses(&record);
}

#[test]
fn idle_spreads_connections_over_worker_processes() {
    let server = Server::start();
    let record = bench(&[
        "idle",
        "--url",
        &server.url(),
        "--server-pid",
        &server.pid(),
        "--connections",
        "200",
        "--workers",
        "2",
        "--settle",
        "0.2",
        "--hold",
        "0.5",
    ]);
    assert_eq!(record["scenario"], "idle");
    assert_eq!(record["workers"], 2);
    assert_eq!(record["connected"], 200, "{record}");
    assert_eq!(record["failed"], 0);
    assert_eq!(record["rooms"], 2);
    assert_eq!(record["errors"], 0);
    let memory = &record["memory"][0];
    assert_eq!(memory["pid"].to_string(), server.pid());
    assert!(memory["rss_before"].as_u64().unwrap() > 0, "{record}");
    assert!(memory["rss_after_open"].as_u64().unwrap() > 0, "{record}");
    assert_eq!(record["server_stats"][0]["connections"], 200, "{record}");
}
