//! [`RedisClusterServer`]: a real Redis Cluster of three masters (no replicas), each a
//! `redis-server` child process on a free port with its cluster state in a temporary
//! directory, joined by `redis-cli --cluster create`. For the `--redis-cluster` tests. A missing
//! `redis-server` or `redis-cli` fails the test loudly (`.ci/run` installs them).
//!
//! Uses no `switchboard` type, like [`crate::redis`].

use std::path::PathBuf;
use std::process::Command;

use crate::daemon::Daemon;
use crate::redis::{base_args, free_port};
use crate::{TestPki, wait_until_async};

/// How many masters the cluster has: the smallest cluster `redis-cli` agrees to create.
const MASTERS: usize = 3;

/// A running three-master Redis Cluster that persists nothing; its processes are killed and
/// its directory removed on drop.
pub struct RedisClusterServer {
    masters: Vec<Daemon>,
    dir: PathBuf,
    /// With TLS: the CA file and the password, which `redis-cli` and the URL need.
    tls: Option<(String, String)>,
}

impl RedisClusterServer {
    /// Starts three cluster-enabled redis-servers, creates the cluster (slots spread evenly
    /// over the three) and waits until every node reports `cluster_state:ok` and knows the
    /// other two.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// [`RedisClusterServer::start`], with masters that accept only TLS (the certificate of
    /// `pki`), between themselves too, and require `password`.
    pub async fn start_tls(pki: &TestPki, password: &str) -> Self {
        let cert = pki.cert.display().to_string();
        let key = pki.key.display().to_string();
        Self::start_with(Some((cert, key, password.to_owned()))).await
    }

    /// Starts the cluster, over TLS when given a certificate, its key and a password.
    async fn start_with(tls: Option<(String, String, String)>) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-redis-cluster-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let mut masters = Vec::with_capacity(MASTERS);
        for _ in 0..MASTERS {
            let port = free_port();
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("a directory for a cluster node");
            let mut args = match &tls {
                None => base_args(port, "--port"),
                Some((cert, key, password)) => {
                    let mut args = base_args(port, "--tls-port");
                    args.extend(
                        [
                            "--port",
                            "0",
                            "--tls-cert-file",
                            cert,
                            "--tls-key-file",
                            key,
                            "--tls-ca-cert-file",
                            cert,
                            "--tls-auth-clients",
                            "no",
                            "--tls-cluster",
                            "yes",
                            "--requirepass",
                            password,
                            "--masterauth",
                            password,
                        ]
                        .map(String::from),
                    );
                    args
                }
            };
            let config = node_dir.join("nodes.conf").display().to_string();
            let node_dir = node_dir.display().to_string();
            // The cluster bus's own free port: by default it is the port + 10 000, which
            // nobody reserved (another test's `free_port` may hand it out), and which
            // redis-server refuses past 65 535.
            let bus = free_port().to_string();
            args.extend(
                [
                    "--cluster-port",
                    &bus,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &config,
                    "--dir",
                    &node_dir,
                    // A master whose slots all moved away stays a master (by default it
                    // would turn itself into a replica of where they went).
                    "--cluster-allow-replica-migration",
                    "no",
                ]
                .map(String::from),
            );
            masters.push(Daemon::start("redis-server", port, args).await);
        }
        let cluster = Self {
            masters,
            dir,
            tls: tls.map(|(cert, _, password)| (cert, password)),
        };
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(
            cluster
                .ports()
                .iter()
                .map(|port| format!("127.0.0.1:{port}")),
        );
        create.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        let (ok, output) = cluster.redis_cli(create).await;
        assert!(ok, "redis-cli --cluster create failed: {output}");
        for port in cluster.ports() {
            let cluster = &cluster;
            wait_until_async(
                "every cluster node reports cluster_state:ok",
                || async move {
                    let (_, info) = cluster
                        .redis_cli(vec![
                            "-p".to_owned(),
                            port.to_string(),
                            "cluster".to_owned(),
                            "info".to_owned(),
                        ])
                        .await;
                    info.contains("cluster_state:ok")
                        && info.contains(&format!("cluster_known_nodes:{MASTERS}"))
                },
            )
            .await;
        }
        cluster
    }

    /// The URL of a seed node (the first master): `rediss://` with the password over TLS.
    pub fn url(&self) -> String {
        let port = self.masters[0].port;
        match &self.tls {
            None => format!("redis://127.0.0.1:{port}"),
            Some((_, password)) => format!("rediss://:{password}@127.0.0.1:{port}"),
        }
    }

    /// The masters' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.masters.iter().map(|master| master.port).collect()
    }

    /// The sharded pub/sub channels with a subscriber on each master (`PUBSUB SHARDCHANNELS`),
    /// one list per master in the order of [`RedisClusterServer::ports`].
    pub async fn shard_channels(&self) -> Vec<Vec<String>> {
        let mut per_master = Vec::with_capacity(self.masters.len());
        for port in self.ports() {
            let (ok, output) = self
                .redis_cli(vec![
                    "-p".to_owned(),
                    port.to_string(),
                    "pubsub".to_owned(),
                    "shardchannels".to_owned(),
                ])
                .await;
            assert!(ok, "PUBSUB SHARDCHANNELS on {port} failed: {output}");
            per_master.push(output.lines().map(str::to_owned).collect());
        }
        per_master
    }

    /// How many subscribers the sharded channel `channel` has on the master on `port`
    /// (`PUBSUB SHARDNUMSUB`).
    pub async fn shard_subscribers(&self, port: u16, channel: &str) -> u64 {
        let (ok, output) = self
            .redis_cli(vec![
                "-p".to_owned(),
                port.to_string(),
                "pubsub".to_owned(),
                "shardnumsub".to_owned(),
                channel.to_owned(),
            ])
            .await;
        assert!(ok, "PUBSUB SHARDNUMSUB on {port} failed: {output}");
        output
            .lines()
            .nth(1)
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or_else(|| panic!("PUBSUB SHARDNUMSUB answered {output:?}"))
    }

    /// The port of the master that serves `key`'s slot (`CLUSTER KEYSLOT`, then the slot
    /// ranges of `CLUSTER NODES`).
    pub async fn master_of(&self, key: &str) -> u16 {
        let port = self.masters[0].port.to_string();
        let (ok, slot) = self
            .redis_cli(
                ["-p", &port, "cluster", "keyslot", key]
                    .map(String::from)
                    .to_vec(),
            )
            .await;
        assert!(ok, "CLUSTER KEYSLOT failed: {slot}");
        let slot: u16 = slot.trim().parse().expect("a slot");
        let (ok, nodes) = self
            .redis_cli(["-p", &port, "cluster", "nodes"].map(String::from).to_vec())
            .await;
        assert!(ok, "CLUSTER NODES failed: {nodes}");
        owner(&nodes, slot).unwrap_or_else(|| panic!("no master serves slot {slot}: {nodes}"))
    }

    /// Moves every slot of the master on `from` to the master on `to`, keys included
    /// (`redis-cli --cluster reshard`), and waits until every node agrees.
    pub async fn move_all_slots(&self, from: u16, to: u16) {
        let id = |port: u16| async move {
            let (ok, id) = self
                .redis_cli(vec![
                    "-p".to_owned(),
                    port.to_string(),
                    "cluster".to_owned(),
                    "myid".to_owned(),
                ])
                .await;
            assert!(ok, "CLUSTER MYID failed: {id}");
            id.trim().to_owned()
        };
        let (from_id, to_id) = (id(from).await, id(to).await);
        let (ok, nodes) = self
            .redis_cli(
                ["-p", &from.to_string(), "cluster", "nodes"]
                    .map(String::from)
                    .to_vec(),
            )
            .await;
        assert!(ok, "CLUSTER NODES failed: {nodes}");
        let count = slots_of(&nodes, from).to_string();
        let (ok, output) = self
            .redis_cli(
                [
                    "--cluster",
                    "reshard",
                    &format!("127.0.0.1:{from}"),
                    "--cluster-from",
                    &from_id,
                    "--cluster-to",
                    &to_id,
                    "--cluster-slots",
                    &count,
                    "--cluster-yes",
                ]
                .map(String::from)
                .to_vec(),
            )
            .await;
        assert!(ok, "redis-cli --cluster reshard failed: {output}");
        for port in self.ports() {
            wait_until_async("every node agrees on the new slot map", || async move {
                let (_, nodes) = self
                    .redis_cli(vec![
                        "-p".to_owned(),
                        port.to_string(),
                        "cluster".to_owned(),
                        "nodes".to_owned(),
                    ])
                    .await;
                nodes
                    .lines()
                    .find(|line| line.contains(&format!(":{from}@")))
                    .is_some_and(|line| line.split_whitespace().count() == 8)
            })
            .await;
        }
    }
}

