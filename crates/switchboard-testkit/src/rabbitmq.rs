//! [`RabbitMqServer`]: a real `rabbitmq-server` child process on free ports, for the AMQP
//! broker's conformance suite and the cluster tests with RabbitMQ. A missing `rabbitmq-server`
//! fails the test loudly (`.ci/run` installs it): never a silent skip.
//!
//! Everything it touches is private to the instance, so that parallel tests (and the machine's
//! own RabbitMQ, if any) never meet: its AMQP port, its node name, its Erlang distribution port
//! and its own `epmd` on a port of its own, and a temporary directory for its database, logs,
//! configuration file (listening on 127.0.0.1 only) and plugin list (none).
//!
//! The server is started by a small shell that runs `epmd`, then the server, and then reads its
//! standard input, which the test process holds: when the test process ends, or the instance
//! is stopped or dropped, that input closes and the shell kills them and removes the
//! directory. So a server shared by a test binary through a `static` (it takes seconds to
//! boot) is not left running, or on disk, when the binary exits.
//!
//! Uses no `switchboard` type (see `redis.rs`).

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::free_port;

/// How long RabbitMQ may take to boot (it takes seconds; more on a loaded machine).
const BOOT: Duration = Duration::from_secs(120);

/// The server script: Debian's wrapper at `/usr/sbin/rabbitmq-server` switches to the
/// `rabbitmq` user when run as root; the script it runs takes our environment as it is.
const SERVER_SCRIPTS: [&str; 2] = ["/usr/lib/rabbitmq/bin/rabbitmq-server", "rabbitmq-server"];

/// The shell that runs epmd and the server (in a session and process group of their own), and,
/// once its input closes, kills that group, waits for it to be gone and, unless it read
/// `keep` (a stop before a restart), removes the server's directory. epmd is started first,
/// and the server told not to start one (`-start_epmd false`), so that no daemonised epmd
/// escapes the group. If epmd or the server ends by itself (a port taken between
/// [`free_port_everywhere`] and the server's bind, say), the group writes why to
/// [`EXITED`]: the shell itself lives on until its input closes.
const SUPERVISOR: &str = r#"
setsid sh -c '
  epmd -port "$ERL_EPMD_PORT" -address 127.0.0.1 &
  tries=0
  until epmd -port "$ERL_EPMD_PORT" -names >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 200 ]; then
      echo "epmd did not start on port $ERL_EPMD_PORT" >"$SB_RABBITMQ_DIR/exited"
      exit 1
    fi
    sleep 0.05
  done
  "$SB_RABBITMQ_SERVER" >"$SB_RABBITMQ_DIR/stdout.log" 2>&1
  echo "rabbitmq-server exited with status $?" >"$SB_RABBITMQ_DIR/exited"
' </dev/null &
group=$!
read -r what
kill -KILL -"$group" 2>/dev/null
wait "$group"
tries=0
while kill -0 -"$group" 2>/dev/null && [ "$tries" -lt 100 ]; do
  tries=$((tries + 1))
  sleep 0.05
done
[ "$what" = keep ] || rm -rf "$SB_RABBITMQ_DIR"
"#;

/// The file in the server's directory that says why the server ended by itself.
const EXITED: &str = "exited";

/// Boots that end by themselves before the server answers, each on new ports, before
/// [`RabbitMqServer::start`] gives up.
const ATTEMPTS: usize = 3;

/// A running rabbitmq-server (guest/guest on the default vhost), killed on drop.
pub struct RabbitMqServer {
    port: u16,
    dist_port: u16,
    epmd_port: u16,
    dir: PathBuf,
    /// `None` while stopped.
    child: Option<Child>,
}

