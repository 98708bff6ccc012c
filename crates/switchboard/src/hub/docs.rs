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
//! every recipient. Saving to `--data-dir` happens under the document's lock and blocks only
//! that document.
//!
//! Loading may take a while (in a cluster the store is Redis): clients that open a document
//! while it loads are its clients at once (they receive its updates), and get the server's
//! sync step 1, and the answer to theirs, when it has loaded. In a cluster every local update
//! also goes to the store (which keeps it and publishes it to the other nodes), awareness goes
//! to the other nodes, and what the other nodes publish is applied here and relayed to the
//! local clients ([`Documents::receive`]).

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

use super::{CloseRequest, ConnHandle, Outgoing};
use crate::docstore::{DocLoaded, DocStore};
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
/// How the clients of a document that could not be loaded are closed.
const UNAVAILABLE: CloseRequest = CloseRequest {
    code: CloseCode::Internal,
    reason: std::borrow::Cow::Borrowed("the document could not be loaded"),
    graceful: true,
};
/// Largest awareness state, in bytes of JSON (a name, a colour, a cursor).
pub(crate) const MAX_AWARENESS_STATE: usize = 16 * 1024;

/// Why a document message was not carried out. Each closes the connection that sent it with
/// [`DocError::close_code`]; the document is left as it was.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DocError {
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
            Self::Damaged => CloseCode::Internal,
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
    load: Load,
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

/// Where a document is in its loading.
enum Load {
    /// Its first client is about to ask the store.
    NotStarted,
    /// The store was asked; the sync step 1 messages clients sent meanwhile wait for it.
    Loading {
        step1: Vec<(ConnId, Vec<u8>)>,
    },
    Loaded,
}

struct Awareness {
    owner: Owner,
    clock: u64,
    state: Box<str>,
    /// Hub-clock ms of its last renewal.
    renewed: u64,
}

/// Whose awareness state it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// A client of this node (its state goes when the connection does).
    Local(ConnId),
    /// A client of another node (its state goes when that node says so, or when it is not
    /// renewed for [`AWARENESS_TIMEOUT_MS`]).
    Remote,
}

/// How long a state of another node's client lives without a renewal (y-protocols clients
/// renew theirs every 15 s and drop others' after 30 s): what a crashed node leaves behind.
const AWARENESS_TIMEOUT_MS: u64 = 30_000;