/// The slot ranges of the node on `port` in `CLUSTER NODES` output, as (low, high).
fn ranges(nodes: &str, port: u16) -> Vec<(u16, u16)> {
    nodes
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| {
            fields
                .get(1)
                .is_some_and(|addr| addr.contains(&format!(":{port}@")))
        })
        .map(|fields| {
            fields
                .iter()
                .skip(8)
                .filter_map(|range| {
                    let (low, high) = range.split_once('-').unwrap_or((range, range));
                    Some((low.parse().ok()?, high.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How many slots the node on `port` serves, from `CLUSTER NODES` output.
fn slots_of(nodes: &str, port: u16) -> u32 {
    ranges(nodes, port)
        .iter()
        .map(|(low, high)| u32::from(high - low) + 1)
        .sum()
}

/// The port of the master whose slot ranges in `CLUSTER NODES` output hold `slot`.
fn owner(nodes: &str, slot: u16) -> Option<u16> {
    nodes.lines().find_map(|line| {
        let addr = line.split_whitespace().nth(1)?;
        let port = addr.split(':').nth(1)?.split('@').next()?.parse().ok()?;
        ranges(nodes, port)
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&slot))
            .then_some(port)
    })
}

impl Drop for RedisClusterServer {
    fn drop(&mut self) {
        // The daemons are killed by their own drop, before the directory goes.
        self.masters.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisClusterServer {
    /// Runs `redis-cli` with `args` (over TLS with the password when the cluster has them)
    /// off the runtime's thread (it may be running the nodes under test); returns whether it
    /// succeeded and its standard output and error.
    async fn redis_cli(&self, args: Vec<String>) -> (bool, String) {
        let mut all = Vec::new();
        if let Some((ca, password)) = &self.tls {
            all.extend(
                ["--tls", "--cacert", ca, "-a", password, "--no-auth-warning"].map(String::from),
            );
        }
        all.extend(args);
        tokio::task::spawn_blocking(move || {
            let output = Command::new("redis-cli")
                .args(&all)
                .output()
                .unwrap_or_else(|error| {
                    panic!(
                        "redis-cli must be installed for these tests (.ci/run installs it): {error}"
                    )
                });
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            (output.status.success(), text)
        })
        .await
        .expect("run redis-cli")
    }
}