impl RabbitMqServer {
    /// Starts rabbitmq-server on free ports and waits until it answers the AMQP handshake. A
    /// boot that ends by itself (ports are free when chosen, not when bound: other tests
    /// connect all the time) is tried again on new ports, up to three times.
    pub async fn start() -> Self {
        let mut failures = Vec::new();
        for _ in 0..ATTEMPTS {
            let mut server = Self::prepare();
            match server.boot().await {
                Ok(()) => return server,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "rabbitmq-server did not start in {ATTEMPTS} attempts (is it installed? .ci/run \
             installs it):\n{}",
            failures.join("\n")
        );
    }

    /// A stopped server on free ports, with its directory and configuration written.
    fn prepare() -> Self {
        let port = free_port_everywhere();
        let dir = std::env::temp_dir().join(format!(
            "switchboard-rabbitmq-{}-{port}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("a directory for rabbitmq-server");
        let config = format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n");
        std::fs::write(dir.join("rabbitmq.conf"), config).expect("write rabbitmq.conf");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("write rabbitmq-env.conf");
        Self {
            port,
            dist_port: free_port_everywhere(),
            epmd_port: free_port_everywhere(),
            dir,
            child: None,
        }
    }

    /// The URL nodes use.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Kills the server (and its epmd), as a crash would, and waits until they have exited.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Closing its input makes the shell kill the server; `keep` keeps its data.
            if let Some(mut input) = child.stdin.take() {
                let _ = std::io::Write::write_all(&mut input, b"keep\n");
            }
            tokio::task::spawn_blocking(move || {
                let _ = child.wait();
            })
            .await
            .expect("stop rabbitmq-server");
        }
    }

    /// Starts the server again on the same ports, with the same data, and waits until it
    /// answers the AMQP handshake.
    pub async fn restart(&mut self) {
        if let Err(failure) = self.boot().await {
            panic!("rabbitmq-server did not start again: {failure}");
        }
    }

    /// Stops the server if it runs, starts it and waits until it answers the AMQP handshake;
    /// says why when it ends by itself or does not answer within [`BOOT`].
    async fn boot(&mut self) -> Result<(), String> {
        self.stop().await;
        let _ = std::fs::remove_file(self.dir.join(EXITED));
        let script = SERVER_SCRIPTS
            .into_iter()
            .find(|script| !script.starts_with('/') || std::path::Path::new(script).exists())
            .unwrap_or("rabbitmq-server");
        let dir = &self.dir;
        let child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            // Erlang writes a crash dump where it runs: there, not in the test's directory.
            .current_dir(dir)
            .env("ERL_CRASH_DUMP", dir.join("erl_crash.dump"))
            .env("SB_RABBITMQ_SERVER", script)
            .env("SB_RABBITMQ_DIR", dir)
            .env("HOME", dir)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env(
                "RABBITMQ_NODENAME",
                format!("sbtest{}@localhost", self.port),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}",
            )
            // Its own process group, which it kills whole, without the test process.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start rabbitmq-server's shell: {error}"));
        self.child = Some(child);
        let waited = self.wait_for_handshake().await;
        if waited.is_err() {
            // Not left running on ports the next attempt does not use.
            self.stop().await;
        }
        waited
    }

    /// Waits until the server answers an AMQP 0-9-1 protocol header with a method frame
    /// (`connection.start`): it listens a moment before it serves.
    async fn wait_for_handshake(&mut self) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = tokio::time::Instant::now() + BOOT;
        loop {
            if handshake(addr).await {
                return Ok(());
            }
            if let Ok(why) = std::fs::read_to_string(self.dir.join(EXITED)) {
                return Err(self.failure(why.trim()));
            }
            let shell_gone = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if shell_gone.is_some() {
                return Err(self.failure("its shell ended"));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.failure(&format!("it did not answer within {BOOT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Why a boot on these ports failed, with the end of the server's output.
    fn failure(&self, why: &str) -> String {
        let output = std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default();
        let lines: Vec<&str> = output.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n  ");
        format!(
            "port {} (distribution {}, epmd {}): {why}; its output ended with:\n  {tail}",
            self.port, self.dist_port, self.epmd_port
        )
    }
}

/// A port free on every local address, not only 127.0.0.1: Erlang checks its distribution
/// port on all of them, and another program's connection from 127.0.0.2 say holds a port that
/// [`free_port`] would hand out.
fn free_port_everywhere() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|listener| listener.local_addr())
        .map_or_else(|_| free_port(), |addr| addr.port())
}

/// Whether the server at `addr` answers the protocol header with a method frame.
async fn handshake(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"AMQP\x00\x00\x09\x01").await.ok()?;
        let mut frame_type = [0u8; 1];
        stream.read_exact(&mut frame_type).await.ok()?;
        Some(frame_type[0] == 1)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(true))
    )
}

impl Drop for RabbitMqServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
        // The shell removed it, unless the server was stopped and not started again.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[cfg_attr(
        not(feature = "external"),
        ignore = "needs rabbitmq-server: --features switchboard/external"
    )]
    async fn a_boot_on_a_taken_port_says_why_and_start_takes_other_ports() {
        let mut server = RabbitMqServer::prepare();
        let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, server.port))
            .expect("the port chosen is free");
        let failure = server.boot().await.expect_err("its AMQP port is taken");
        assert!(failure.contains("exited"), "{failure}");
        drop((server, taken));
        let server = RabbitMqServer::start().await;
        assert!(handshake(SocketAddr::from((Ipv4Addr::LOCALHOST, server.port))).await);
    }
}
