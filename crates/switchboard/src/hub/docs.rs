//! The documents part: the Yjs documents open on this node (DESIGN.md §8), their clients and
//! their awareness states, and the store that keeps them while no client has them open.
//!
//! A document is loaded from the store when its first client opens it, kept in memory while
//! it has clients, saved periodically while it changes, and saved and unloaded when its last
//! client leaves. Each open document has one lock: applying an update and relaying it to the
//! other clients happen under it, so every client sees the updates in the order they were
//! applied, and a client that opens the document gets its state and then every later update,
//! with nothing in between (the reply to its sync step 1 is computed under the same lock).
//!
//! A relayed update or awareness message is framed once and the same buffer is queued to
//! every recipient. Document I/O (loading, saving to `--data-dir`) happens under the
//! document's lock and blocks only that document.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

use super::{CloseRequest, ConnHandle};
use crate::docstore::DocStore;
use crate::ids::{ConnId, DocId};
use crate::protocol::CloseCode;
use crate::ws::frame::{self, OpCode};
use crate::yjs::{self, AwarenessEntry};

/// Most awareness states one connection may hold (a client has one per document instance).
const MAX_AWARENESS_PER_CONNECTION: usize = 8;
/// How the clients of a discarded document are closed.
const DISCARDED: CloseRequest = CloseRequest {
    code: CloseCode::Internal,
    reason: std::borrow::Cow::Borrowed("document reloaded; reconnect"),
    graceful: true,
};
/// Largest awareness state, in bytes of JSON (a name, a colour, a cursor).
pub(crate) const MAX_AWARENESS_STATE: usize = 16 * 1024;

/// Why a document message was not carried out. Each closes the connection that sent it with
/// [`DocError::close_code`]; the document is left as it was.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DocError {
    #[error("the document could not be loaded")]
    Unavailable,
    #[error("not a valid Yjs update")]
    InvalidUpdate,
    #[error("the document would exceed its size limit")]
    TooLarge,
    #[error("awareness state too large")]
    AwarenessTooLarge,
    #[error("too many awareness states for one connection")]
    TooManyAwarenessStates,
    /// yrs failed while applying an update: the document was discarded (see `discard`).
    #[error("the document failed to apply an update and was reloaded")]
    Damaged,
}

impl DocError {
    pub(crate) fn close_code(&self) -> CloseCode {
        match self {
            Self::Unavailable | Self::Damaged => CloseCode::Internal,
            Self::InvalidUpdate => CloseCode::InvalidPayload,
            Self::TooLarge | Self::AwarenessTooLarge => CloseCode::TooBig,
            Self::TooManyAwarenessStates => CloseCode::Policy,
        }
    }
}

/// One open document.
pub(crate) struct OpenDoc {
    name: DocId,
    state: Mutex<DocState>,
}

struct DocState {
    doc: Doc,
    /// Its saved state was read from the store (by the first client to open it).
    loaded: bool,
    /// Set once the document was saved and taken out of the open set: whoever finds it so
    /// must look it up again.
    unloaded: bool,
    clients: Vec<ConnHandle>,
    /// Awareness states by Yjs client id.
    awareness: BTreeMap<u64, Awareness>,
    /// Changed since it was last saved.
    dirty: bool,
    /// An upper bound of the encoded state's size: its size when last measured plus every
    /// update applied since.
    size_bound: usize,
}

struct Awareness {
    owner: ConnId,
    clock: u64,
    state: Box<str>,
}

impl OpenDoc {
    fn new(name: DocId) -> Self {
        Self {
            name,
            state: Mutex::new(DocState {
                doc: Doc::new(),
                loaded: false,
                unloaded: false,
                clients: Vec::new(),
                awareness: BTreeMap::new(),
                dirty: false,
                size_bound: 0,
            }),
        }
    }
}

