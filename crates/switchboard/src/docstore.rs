//! Where Yjs documents live when no client of this node has them open, and how their changes
//! reach the other nodes (DESIGN.md §8).
//!
//! A single node keeps each document's whole state as one encoded Yjs update, saved when the
//! document is unloaded (its last client left) and periodically while it changes, in memory
//! ([`MemoryDocs`]) or in files under `--data-dir` ([`DirDocs`]) so that they survive a
//! restart. The saved state is always the compacted state (`encode_state_as_update`), never a
//! log of updates, so it does not grow with the number of edits.
//!
//! A cluster's store (`cluster::redis`) keeps a log of updates per document instead: every
//! node appends its clients' updates, which the store also publishes to the nodes that have
//! the document open; a node that opens a document reads the log; the log is compacted into
//! one update as it grows. Yjs updates commute and applying one twice changes nothing, so the
//! order in which a node sees the log and the publications does not matter.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::ids::DocId;

/// What is called with a document read from the store: the updates that make it (empty when
/// it was never saved).
pub type DocLoaded = Box<dyn FnOnce(io::Result<Vec<Vec<u8>>>) + Send>;

/// A store of Yjs documents, by document name.
pub trait DocStore: Send + Sync {
    /// Reads `doc`, calling `done` once with its updates (perhaps before this returns). In a
    /// cluster the node receives the document's publications from the moment it calls this.
    fn load(&self, doc: &DocId, done: DocLoaded);
    /// Keeps `update`, which a client of this node made, and publishes it to the other nodes
    /// that have `doc` open (a lone node's store keeps nothing here: [`DocStore::save`] does).
    fn append(&self, doc: &DocId, update: &[u8]);
    /// Sends a message to the clients of `doc` on other nodes, without keeping it
    /// (awareness).
    fn relay(&self, doc: &DocId, message: &[u8]);
    /// Saves `state`, the whole document, replacing what was saved for `doc`; it is whole once
    /// this returns `Ok`. A cluster's store, which already has every update, compacts its log.
    fn save(&self, doc: &DocId, state: &[u8]) -> io::Result<()>;
    /// This node no longer has `doc` open: it stops receiving its publications.
    fn close(&self, doc: &DocId);
}

/// A lone node's store: whole states, read and written at once; nothing to publish.
macro_rules! local_doc_store {
    ($store:ty) => {
        impl DocStore for $store {
            fn load(&self, doc: &DocId, done: DocLoaded) {
                done(self.read(doc).map(|state| state.into_iter().collect()));
            }

            fn append(&self, _: &DocId, _: &[u8]) {}

            fn relay(&self, _: &DocId, _: &[u8]) {}

            fn save(&self, doc: &DocId, state: &[u8]) -> io::Result<()> {
                self.write(doc, state)
            }

            fn close(&self, _: &DocId) {}
        }
    };
}

local_doc_store!(MemoryDocs);
local_doc_store!(DirDocs);

/// Document states in this process's memory: they outlive their clients, not the process.
#[derive(Default)]
pub struct MemoryDocs(Mutex<HashMap<DocId, Box<[u8]>>>);

impl MemoryDocs {
    fn read(&self, doc: &DocId) -> io::Result<Option<Vec<u8>>> {
        Ok(self.0.lock().get(doc).map(|state| state.to_vec()))
    }

    fn write(&self, doc: &DocId, state: &[u8]) -> io::Result<()> {
        self.0.lock().insert(doc.clone(), state.into());
        Ok(())
    }
}

/// Document states in files, one per document under `DIR/docs/`: written to a temporary file,
/// synced, then renamed over the old one, so a crash leaves either the old state or the new.
pub struct DirDocs {
    dir: PathBuf,
}

/// The extension of a document's file.
const EXTENSION: &str = "ydoc";
/// The longest file name most file systems take.
const MAX_FILE_NAME: usize = 255;

impl DirDocs {
    /// Opens (creating it if needed) the documents directory under `data_dir`.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let dir = data_dir.join("docs");
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The file of `doc`: its name with every byte outside `[A-Za-z0-9_-]` written `%XX`
    /// (so no name can reach outside the directory or hide as a dot file), or, when that is
    /// too long for a file name, a hash of the name.
    fn path(&self, doc: &DocId) -> PathBuf {
        let mut name = String::with_capacity(doc.as_str().len() + EXTENSION.len() + 1);
        for byte in doc.as_str().bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
                name.push(char::from(byte));
            } else {
                name.push_str(&format!("%{byte:02X}"));
            }
        }
        if name.len() + EXTENSION.len() + 1 > MAX_FILE_NAME {
            name = format!("%hash-{:016x}", fnv1a(doc.as_str().as_bytes()));
        }
        self.dir.join(format!("{name}.{EXTENSION}"))
    }
}

/// 64-bit FNV-1a: a stable hash (the file of a long name must be the same after a restart).
/// Escaped names never start with `%hash-`, so hashed files cannot collide with them.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl DirDocs {
    fn read(&self, doc: &DocId) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(doc)) {
            Ok(state) => Ok(Some(state)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn write(&self, doc: &DocId, state: &[u8]) -> io::Result<()> {
        let path = self.path(doc);
        let temporary = path.with_extension(format!("{EXTENSION}.tmp"));
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(state)?;
        file.sync_data()?;
        std::fs::rename(&temporary, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str) -> DocId {
        DocId::parse(name, 1024).expect("a valid name")
    }

    #[test]
    fn files_keep_states_across_instances_and_names_stay_inside() {
        let dir = std::env::temp_dir().join(format!("switchboard-docs-{}", fastrand::u64(..)));
        let store = DirDocs::open(&dir).expect("open");
        let names = [
            "plain",
            "../../etc/passwd",
            ".hidden",
            "ünïcode:a/b",
            &"x".repeat(300),
        ];
        for (i, name) in names.iter().enumerate() {
            assert_eq!(store.read(&doc(name)).expect("load"), None);
            store.write(&doc(name), &[i as u8, 1, 2]).expect("save");
        }
        let reopened = DirDocs::open(&dir).expect("reopen");
        for (i, name) in names.iter().enumerate() {
            assert_eq!(
                reopened.read(&doc(name)).expect("load"),
                Some(vec![i as u8, 1, 2])
            );
            let path = reopened.path(&doc(name));
            assert_eq!(path.parent(), Some(dir.join("docs").as_path()), "{name}");
            let file = path
                .file_name()
                .and_then(|f| f.to_str())
                .expect("a file name");
            assert!(
                !file.starts_with('.') && file.len() <= MAX_FILE_NAME,
                "{file}"
            );
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn memory_keeps_the_last_save() {
        let store = MemoryDocs::default();
        store.write(&doc("a"), &[1]).expect("save");
        store.write(&doc("a"), &[2]).expect("save");
        assert_eq!(store.read(&doc("a")).expect("load"), Some(vec![2]));
        assert_eq!(store.read(&doc("b")).expect("load"), None);
    }
}
