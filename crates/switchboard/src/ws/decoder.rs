//! Turns bytes read from a client into complete WebSocket messages.
//!
//! The decoder owns no read buffer. The connection reads into a buffer borrowed for the duration
//! of one read (see `connection::driver`), and the decoder parses complete frames straight out of
//! it, unmasking in place. Only the tail of a frame that has not fully arrived is copied into
//! `partial`, and only a fragmented message in progress is kept in `fragments`; both are released
//! as soon as they complete, so an idle connection holds no buffer at all.
//!
//! Limits are checked from the header, before any payload byte is buffered.

use super::Violation;
use super::frame::{self, Header, OpCode};

/// Size limits applied to incoming frames and messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest payload of a single frame.
    pub(crate) max_frame: usize,
    /// Largest payload of a whole (possibly fragmented) message.
    pub(crate) max_message: usize,
}

/// A complete message (or control frame) from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A close frame; `None` when it carried no status code.
    Close(Option<(u16, &'a str)>),
}

/// Whether the caller wants more messages from the current input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// A fragmented data message being assembled.
struct Fragments {
    text: bool,
    data: Vec<u8>,
    /// `data[..utf8_valid]` is known to be valid UTF-8 (text only), so invalid text fails fast.
    utf8_valid: usize,
}

/// Buffers above this capacity are released once the frame that needed them completes.
const KEEP_CAPACITY: usize = 4096;

/// Per-connection decoding state. Empty (no heap memory) between messages.
pub(crate) struct Decoder {
    limits: Limits,
    /// Bytes of a frame whose end has not arrived yet.
    partial: Vec<u8>,
    fragments: Option<Box<Fragments>>,
}

impl Decoder {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            partial: Vec::new(),
            fragments: None,
        }
    }

    /// Decodes `input` (bytes just read; unmasked in place), handing each complete message to
    /// `on_message`. Stops early, discarding the rest, when `on_message` returns [`Flow::Stop`].
    pub(crate) fn feed(
        &mut self,
        mut input: &mut [u8],
        on_message: &mut dyn FnMut(Message<'_>) -> Flow,
    ) -> Result<Flow, Violation> {
        if !self.partial.is_empty() {
            let mut partial = std::mem::take(&mut self.partial);
            let taken = self.complete_partial(&mut partial, input)?;
            input = &mut input[taken..];
            match parse_header(&partial, self.limits)? {
                Some(header) if partial.len() == header.frame_len() => {
                    let flow = self.frame(header, &mut partial[header.header_len..], on_message)?;
                    partial.clear();
                    if partial.capacity() <= KEEP_CAPACITY {
                        self.partial = partial;
                    }
                    if flow == Flow::Stop || input.is_empty() {
                        return Ok(flow);
                    }
                }
                _ => {
                    // `input` is used up and the frame is still incomplete.
                    self.partial = partial;
                    return Ok(Flow::Continue);
                }
            }
        }
        loop {
            let Some(header) = parse_header(input, self.limits)? else {
                self.partial.extend_from_slice(input);
                return Ok(Flow::Continue);
            };
            let len = header.frame_len();
            if input.len() < len {
                // Grows with what arrives, not with what the header claims.
                self.partial.extend_from_slice(input);
                return Ok(Flow::Continue);
            }
            let (this, rest) = input.split_at_mut(len);
            if self.frame(header, &mut this[header.header_len..], on_message)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
            if rest.is_empty() {
                return Ok(Flow::Continue);
            }
            input = rest;
        }
    }

    /// Moves as many bytes of `input` into `partial` as the pending frame still needs, never
    /// more; returns how many it took.
    fn complete_partial(&self, partial: &mut Vec<u8>, input: &[u8]) -> Result<usize, Violation> {
        let mut taken = 0;
        loop {
            let want = match parse_header(partial, self.limits)? {
                Some(header) => header.frame_len(),
                None => frame::header_len_hint(partial),
            };
            let chunk = want.saturating_sub(partial.len()).min(input.len() - taken);
            if chunk == 0 {
                return Ok(taken);
            }
            partial.extend_from_slice(&input[taken..taken + chunk]);
            taken += chunk;
        }
    }

    /// Handles one complete frame whose (still masked) payload is `payload`.
    fn frame(
        &mut self,
        header: Header,
        payload: &mut [u8],
        on_message: &mut dyn FnMut(Message<'_>) -> Flow,
    ) -> Result<Flow, Violation> {
        frame::apply_mask(payload, header.mask);
        match header.opcode {
            OpCode::Ping => Ok(on_message(Message::Ping(payload))),
            OpCode::Pong => Ok(on_message(Message::Pong(payload))),
            OpCode::Close => Ok(on_message(Message::Close(parse_close(payload)?))),
            OpCode::Text | OpCode::Binary => {
                if self.fragments.is_some() {
                    return Err(Violation::Protocol(
                        "new data frame while a fragmented message is unfinished",
                    ));
                }
                let text = header.opcode == OpCode::Text;
                if header.fin {
                    return deliver(text, payload, on_message);
                }
                let mut fragments = Box::new(Fragments {
                    text,
                    data: payload.to_vec(),
                    utf8_valid: 0,
                });
                fragments.check_utf8_prefix()?;
                self.fragments = Some(fragments);
                Ok(Flow::Continue)
            }
            OpCode::Continuation => {
                let Some(mut fragments) = self.fragments.take() else {
                    return Err(Violation::Protocol("continuation frame without a message"));
                };
                if fragments.data.len() + payload.len() > self.limits.max_message {
                    return Err(Violation::TooBig);
                }
                fragments.data.extend_from_slice(payload);
                fragments.check_utf8_prefix()?;
                if header.fin {
                    deliver(fragments.text, &fragments.data, on_message)
                } else {
                    self.fragments = Some(fragments);
                    Ok(Flow::Continue)
                }
            }
        }
    }
}

/// Parses a header and applies the frame-size limit before anything is buffered.
fn parse_header(buf: &[u8], limits: Limits) -> Result<Option<Header>, Violation> {
    match frame::parse_header(buf)? {
        Some(header) if header.payload_len > limits.max_frame as u64 => Err(Violation::TooBig),
        other => Ok(other),
    }
}

fn deliver(
    text: bool,
    payload: &[u8],
    on_message: &mut dyn FnMut(Message<'_>) -> Flow,
) -> Result<Flow, Violation> {
    if text {
        let text = std::str::from_utf8(payload).map_err(|_| Violation::InvalidUtf8)?;
        Ok(on_message(Message::Text(text)))
    } else {
        Ok(on_message(Message::Binary(payload)))
    }
}

impl Fragments {
    /// Validates the text received so far, allowing only an incomplete character at the end.
    fn check_utf8_prefix(&mut self) -> Result<(), Violation> {
        if !self.text {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.utf8_valid..]) {
            Ok(_) => self.utf8_valid = self.data.len(),
            Err(e) if e.error_len().is_none() => self.utf8_valid += e.valid_up_to(),
            Err(_) => return Err(Violation::InvalidUtf8),
        }
        Ok(())
    }
}

/// Validates a close frame's payload: empty, or a status code a peer may send plus UTF-8 text.
fn parse_close(payload: &[u8]) -> Result<Option<(u16, &str)>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(Violation::Protocol("close frame with a 1-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_is_valid(code) {
                return Err(Violation::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| Violation::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// Close codes a peer may put on the wire (RFC 6455 §7.4, IANA registry): 1004-1006 and 1015
/// are reserved for local use, 1016-2999 are unassigned, 3000-4999 belong to applications.
fn close_code_is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A decoded message that owns its bytes, for comparing decodings (the tests and the fuzz
/// target).
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OwnedMessage {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

#[cfg(any(test, feature = "fuzzing"))]
impl From<Message<'_>> for OwnedMessage {
    fn from(message: Message<'_>) -> Self {
        match message {
            Message::Text(text) => Self::Text(text.to_owned()),
            Message::Binary(data) => Self::Binary(data.to_vec()),
            Message::Ping(data) => Self::Ping(data.to_vec()),
            Message::Pong(data) => Self::Pong(data.to_vec()),
            Message::Close(status) => {
                Self::Close(status.map(|(code, reason)| (code, reason.to_owned())))
            }
        }
    }
}

#[cfg(test)]
#[path = "decoder_tests.rs"]
mod tests;
