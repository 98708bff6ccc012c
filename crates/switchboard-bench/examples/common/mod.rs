//! What the measuring examples share: the server binary as a child process, and its CPU time
//! and resident memory read from `/proc`.

use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Any error of an example.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// The server binary as a child process on a free port.
pub(crate) struct Server {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub(crate) port: u16,
}

impl Server {
    /// Starts `bin` on a free port with limits out of the way and `args` added, and waits
    /// until it accepts connections.
    pub(crate) async fn start(bin: &str, args: &[&str]) -> Result<Self, Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--rate-limit", "0", "--max-connections", "100000"])
            .args([
                "--max-connections-per-user",
                "100000",
                "--log-level",
                "warn",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(Self { child, port });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("the server did not start".into())
    }

    fn pid(&self) -> Result<u32, Error> {
        self.child.id().ok_or_else(|| "the server exited".into())
    }

    /// Its resident memory, KiB.
    pub(crate) fn rss_kib(&self) -> Result<u64, Error> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .ok_or("no VmRSS")?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .ok_or("no VmRSS value")?
            .parse()?)
    }

    /// Its CPU time so far (user + system), seconds.
    pub(crate) fn cpu_seconds(&self) -> Result<f64, Error> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .ok_or("bad stat")?
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(ticks as f64 / 100.0)
    }

    /// Kills it.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
