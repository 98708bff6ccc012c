//! [`Daemon`]: a server program the tests run as a child process on a fixed port (a real
//! redis-server or nats-server): started, killed as a crash would, started again on the same
//! port, and killed on drop. A missing program fails the test loudly (`.ci/run` installs it):
//! never a silent skip.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};

use crate::wait_for_port;

/// A child server process and how to start it again.
pub(crate) struct Daemon {
    program: &'static str,
    args: Vec<String>,
    pub(crate) port: u16,
    /// `None` while stopped.
    child: Option<Child>,
}

impl Daemon {
    /// Starts `program` with `args` (which make it listen on 127.0.0.1:`port`) and waits until
    /// it accepts connections.
    pub(crate) async fn start(program: &'static str, port: u16, args: Vec<String>) -> Self {
        let mut daemon = Self {
            program,
            args,
            port,
            child: None,
        };
        daemon.restart().await;
        daemon
    }

    /// Kills the process, as a crash would, and waits until it has exited.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The wait is short after SIGKILL, but a blocking call all the same: off the
            // runtime's thread, which may be running the nodes under test.
            tokio::task::spawn_blocking(move || {
                let _ = child.kill();
                let _ = child.wait();
            })
            .await
            .expect("stop the child server");
        }
    }

    /// Sends the running process `signal` (a name `kill` knows, such as `STOP`).
    pub(crate) fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the child server runs");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Starts the process again on the same port and waits until it accepts connections.
    pub(crate) async fn restart(&mut self) {
        self.stop().await;
        let child = Command::new(self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "{} must be installed for these tests (.ci/run installs it): {error}",
                    self.program
                )
            });
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        wait_for_port(&format!("{} listens", self.program), addr).await;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