impl OpenDoc {
    fn new(name: DocId) -> Self {
        Self {
            name,
            state: Mutex::new(DocState {
                doc: Doc::new(),
                load: Load::NotStarted,
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

    /// Adds `client` to document `name`. A loaded document sends it the server's sync step 1
    /// and the awareness states at once; one that is not loaded yet does when it has loaded
    /// (the first client starts the load: `load(doc)` is what the store is to call back).
    pub(crate) fn join(
        &self,
        name: &DocId,
        client: &ConnHandle,
        deliver: impl Fn(&ConnHandle, &Outgoing<'_>) -> bool,
        load: impl FnOnce(Arc<OpenDoc>) -> DocLoaded,
    ) -> Arc<OpenDoc> {
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
            state.clients.push(client.clone());
            self.clients.fetch_add(1, Ordering::Relaxed);
            match state.load {
                Load::Loaded => greet(&state, client, &deliver),
                Load::Loading { .. } => {}
                Load::NotStarted => {
                    state.load = Load::Loading { step1: Vec::new() };
                    drop(state);
                    self.store.load(name, load(open.clone()));
                    return open;
                }
            }
            drop(state);
            return open;
        }
    }

    /// Finishes loading `open` with what the store read: applies it, greets the clients that
    /// came meanwhile and answers their sync step 1. A store that could not read closes them
    /// (1011) and forgets the document.
    pub(crate) fn loaded(
        &self,
        open: &Arc<OpenDoc>,
        read: std::io::Result<Vec<Vec<u8>>>,
        now_ms: u64,
        deliver: impl Fn(&ConnHandle, &Outgoing<'_>) -> bool,
    ) {
        let mut state = open.state.lock();
        if state.unloaded {
            return;
        }
        let Load::Loading { step1 } = std::mem::replace(&mut state.load, Load::Loaded) else {
            return;
        };
        let applied = read
            .map_err(|error| tracing::error!(doc = %open.name, %error, "cannot load document"))
            .and_then(|updates| {
                for update in updates {
                    apply(&state.doc, &update).map_err(|_| {
                        tracing::error!(doc = %open.name, "the stored state is not a valid Yjs update");
                    })?;
                    state.size_bound = state.size_bound.saturating_add(update.len());
                }
                Ok(())
            });
        if applied.is_err() {
            drop(state);
            self.discard(open, UNAVAILABLE, now_ms);
            return;
        }
        if state.dirty {
            // Clients changed it while it loaded: their updates went to the store as they came,
            // but one that was unreachable meanwhile lost them; the whole state covers both.
            self.store.append(&open.name, &state.encoded());
        }
        for client in &state.clients {
            greet(&state, client, &deliver);
        }
        for (conn, state_vector) in step1 {
            if let Some(client) = state.clients.iter().find(|c| c.id() == conn)
                && let Ok(missing) = diff(&state.doc, &state_vector)
            {
                deliver(client, &Outgoing::new(&binary(&yjs::sync_step2(&missing))));
            }
        }
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
        deliver: impl Fn(&ConnHandle, &Outgoing<'_>) -> bool,
    ) -> Result<bool, DocError> {
        let mut state = open.state.lock();
        match command {
            DocCommand::SyncStep1(state_vector) => {
                if let Load::Loading { step1 } = &mut state.load {
                    step1.retain(|(conn, _)| *conn != from.id());
                    step1.push((from.id(), state_vector.to_vec()));
                    return Ok(false);
                }
                let missing = diff(&state.doc, state_vector)?;
                deliver(from, &Outgoing::new(&binary(&yjs::sync_step2(&missing))));
            }
            DocCommand::Update(update) => {
                if update == yjs::EMPTY_UPDATE {
                    return Ok(false);
                }
                self.make_room(&mut state, update.len())?;
                if let Err(error) = apply(&state.doc, update) {
                    if matches!(error, DocError::Damaged) {
                        drop(state);
                        self.discard(open, DISCARDED, now_ms);
                    }
                    return Err(error);
                }
                state.size_bound = state.size_bound.saturating_add(update.len());
                state.dirty = true;
                self.store.append(&open.name, update);
                let relayed = binary(&yjs::update(update));
                let relayed = Outgoing::new(&relayed);
                for client in state.clients.iter().filter(|c| c.id() != from.id()) {
                    deliver(client, &relayed);
                }
                return Ok(true);
            }
            DocCommand::Awareness(entries) => {
                let owner = Owner::Local(from.id());
                let accepted = record_awareness(&mut state, owner, &entries, now_ms)?;
                if accepted.is_empty() {
                    return Ok(false);
                }
                let message = yjs::awareness(accepted.into_iter());
                self.store.relay(&open.name, &message);
                let relayed = binary(&message);
                let relayed = Outgoing::new(&relayed);
                for client in &state.clients {
                    deliver(client, &relayed);
                }
            }
            DocCommand::QueryAwareness => {
                deliver(
                    from,
                    &Outgoing::new(&binary(&yjs::awareness(state.entries()))),
                );
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
        deliver: impl Fn(&ConnHandle, &Outgoing<'_>) -> bool,
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
            .filter(|(_, aware)| aware.owner == Owner::Local(client))
            .map(|(&id, aware)| (id, aware.clock + 1))
            .collect();
        for (id, _) in &gone {
            state.awareness.remove(id);
        }
        if !gone.is_empty() {
            let removal = yjs::awareness(gone.iter().map(|&(id, clock)| AwarenessEntry {
                client: id,
                clock,
                state: "null",
            }));
            self.store.relay(&open.name, &removal);
            let removal = binary(&removal);
            let removal = Outgoing::new(&removal);
            for client in &state.clients {
                deliver(client, &removal);
            }
        }
        if !state.clients.is_empty() {
            return;
        }
        // A document that has not loaded yet has nothing of its own to save.
        let loaded = matches!(state.load, Load::Loaded);
        if !loaded || self.save(&open.name, &mut state) {
            state.unloaded = true;
            drop(state);
            self.forget(open);
        }
    }

    /// Applies a message another node published about document `name` (an update or
    /// awareness states) and relays it to this node's clients of the document.
    pub(crate) fn receive(
        &self,
        name: &DocId,
        message: &[u8],
        now_ms: u64,
        deliver: impl Fn(&ConnHandle, &Outgoing<'_>) -> bool,
    ) {
        let Some(open) = self.open.lock().get(name).cloned() else {
            return;
        };
        let mut state = open.state.lock();
        if state.unloaded {
            return;
        }
        let relayed = match yjs::decode(message) {
            Ok(yjs::Message::Update(update) | yjs::Message::SyncStep2(update)) => {
                match apply(&state.doc, update) {
                    Ok(()) => {}
                    Err(DocError::Damaged) => {
                        drop(state);
                        self.discard(&open, DISCARDED, now_ms);
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(doc = %name, %error, "ignoring an update from another node");
                        return;
                    }
                }
                state.size_bound = state.size_bound.saturating_add(update.len());
                state.dirty = true;
                binary(&yjs::update(update))
            }
            Ok(yjs::Message::Awareness(entries)) => {
                let Ok(accepted) = record_awareness(&mut state, Owner::Remote, &entries, now_ms)
                else {
                    return;
                };
                if accepted.is_empty() {
                    return;
                }
                binary(&yjs::awareness(accepted.into_iter()))
            }
            _ => return,
        };
        let relayed = Outgoing::new(&relayed);
        for client in &state.clients {
            deliver(client, &relayed);
        }
    }

    /// After the store was unreachable: gives it the whole state of every open document, so
    /// that what this node's clients changed meanwhile reaches the store and the other nodes
    /// (which merge it: applying what they have changes nothing).
    pub(crate) fn resync(&self) {
        let open: Vec<Arc<OpenDoc>> = self.open.lock().values().cloned().collect();
        for doc in open {
            let state = doc.state.lock();
            if !state.unloaded && matches!(state.load, Load::Loaded) {
                self.store.append(&doc.name, &state.encoded());
            }
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
    fn discard(&self, open: &Arc<OpenDoc>, reason: CloseRequest, now_ms: u64) {
        let mut state = open.state.lock();
        tracing::error!(doc = %open.name, reason = %reason.reason, "document dropped");
        state.unloaded = true;
        for client in state.clients.drain(..) {
            self.clients.fetch_sub(1, Ordering::Relaxed);
            client.close(reason.clone(), now_ms);
        }
        state.awareness.clear();
        drop(state);
        self.forget(open);
    }

    /// Takes `open` out of the open set, unless another document of the name replaced it,
    /// and tells the store this node no longer has it open (under the set's lock, so that a
    /// client opening it again starts a new load after that).
    fn forget(&self, open: &Arc<OpenDoc>) {
        let mut documents = self.open.lock();
        if documents
            .get(&open.name)
            .is_some_and(|current| Arc::ptr_eq(current, open))
        {
            documents.remove(&open.name);
            self.store.close(&open.name);
        }
    }

    /// Saves every document that changed since its last save, and unloads those whose last
    /// client left while their save failed; drops other nodes' awareness states that were not
    /// renewed in time. Returns how many documents were saved.
    pub(crate) fn save_changed(&self, now_ms: u64) -> usize {
        let open: Vec<Arc<OpenDoc>> = self.open.lock().values().cloned().collect();
        let mut saved = 0;
        for doc in open {
            let mut state = doc.state.lock();
            state.awareness.retain(|_, aware| {
                aware.owner != Owner::Remote
                    || now_ms.saturating_sub(aware.renewed) < AWARENESS_TIMEOUT_MS
            });
            if state.unloaded || !state.dirty || !matches!(state.load, Load::Loaded) {
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
/// as in y-protocols), and its client is `owner`'s or new. A removal drops the state. Each
/// local connection holds at most [`MAX_AWARENESS_PER_CONNECTION`] states.
fn record_awareness<'a>(
    state: &mut DocState,
    owner: Owner,
    entries: &[AwarenessEntry<'a>],
    now_ms: u64,
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
                    renewed: now_ms,
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

/// Sends a client the server's sync step 1 and the awareness states, if any.
fn greet(
    state: &DocState,
    client: &ConnHandle,
    deliver: &impl Fn(&ConnHandle, &Outgoing<'_>) -> bool,
) {
    let state_vector = state.doc.transact().state_vector().encode_v1();
    deliver(
        client,
        &Outgoing::new(&binary(&yjs::sync_step1(&state_vector))),
    );
    if !state.awareness.is_empty() {
        deliver(
            client,
            &Outgoing::new(&binary(&yjs::awareness(state.entries()))),
        );
    }
}

/// What `doc` has that the encoded `state_vector` lacks.
fn diff(doc: &Doc, state_vector: &[u8]) -> Result<Vec<u8>, DocError> {
    let state_vector = StateVector::decode_v1(state_vector).map_err(|_| DocError::InvalidUpdate)?;
    Ok(doc.transact().encode_diff_v1(&state_vector))
}

/// A binary WebSocket frame holding `message`.
fn binary(message: &[u8]) -> Bytes {
    frame::frame(OpCode::Binary, message)
}
