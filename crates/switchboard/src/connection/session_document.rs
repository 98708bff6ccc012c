//! The session of a document connection (`/yjs/{document}`, DESIGN.md §8): every binary
//! message is a y-websocket message about the one document the connection opened. The hub's
//! documents part applies, answers and relays (`hub/docs.rs`); the session decodes, limits and
//! closes.
//!
//! y-websocket has no error message: whatever the server cannot accept closes the connection
//! with a code that says why (1003 not a y-websocket message, 1007 an invalid update, 1008
//! rate or permission, 1009 too large, 1011 the document failed). The client reconnects and
//! syncs again; the document is left as it was.

use std::borrow::Cow;
use std::sync::Arc;

use super::{Aside, Session};
use crate::connection::DocAccess;
use crate::hub::{CloseRequest, Counters, DocCommand, InKind, OpenDoc};
use crate::limits::TokenBucket;
use crate::protocol::CloseCode;
use crate::yjs::{self, DecodeError, Message};

/// A document connection's document and limits.
pub(super) struct DocClient {
    doc: Arc<OpenDoc>,
    /// Whether its updates are applied (its token's `docs` claim).
    writable: bool,
    /// Its own rate limit: document clients send an update per keystroke, so they are not
    /// held to the per-user message rate.
    rate: Option<TokenBucket>,
}

impl Session {
    /// Opens the connection's document (one that cannot be loaded closes it, 1011).
    pub(super) fn open_document(&mut self, access: DocAccess) {
        let hub = self.hub();
        let doc = hub.open_document(&access.name, &self.handle);
        let rate = hub.config().documents.rate;
        let now = hub.now_ms();
        self.set_aside(Aside::Document(DocClient {
            doc,
            writable: access.writable,
            rate: rate.map(|rate| TokenBucket::new(rate, now)),
        }));
    }

    /// Handles one binary message of a document connection.
    pub(super) fn on_document_message(&mut self, data: &[u8]) {
        self.hub().counters().count_in(InKind::Document);
        if !self.take_document_token() {
            return;
        }
        let Some(client) = self.document() else {
            return;
        };
        let command = match yjs::decode(data) {
            Ok(Message::SyncStep1(state_vector)) => DocCommand::SyncStep1(state_vector),
            Ok(Message::SyncStep2(update) | Message::Update(update)) => {
                if !client.writable && update != yjs::EMPTY_UPDATE {
                    self.close_with(CloseCode::Policy, "read-only document".into());
                    return;
                }
                DocCommand::Update(update)
            }
            Ok(Message::Awareness(entries)) => DocCommand::Awareness(entries),
            Ok(Message::QueryAwareness) => DocCommand::QueryAwareness,
            Err(error) => {
                let code = match error {
                    DecodeError::Malformed(_) => CloseCode::InvalidPayload,
                    DecodeError::UnknownType(_) | DecodeError::UnknownSyncType(_) => {
                        CloseCode::Unsupported
                    }
                };
                self.close_with(code, error.to_string());
                return;
            }
        };
        let doc = client.doc.clone();
        if let Err(error) = self.hub().document_command(&doc, &self.handle, command) {
            tracing::debug!(conn = %self.handle.id(), %error, "document message refused");
            self.close_with(error.close_code(), error.to_string());
        }
    }

    /// A text message on a document connection: y-websocket sends binary messages only.
    pub(super) fn on_document_text(&mut self) {
        self.hub().counters().count_in(InKind::Invalid);
        self.close_with(
            CloseCode::Unsupported,
            "y-websocket messages are binary".into(),
        );
    }

    /// Takes one of the document connection's rate tokens; without one, closes it (1008).
    pub(super) fn take_document_token(&mut self) -> bool {
        let now = self.hub().now_ms();
        let Some(rate) = self.document_mut().and_then(|client| client.rate.as_mut()) else {
            return true;
        };
        if rate.try_take(now).is_ok() {
            return true;
        }
        Counters::add(&self.hub().counters().rate_limited, 1);
        self.close_with(CloseCode::Policy, "rate limit exceeded".into());
        false
    }

    /// Leaves the document, if the connection has one open.
    pub(super) fn close_document(&mut self) {
        let document = self.take_aside(|aside| matches!(aside, Aside::Document(_)));
        if let Some(Aside::Document(client)) = document {
            self.hub().close_document(&client.doc, self.handle.id());
        }
    }

    /// Closes the connection after what is queued, with `code` and `reason`.
    fn close_with(&self, code: CloseCode, reason: String) {
        let request = CloseRequest {
            code,
            reason: Cow::Owned(reason),
            graceful: true,
        };
        self.handle.close(request, self.hub().now_ms());
    }
}