impl DocState {
    fn entries(&self) -> impl ExactSizeIterator<Item = AwarenessEntry<'_>> {
        self.awareness
            .iter()
            .map(|(&client, aware)| AwarenessEntry {
                client,
                clock: aware.clock,
                state: &aware.state,
            })
    }

    fn encoded(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }
}

/// What a document message asks of its document.
pub(crate) enum DocCommand<'a> {
    /// Sync step 1 with the client's state vector: answered with what it lacks.
    SyncStep1(&'a [u8]),
    /// An update (sync step 2 or update) to apply and relay.
    Update(&'a [u8]),
    /// Awareness states to record and relay.
    Awareness(Vec<AwarenessEntry<'a>>),
    /// A request for every awareness state.
    QueryAwareness,
}

/// The open documents and the store of the others.
pub(crate) struct Documents {
    open: Mutex<HashMap<DocId, Arc<OpenDoc>>>,
    store: Box<dyn DocStore>,
    max_size: usize,
    clients: AtomicUsize,
}

impl Documents {
    pub(crate) fn new(store: Box<dyn DocStore>, max_size: usize) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            store,
            max_size,
            clients: AtomicUsize::new(0),
        }
    }

    /// Open documents and their clients on this node.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.open.lock().len(), self.clients.load(Ordering::Relaxed))
    }

    /// Adds `client` to document `name` (loading it first if it is not open), and sends it
    /// the server's sync step 1 and the awareness states, if any.
    pub(crate) fn join(
        &self,
        name: &DocId,
        client: &ConnHandle,
        deliver: impl Fn(&ConnHandle, &Bytes) -> bool,
    ) -> Result<Arc<OpenDoc>, DocError> {
        loop {
            let open = self
                .open
                .lock()
                .entry(name.clone())
                .or_insert_with(|| Arc::new(OpenDoc::new(name.clone())))
                .clone();
            let mut state = open.state.lock();
            if state.unloaded {
                continue;
            }
            if !state.loaded {
                if let Err(error) = self.load(name, &mut state) {
                    state.unloaded = true;
                    drop(state);
                    self.forget(&open);
                    return Err(error);
                }
            }
            state.clients.push(client.clone());
            self.clients.fetch_add(1, Ordering::Relaxed);
            let state_vector = state.doc.transact().state_vector().encode_v1();
            deliver(client, &binary(&yjs::sync_step1(&state_vector)));
            if !state.awareness.is_empty() {
                deliver(client, &binary(&yjs::awareness(state.entries())));
            }
            return Ok(open.clone());
        }
    }

    /// Reads a document from the store (it starts empty if it was never saved).
    fn load(&self, name: &DocId, state: &mut DocState) -> Result<(), DocError> {
        let saved = self.store.load(name).map_err(|error| {
            tracing::error!(doc = %name, %error, "cannot load document");
            DocError::Unavailable
        })?;
        if let Some(saved) = saved {
            apply(&state.doc, &saved).map_err(|_| {
                tracing::error!(doc = %name, "the saved state is not a valid Yjs update");
                DocError::Unavailable
            })?;
            state.size_bound = saved.len();
        }
        state.loaded = true;
        Ok(())
    }

    /// Carries out one client message; true when it applied an update. Updates go to the
    /// other clients, awareness to every client (the sender too: y-websocket clients count it
    /// as a sign of life).
    pub(crate) fn command(
        &self,
        open: &Arc<OpenDoc>,
        from: &ConnHandle,
        command: DocCommand<'_>,
        now_ms: u64,
        deliver: impl Fn(&ConnHandle, &Bytes) -> bool,
    ) -> Result<bool, DocError> {
        let mut state = open.state.lock();
        match command {
            DocCommand::SyncStep1(state_vector) => {
                let state_vector =
                    StateVector::decode_v1(state_vector).map_err(|_| DocError::InvalidUpdate)?;
                let missing = state.doc.transact().encode_diff_v1(&state_vector);
                deliver(from, &binary(&yjs::sync_step2(&missing)));
            }
            DocCommand::Update(update) => {
                if update == yjs::EMPTY_UPDATE {
                    return Ok(false);
                }
                self.make_room(&mut state, update.len())?;
                if let Err(error) = apply(&state.doc, update) {
                    if matches!(error, DocError::Damaged) {
                        drop(state);
                        self.discard(open, now_ms);
                    }
                    return Err(error);
                }
                state.size_bound = state.size_bound.saturating_add(update.len());
                state.dirty = true;
                let relayed = binary(&yjs::update(update));
                for client in state.clients.iter().filter(|c| c.id() != from.id()) {
                    deliver(client, &relayed);
                }
                return Ok(true);
            }
            DocCommand::Awareness(entries) => {
                let accepted = record_awareness(&mut state, from.id(), &entries)?;
                if accepted.is_empty() {
                    return Ok(false);
                }
                let relayed = binary(&yjs::awareness(accepted.into_iter()));
                for client in &state.clients {
                    deliver(client, &relayed);
                }
            }
            DocCommand::QueryAwareness => {
                deliver(from, &binary(&yjs::awareness(state.entries())));
            }
        }
        Ok(false)
    }

    /// Checks that an update of `len` bytes keeps the document within its size limit,
    /// measuring the encoded state when the running bound says it might not.
    fn make_room(&self, state: &mut DocState, len: usize) -> Result<(), DocError> {
        if state.size_bound.saturating_add(len) <= self.max_size {
            return Ok(());
        }
        state.size_bound = state.encoded().len();
        if state.size_bound.saturating_add(len) <= self.max_size {
            Ok(())
        } else {
            Err(DocError::TooLarge)
        }
    }

    /// Removes `client` from the document: its awareness states are removed and the removal
    /// is sent to the remaining clients; the last client's departure saves and unloads the
    /// document.
    pub(crate) fn leave(
        &self,
        open: &Arc<OpenDoc>,
        client: ConnId,
        deliver: impl Fn(&ConnHandle, &Bytes) -> bool,
    ) {
        let mut state = open.state.lock();
        let Some(index) = state.clients.iter().position(|c| c.id() == client) else {
            return;
        };
        state.clients.swap_remove(index);
        self.clients.fetch_sub(1, Ordering::Relaxed);
        let gone: Vec<(u64, u64)> = state
            .awareness
            .iter()
            .filter(|(_, aware)| aware.owner == client)
            .map(|(&id, aware)| (id, aware.clock + 1))
            .collect();
        for (id, _) in &gone {
            state.awareness.remove(id);
        }
        if !gone.is_empty() && !state.clients.is_empty() {
            let removal = binary(&yjs::awareness(gone.iter().map(|&(id, clock)| {
                AwarenessEntry {
                    client: id,
                    clock,
                    state: "null",
                }
            })));
            for client in &state.clients {
                deliver(client, &removal);
            }
        }
        if state.clients.is_empty() && self.save(&open.name, &mut state) {
            state.unloaded = true;
            drop(state);
            self.forget(open);
        }
    }

    /// Saves a document that changed since its last save; false if the store refused it (the
    /// document then stays in memory, and the next sweep tries again).
    fn save(&self, name: &DocId, state: &mut DocState) -> bool {
        if !state.dirty {
            return true;
        }
        let encoded = state.encoded();
        state.size_bound = encoded.len();
        match self.store.save(name, &encoded) {
            Ok(()) => {
                state.dirty = false;
                true
            }
            Err(error) => {
                tracing::error!(doc = %name, %error, "cannot save document; kept in memory");
                false
            }
        }
    }

    /// Drops a document whose in-memory state can no longer be trusted (yrs panicked while
    /// changing it): it is unloaded without being saved and its clients are closed. They
    /// reconnect, the document is read again from its last save, and each client's sync
    /// sends back what the document lacks, so nothing the clients hold is lost.
    fn discard(&self, open: &Arc<OpenDoc>, now_ms: u64) {
        let mut state = open.state.lock();
        tracing::error!(doc = %open.name, "document discarded after a failed update");
        state.unloaded = true;
        for client in state.clients.drain(..) {
            self.clients.fetch_sub(1, Ordering::Relaxed);
            client.close(DISCARDED, now_ms);
        }
        state.awareness.clear();
        drop(state);
        self.forget(open);
    }

    /// Takes `open` out of the open set, unless another document of the name replaced it.
    fn forget(&self, open: &Arc<OpenDoc>) {
        let mut documents = self.open.lock();
        if documents
            .get(&open.name)
            .is_some_and(|current| Arc::ptr_eq(current, open))
        {
            documents.remove(&open.name);
        }
    }

    /// Saves every document that changed since its last save, and unloads those whose last
    /// client left while their save failed. Returns how many were saved.
    pub(crate) fn save_changed(&self) -> usize {
        let open: Vec<Arc<OpenDoc>> = self.open.lock().values().cloned().collect();
        let mut saved = 0;
        for doc in open {
            let mut state = doc.state.lock();
            if state.unloaded || !state.dirty {
                continue;
            }
            if self.save(&doc.name, &mut state) {
                saved += 1;
                if state.clients.is_empty() {
                    state.unloaded = true;
                    drop(state);
                    self.forget(&doc);
                }
            }
        }
        saved
    }
}

