//! The Redis cluster as the store of Yjs documents (DESIGN.md §8, [`DocStore`]): a log of
//! updates per document that every node appends its clients' updates to, and that a node
//! opening the document reads; the updates are also published on the document's pub/sub
//! channel to the nodes that have it open, with the awareness messages (not kept).
//!
//! Keys: `PREFIXd:{DOC}` (a list of encoded Yjs updates, oldest first) and `PREFIXdv:{DOC}`
//! (how often the log was compacted), on one slot of a Redis Cluster. The pub/sub channel has
//! the same name as the list (Redis keeps channels and keys apart), so it shares the slot too.
//! Documents do not expire: they are data.
//!
//! Yjs updates commute and applying one twice changes nothing, so the order in which a node
//! sees the log and the publications does not matter: a node subscribes before it reads, and
//! whatever it receives twice is harmless. The log is compacted when a node saves a document
//! whose log is long: the node reads the log, merges it with its own state into one update and
//! replaces the entries it read (a script that checks that no other compaction ran since), so
//! the stored state does not grow with the number of edits.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::keys::{self, Keys};
use super::{Outgoing, RedisCluster, Shared, Write, tasks};
use crate::broker::Topic;
use crate::docstore::{DocLoaded, DocStore};
use crate::ids::DocId;

/// A log with at least this many entries is compacted when a node saves the document.
const COMPACT_AT: usize = 32;

impl Keys {
    /// A document's update log (also its pub/sub channel's name) and its compaction count.
    fn doc_keys(&self, doc: &DocId) -> (String, String) {
        (
            format!("{}d:{{{doc}}}", self.prefix()),
            format!("{}dv:{{{doc}}}", self.prefix()),
        )
    }
}

impl DocStore for RedisCluster {
    fn load(&self, doc: &DocId, done: DocLoaded) {
        let shared = &self.shared;
        shared.want(&Topic::Document(doc.clone()), true);
        match shared.runtime.get() {
            Some((tasks, cancel)) => {
                tasks.spawn(load(shared.clone(), doc.clone(), done, cancel.clone()));
            }
            None => done(Err(io::Error::other("cluster mode has not started"))),
        }
    }

    fn append(&self, doc: &DocId, update: &[u8]) {
        let shared = &self.shared;
        let (log, _) = shared.keys.doc_keys(doc);
        let message = crate::yjs::update(update);
        // Through Redis, the log and the publication in one go; through another broker, apart
        // (Yjs updates commute: their order does not matter).
        let publish = match &shared.external {
            Some(external) => {
                external.publish(&shared.node, Topic::Document(doc.clone()), &message);
                None
            }
            None => Some((log.clone(), keys::encode_envelope(&shared.node, &message))),
        };
        shared.queue(Outgoing::Write(Write::DocAppend {
            log,
            update: Bytes::copy_from_slice(update),
            publish,
        }));
    }

    fn relay(&self, doc: &DocId, message: &[u8]) {
        self.shared.publish(Topic::Document(doc.clone()), message);
    }

    fn save(&self, doc: &DocId, state: &[u8]) -> io::Result<()> {
        if let Some((tasks, _)) = self.shared.runtime.get() {
            tasks.spawn(compact(self.shared.clone(), doc.clone(), state.to_vec()));
        }
        Ok(())
    }

    fn close(&self, doc: &DocId) {
        self.shared.want(&Topic::Document(doc.clone()), false);
    }
}

/// Reads a document's log once the subscriber receives its publications, retrying with backoff
/// while Redis is unreachable; gives up only when the node shuts down.
async fn load(shared: Arc<Shared>, doc: DocId, done: DocLoaded, cancel: CancellationToken) {
    let (log, _) = shared.keys.doc_keys(&doc);
    let mut backoff = tasks::Backoff::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return done(Err(io::Error::other("shutting down"))),
            () = shared.in_step() => {}
        }
        if let Some(mut connection) = shared.connection() {
            match connection.lrange::<_, Vec<Vec<u8>>>(&log, 0, -1).await {
                Ok(updates) => return done(Ok(updates)),
                Err(error) => tracing::debug!(%error, %doc, "reading a document failed; retrying"),
            }
        }
        backoff.wait(&shared, &cancel).await;
    }
}

/// Compacts a long log: reads it with its compaction count, merges it and `state` into one
/// update, and replaces the entries read unless another node compacted meanwhile. Failures are
/// left for the next save.
async fn compact(shared: Arc<Shared>, doc: DocId, state: Vec<u8>) {
    let Some(mut connection) = shared.connection() else {
        return;
    };
    let (log, count) = shared.keys.doc_keys(&doc);
    match connection.llen::<_, usize>(&log).await {
        Ok(length) if length >= COMPACT_AT => {}
        _ => return,
    }
    let read: redis::RedisResult<(Option<String>, Vec<Vec<u8>>)> = redis::pipe()
        .atomic()
        .get(&count)
        .lrange(&log, 0, -1)
        .query_async(&mut connection)
        .await;
    let (compactions, entries) = match read {
        Ok(read) => read,
        Err(error) => return tracing::debug!(%error, %doc, "cannot read a document's log"),
    };
    if entries.len() < COMPACT_AT {
        return;
    }
    let mut updates: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    updates.push(&state);
    let merged = match yrs::merge_updates_v1(&updates) {
        Ok(merged) => merged,
        Err(error) => return tracing::warn!(%error, %doc, "cannot merge a document's log"),
    };
    let compacted: redis::RedisResult<i64> = shared
        .scripts
        .doc_compact
        .key(&log)
        .key(&count)
        .arg(compactions.unwrap_or_else(|| "0".to_owned()))
        .arg(entries.len())
        .arg(merged)
        .invoke_async(&mut connection)
        .await;
    match compacted {
        Ok(1) => tracing::debug!(%doc, entries = entries.len(), "document log compacted"),
        Ok(_) => tracing::debug!(%doc, "document log changed while compacting; left for later"),
        Err(error) => tracing::debug!(%error, %doc, "cannot compact a document's log"),
    }
}
