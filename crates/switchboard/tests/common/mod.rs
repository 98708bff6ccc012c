//! What only the server crate's tests need on top of `switchboard-testkit`: the real
//! `switchboard` binary as a child process with JSON logs, for tests that need a process to
//! signal or kill. (The binary's path is known to this crate's integration tests only.)
//!
//! Everything here is async: these tests run on a current-thread runtime that may also run
//! in-process nodes, which a blocking wait would freeze.

// Each test binary that declares `mod common` uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use switchboard_testkit::WAIT;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;

pub(crate) mod stalled;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A command for the binary with a clean environment for the settings tests pass.
pub(crate) fn command(args: &[&str]) -> Command {
    clean(Command::new(BIN), args)
}

/// `command` that runs the binary under `prlimit` with the open-file limits `soft` and `hard`.
pub(crate) fn command_with_nofile(soft: u64, hard: u64, args: &[&str]) -> Command {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={soft}:{hard}"))
        .arg("--")
        .arg(BIN);
    clean(command, args)
}

/// `command` with `args` and without the variables that would give the tests' settings.
fn clean(mut command: Command, args: &[&str]) -> Command {
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
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SWITCHBOARD_") {
            command.env_remove(name);
        }
    }
    command
}

/// A running binary and its JSON log lines. Killed on drop.
pub(crate) struct Running {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// The JSON log lines before the one that says it listens, in order.
    pub(crate) startup: Vec<Value>,
    /// Every later JSON log line, in order; a task reads the child's stderr into it until EOF.
    pub(crate) logs: mpsc::UnboundedReceiver<Value>,
}

impl Running {
    /// Starts the binary on 127.0.0.1 and an ephemeral port with JSON logs, and waits until
    /// it logs that it listens.
    pub(crate) async fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::start_as(command, args, envs).await
    }

    /// [`Running::start`] with the open-file limits `soft` and `hard` (through `prlimit`).
    pub(crate) async fn start_with_nofile(soft: u64, hard: u64, args: &[&str]) -> Self {
        Self::start_as(|args| command_with_nofile(soft, hard, args), args, &[]).await
    }

    async fn start_as(
        command: impl FnOnce(&[&str]) -> Command,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let mut base = vec!["--host", "127.0.0.1", "--log-format", "json"];
        base.extend_from_slice(args);
        let mut cmd = command(&base);
        if !args.contains(&"--port") && !envs.iter().any(|(k, _)| *k == "PORT") {
            cmd.arg("--port").arg("0");
        }
        cmd.envs(envs.iter().copied());
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .expect("start the switchboard binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, mut logs) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        let mut startup = Vec::new();
        let listening = tokio::time::timeout(WAIT, async {
            loop {
                let line = logs.recv().await.expect("the process's log ended");
                if line["fields"]["message"] == "switchboard listening" {
                    return line;
                }
                startup.push(line);
            }
        })
        .await
        .expect("no log line \"switchboard listening\"");
        let addr = listening["fields"]["address"]
            .as_str()
            .expect("the address is logged")
            .parse()
            .expect("the address parses");
        Self {
            child,
            addr,
            startup,
            logs,
        }
    }

    /// The process's id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Sends SIGTERM.
    pub(crate) async fn terminate(&self) {
        self.signal("-TERM").await;
    }

    /// Sends SIGHUP: the server reloads its key files.
    pub(crate) async fn hangup(&self) {
        self.signal("-HUP").await;
    }

    /// Sends SIGKILL: the process dies without any clean-up.
    pub(crate) async fn kill(&self) {
        self.signal("-KILL").await;
    }

    async fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the process is running");
        let status = tokio::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `within`.
    pub(crate) async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("did not exit within {within:?}"))
            .expect("wait for the process")
    }
}

/// Waits for a log line whose message is `message`, skipping others; returns it.
pub(crate) async fn wait_for_log(
    logs: &mut mpsc::UnboundedReceiver<Value>,
    message: &str,
) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let line = logs.recv().await.expect("the process's log ended");
            if line["fields"]["message"] == message {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line {message:?}"))
}