/// Records the awareness entries `owner` sent; returns those accepted. A state is accepted
/// when its clock is newer than the one known for its client (or a removal at the same clock,
/// as in y-protocols), and its client is `owner`'s or new. A removal drops the state.
fn record_awareness<'a>(
    state: &mut DocState,
    owner: ConnId,
    entries: &[AwarenessEntry<'a>],
) -> Result<Vec<AwarenessEntry<'a>>, DocError> {
    let mut accepted = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.state.len() > MAX_AWARENESS_STATE {
            return Err(DocError::AwarenessTooLarge);
        }
        match state.awareness.get(&entry.client) {
            Some(known) if known.owner != owner => continue,
            Some(known)
                if known.clock > entry.clock
                    || (known.clock == entry.clock && !entry.is_removal()) =>
            {
                continue;
            }
            Some(_) => {}
            None if entry.is_removal() => continue,
            None => {
                let held = state
                    .awareness
                    .values()
                    .filter(|a| a.owner == owner)
                    .count();
                if held >= MAX_AWARENESS_PER_CONNECTION {
                    return Err(DocError::TooManyAwarenessStates);
                }
            }
        }
        if entry.is_removal() {
            state.awareness.remove(&entry.client);
        } else {
            state.awareness.insert(
                entry.client,
                Awareness {
                    owner,
                    clock: entry.clock,
                    state: entry.state.into(),
                },
            );
        }
        accepted.push(*entry);
    }
    Ok(accepted)
}

/// Applies an encoded update to `doc`. An update that does not decode, or that yrs refuses,
/// leaves the document untouched (`InvalidUpdate`). yrs may also panic on crafted input: a
/// panic while decoding is refused the same way; one while applying may have left the
/// document half-changed (`Damaged`).
pub(crate) fn apply(doc: &Doc, update: &[u8]) -> Result<(), DocError> {
    let update = catch_unwind(|| Update::decode_v1(update))
        .map_err(|_| DocError::InvalidUpdate)?
        .map_err(|_| DocError::InvalidUpdate)?;
    catch_unwind(AssertUnwindSafe(|| doc.transact_mut().apply_update(update)))
        .map_err(|_| DocError::Damaged)?
        .map_err(|_| DocError::InvalidUpdate)
}

/// A binary WebSocket frame holding `message`.
fn binary(message: &[u8]) -> Bytes {
    frame::frame(OpCode::Binary, message)
}
