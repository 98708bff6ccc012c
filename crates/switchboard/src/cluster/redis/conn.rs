//! How a node reaches Redis: one server, through a `ConnectionManager`, or a Redis Cluster
//! (`--redis-cluster`), through the `redis` crate's `ClusterConnection`, which keeps one
//! multiplexed connection per master and routes each command by the hash slot of its first
//! key. [`Conn`] is either, so the rest of the module sends commands without knowing which.
//!
//! With a Redis Cluster every command, pipeline and script must touch one slot: the key layout
//! (`keys.rs`) gives each stream, document and the membership state a hash tag, and the
//! publisher sends one pipeline per item (`shards.rs`).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::ClusterError;
use super::RedisConfig;

/// Where a node's connections come from.
pub(super) enum Client {
    /// One Redis server (boxed: the client is ten times the size of a URL).
    Single(Box<redis::Client>),
    /// A Redis Cluster, known by its seed node.
    Cluster(Seed),
}

/// A Redis Cluster's seed node, from which each connection discovers the masters.
#[derive(Clone)]
pub(super) struct Seed {
    url: String,
    /// The PEM of a private CA that signed the masters' certificates (`--redis-tls-ca`).
    tls_ca: Option<Vec<u8>>,
}

impl Client {
    pub(super) fn new(config: &RedisConfig) -> Result<Self, ClusterError> {
        if config.cluster {
            let seed = Seed {
                url: config.url.clone(),
                tls_ca: config.tls_ca.clone(),
            };
            // Checked here so that a bad URL fails at start, as it does for one server.
            seed.builder().build().map_err(ClusterError::Url)?;
            return Ok(Self::Cluster(seed));
        }
        let client = match &config.tls_ca {
            None => redis::Client::open(config.url.as_str()),
            Some(pem) => redis::Client::build_with_tls(config.url.as_str(), trusting(pem)),
        }
        .map_err(ClusterError::Url)?;
        Ok(Self::Single(Box::new(client)))
    }
}

impl Seed {
    /// A cluster client's builder: RESP3, which the cluster connection needs to deliver
    /// subscriptions (as pushes), the node's time limits, and the private CA, if any, for
    /// every master (the seed's `rediss://` makes every connection TLS).
    pub(super) fn builder(&self) -> ClusterClientBuilder {
        let builder = ClusterClient::builder(vec![self.url.clone()])
            .use_protocol(redis::ProtocolVersion::RESP3)
            .connection_timeout(super::tasks::CONNECT_TIMEOUT)
            .response_timeout(super::tasks::CONNECT_TIMEOUT)
            .retries(2);
        match &self.tls_ca {
            Some(pem) => builder.certs(trusting(pem)),
            None => builder,
        }
    }
}

/// TLS that trusts the CA in `pem` (instead of the system's), with no client certificate.
fn trusting(pem: &[u8]) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.to_vec()),
    }
}

/// A connection to one Redis server or to a Redis Cluster; clones share it.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Whether this is a Redis Cluster, where a pipeline must stay on one slot.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(cmd, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
