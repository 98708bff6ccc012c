//! The real `switchboard` binary as a child process with JSON logs, for tests that need a
//! process to signal or kill.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A command for the binary with a clean environment for the settings tests pass.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("PORT")
        .env_remove("HOST")
        .env_remove("RUST_LOG")
        .env_remove("REDIS_URL")
        .env_remove("JWT_SECRET")
        .env_remove("JWT_PUBLIC_KEY")
        .env_remove("ALLOWED_ORIGINS")
        .env_remove("ADMIN_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A running binary and its JSON log lines, read on a thread. Killed on drop.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub logs: Receiver<Value>,
}

impl Running {
    /// Starts the binary on 127.0.0.1 and an ephemeral port with JSON logs, and waits until
    /// it logs that it listens.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut base = vec!["--host", "127.0.0.1", "--log-format", "json"];
        base.extend_from_slice(args);
        let mut cmd = command(&base);
        if !args.contains(&"--port") && !envs.iter().any(|(k, _)| *k == "PORT") {
            cmd.arg("--port").arg("0");
        }
        cmd.envs(envs.iter().copied());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        let listening = wait_for_log(&logs, "switchboard listening");
        let addr = listening["fields"]["address"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        Self { child, addr, logs }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGKILL: the process dies without any clean-up.
    pub fn kill(&self) {
        self.signal("-KILL");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a log line whose message is `message`; returns it.
pub fn wait_for_log(logs: &Receiver<Value>, message: &str) -> Value {
    let deadline = Instant::now() + super::WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = logs
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line {message:?}"));
        if line["fields"]["message"] == message {
            return line;
        }
    }
}
