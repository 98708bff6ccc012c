//! Turns bytes read from a client into complete WebSocket messages.
//!
//! The decoder owns no read buffer. The connection reads into a buffer borrowed for the duration
//! of one read (see `connection::driver`), and the decoder parses complete frames straight out of
//! it, unmasking in place. Only the tail of a frame that has not fully arrived is copied into
//! `partial`, and only a fragmented message in progress is kept in `fragments`; both are released
//! as soon as they complete, so an idle connection holds no buffer at all.
//!
//! Limits are checked from the header, before any payload byte is buffered.
//!
//! A compressed message (permessage-deflate, RSV1 on its first frame, when negotiated) is
//! assembled compressed, as any other, and inflated whole when it completes, into the worker
//! thread's buffer (`ws::deflate`); the size limit then applies to the inflated size, and its
//! text is checked after inflation.
//!
//! Text fails fast: invalid UTF-8 is a violation as soon as its bytes arrive, not when the
//! message ends. A fragment is checked when it completes (`Fragments::utf8_valid`), and the
//! payload of a frame that arrives over several reads is unmasked and checked read by read
//! (`Decoding::arriving`); a character split across fragments or reads is fine. A frame that
//! arrives whole is checked once, when it is delivered. The check of an arriving frame needs no
//! state of its own: the bytes of `partial` before this read are the ones already unmasked and
//! checked, and an incomplete character at their end (at most 3 bytes) is found again from them.

use super::Violation;
use super::deflate;
use super::frame::{self, Header, OpCode};

/// Size limits applied to incoming frames and messages, and what was negotiated. The sizes are
/// `u32` (the configuration caps them at 1 GiB) so that the flag fits in the room they leave:
/// every connection's task holds one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest payload of a single frame.
    pub(crate) max_frame: u32,
    /// Largest payload of a whole (possibly fragmented) message, inflated if it was compressed.
    pub(crate) max_message: u32,
    /// permessage-deflate was negotiated: messages with RSV1 are inflated. Without it RSV1 is
    /// a protocol error.
    pub(crate) deflate: bool,
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

/// How far [`Unfinished::feed_until`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Whether the caller stopped it.
    pub(crate) flow: Flow,
    /// Bytes at the end of the input left unread (only after a stop).
    pub(crate) unread: usize,
}

impl Fed {
    fn new(flow: Flow, unread: usize) -> Self {
        Self { flow, unread }
    }
}

/// A fragmented data message being assembled.
struct Fragments {
    text: bool,
    /// `data` is compressed: it is inflated (and its text checked) when the message ends.
    compressed: bool,
    data: Vec<u8>,
    /// `data[..utf8_valid]` is known to be valid UTF-8 (text only), so invalid text fails fast.
    utf8_valid: usize,
}

/// Within one read, a partial frame's buffer above this capacity is released once that frame
/// completes rather than reused for a frame the read ends in; between reads, [`Unfinished`]
/// keeps no buffer unless a frame is incomplete.
const KEEP_CAPACITY: usize = 4096;

/// A connection's decoding state between reads, in one word: nothing, or (boxed) the parts of
/// a frame or a fragmented message that has not fully arrived. The connection's task keeps
/// this and nothing else of the decoder; it reads its limits from the configuration on each
/// read, so an idle connection's task holds one null pointer here
/// (`connection::tests::the_connection_task_stays_small`).
#[derive(Default)]
pub(crate) struct Unfinished(Option<Box<Parts>>);

/// What [`Unfinished`] keeps while something has not fully arrived.
#[derive(Default)]
struct Parts {
    /// Bytes of a frame whose end has not arrived yet.
    partial: Vec<u8>,
    fragments: Option<Fragments>,
}

impl Unfinished {
    /// Decodes `input` (bytes just read; unmasked in place) under `limits`, handing each
    /// complete message to `on_message`, and says how many bytes at the end of `input` it left
    /// unread when `on_message` stopped it ([`Flow::Stop`]): they start at a frame's first
    /// byte, still masked, so the caller may keep them and feed them later (a connection that
    /// pauses its reading). What is left incomplete is boxed; nothing is kept otherwise.
    pub(crate) fn feed_until(
        &mut self,
        limits: Limits,
        input: &mut [u8],
        on_message: &mut dyn FnMut(Message<'_>) -> Flow,
    ) -> Result<Fed, Violation> {
        let Some(parts) = self.0.as_deref_mut() else {
            let mut parts = Parts::default();
            let fed = Decoding::new(limits, &mut parts).feed_until(input, on_message);
            if parts.unfinished() {
                self.0 = Some(Box::new(parts));
            }
            return fed;
        };
        // A frame that straddles many reads keeps its box from one read to the next.
        let fed = Decoding::new(limits, parts).feed_until(input, on_message);
        if !parts.unfinished() {
            self.0 = None;
        }
        fed
    }
}

impl Parts {
    /// Whether a frame or a fragmented message has not fully arrived.
    fn unfinished(&self) -> bool {
        !self.partial.is_empty() || self.fragments.is_some()
    }
}

/// A decoder that holds its limits: for the short exchanges outside a connection's task (a
/// refusal's close handshake, the wait for `auth`), the tests and the fuzz target.
pub(crate) struct Decoder {
    limits: Limits,
    unfinished: Unfinished,
}

impl Decoder {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            unfinished: Unfinished::default(),
        }
    }

    /// Decodes `input` (bytes just read; unmasked in place), handing each complete message to
    /// `on_message`. Stops early, discarding the rest, when `on_message` returns [`Flow::Stop`].
    pub(crate) fn feed(
        &mut self,
        input: &mut [u8],
        on_message: &mut dyn FnMut(Message<'_>) -> Flow,
    ) -> Result<Flow, Violation> {
        self.feed_until(input, on_message).map(|fed| fed.flow)
    }

    /// As [`Unfinished::feed_until`], under this decoder's limits.
    pub(crate) fn feed_until(
        &mut self,
        input: &mut [u8],
        on_message: &mut dyn FnMut(Message<'_>) -> Flow,
    ) -> Result<Fed, Violation> {
        self.unfinished.feed_until(self.limits, input, on_message)
    }
}

/// One read's decoding: the limits, and what is unfinished (in its box, or on the stack of a
/// read that began with nothing unfinished).
struct Decoding<'a> {
    limits: Limits,
    parts: &'a mut Parts,
}

impl<'a> Decoding<'a> {
    fn new(limits: Limits, parts: &'a mut Parts) -> Self {
        Self { limits, parts }
    }

    fn feed_until(
        &mut self,
        mut input: &mut [u8],
        on_message: &mut dyn FnMut(Message<'_>) -> Flow,
    ) -> Result<Fed, Violation> {
        if !self.parts.partial.is_empty() {
            let mut partial = std::mem::take(&mut self.parts.partial);
            let before = partial.len();
            let taken = self.complete_partial(&mut partial, input)?;
            input = &mut input[taken..];
            match parse_header(&partial, self.limits)? {
                Some(header) if partial.len() == header.frame_len() => {
                    let unmasked = before.saturating_sub(header.header_len);
                    let payload = &mut partial[header.header_len..];
                    let flow = self.frame(header, payload, unmasked, on_message)?;
                    partial.clear();
                    if partial.capacity() <= KEEP_CAPACITY {
                        self.parts.partial = partial;
                    }
                    if flow == Flow::Stop || input.is_empty() {
                        return Ok(Fed::new(flow, input.len()));
                    }
                }
                header => {
                    // `input` is used up and the frame is still incomplete.
                    if let Some(header) = header {
                        let unmasked = before.saturating_sub(header.header_len);
                        self.arriving(header, &mut partial[header.header_len..], unmasked)?;
                    }
                    self.parts.partial = partial;
                    return Ok(Fed::new(Flow::Continue, 0));
                }
            }
        }
        loop {
            let Some(header) = parse_header(input, self.limits)? else {
                self.parts.partial.extend_from_slice(input);
                return Ok(Fed::new(Flow::Continue, 0));
            };
            let len = header.frame_len();
            if input.len() < len {
                self.arriving(header, &mut input[header.header_len..], 0)?;
                // Grows with what arrives, not with what the header claims.
                self.parts.partial.extend_from_slice(input);
                return Ok(Fed::new(Flow::Continue, 0));
            }
            let (this, rest) = input.split_at_mut(len);
            if self.frame(header, &mut this[header.header_len..], 0, on_message)? == Flow::Stop {
                return Ok(Fed::new(Flow::Stop, rest.len()));
            }
            if rest.is_empty() {
                return Ok(Fed::new(Flow::Continue, 0));
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

    /// Unmasks the bytes of an incomplete frame's payload that arrived with this read,
    /// `payload[unmasked..]`, and checks them if the frame carries text that is valid so far:
    /// text that is invalid already fails now, not when the frame completes.
    ///
    /// Only a frame that passes the rules `frame` checks before the text is checked here, so the
    /// violation is the same however the frame's bytes were split into reads (the fuzz target's
    /// invariant): invalid bytes stay invalid whatever follows them.
    fn arriving(
        &self,
        header: Header,
        payload: &mut [u8],
        unmasked: usize,
    ) -> Result<(), Violation> {
        let (checked, arrived) = payload.split_at_mut(unmasked);
        apply_mask_at(arrived, header.mask, unmasked);
        // The incomplete character that ends the text of the earlier fragments, if any.
        let carried: &[u8] = match (header.opcode, &self.parts.fragments) {
            (OpCode::Text, None) if !header.compressed => &[],
            (OpCode::Continuation, Some(fragments))
                if fragments.text
                    && !fragments.compressed
                    && fragments.data.len() as u64 + header.payload_len
                        <= u64::from(self.limits.max_message) =>
            {
                &fragments.data[fragments.utf8_valid..]
            }
            // Binary, compressed, or a frame that breaks a rule `frame` checks once it is
            // complete.
            _ => return Ok(()),
        };
        // The last 3 bytes of the text checked so far hold any incomplete character.
        let recent = &checked[checked.len().saturating_sub(3)..];
        let carried = &carried[carried.len().saturating_sub(3 - recent.len())..];
        let mut last = [0; 3];
        last[..carried.len()].copy_from_slice(carried);
        last[carried.len()..carried.len() + recent.len()].copy_from_slice(recent);
        let last = &last[..carried.len() + recent.len()];
        check_utf8_after(&last[last.len() - incomplete_char_len(last)..], arrived)
    }

    /// Handles one complete frame whose payload is `payload`, still masked from `unmasked` on
    /// (the bytes before were unmasked as they arrived).
    fn frame(
        &mut self,
        header: Header,
        payload: &mut [u8],
        unmasked: usize,
        on_message: &mut dyn FnMut(Message<'_>) -> Flow,
    ) -> Result<Flow, Violation> {
        apply_mask_at(&mut payload[unmasked..], header.mask, unmasked);
        match header.opcode {
            OpCode::Ping => Ok(on_message(Message::Ping(payload))),
            OpCode::Pong => Ok(on_message(Message::Pong(payload))),
            OpCode::Close => Ok(on_message(Message::Close(parse_close(payload)?))),
            OpCode::Text | OpCode::Binary => {
                if self.parts.fragments.is_some() {
                    return Err(Violation::Protocol(
                        "new data frame while a fragmented message is unfinished",
                    ));
                }
                let text = header.opcode == OpCode::Text;
                if header.fin {
                    return self.deliver(text, header.compressed, payload, on_message);
                }
                let mut fragments = Fragments {
                    text,
                    compressed: header.compressed,
                    data: payload.to_vec(),
                    utf8_valid: 0,
                };
                fragments.check_utf8_prefix()?;
                self.parts.fragments = Some(fragments);
                Ok(Flow::Continue)
            }
            OpCode::Continuation => {
                let Some(mut fragments) = self.parts.fragments.take() else {
                    return Err(Violation::Protocol("continuation frame without a message"));
                };
                if fragments.data.len() + payload.len() > self.limits.max_message as usize {
                    return Err(Violation::TooBig);
                }
                fragments.data.extend_from_slice(payload);
                fragments.check_utf8_prefix()?;
                if header.fin {
                    self.deliver(
                        fragments.text,
                        fragments.compressed,
                        &fragments.data,
                        on_message,
                    )
                } else {
                    self.parts.fragments = Some(fragments);
                    Ok(Flow::Continue)
                }
            }
        }
    }
}

impl Decoding<'_> {
    /// Hands a complete data message to `on_message`, inflated first if it is compressed.
    fn deliver(
        &self,
        text: bool,
        compressed: bool,
        payload: &[u8],
        on_message: &mut dyn FnMut(Message<'_>) -> Flow,
    ) -> Result<Flow, Violation> {
        if !compressed {
            return deliver(text, payload, on_message);
        }
        deflate::with_inflated(payload, self.limits.max_message as usize, |inflated| {
            deliver(text, inflated, on_message)
        })
    }
}

/// Parses a header and applies the frame-size limit before anything is buffered; RSV1 is a
/// protocol error unless permessage-deflate was negotiated.
fn parse_header(buf: &[u8], limits: Limits) -> Result<Option<Header>, Violation> {
    match frame::parse_header(buf)? {
        Some(header) if header.compressed && !limits.deflate => Err(Violation::Protocol(
            "reserved bits set without a negotiated extension",
        )),
        Some(header) if header.payload_len > u64::from(limits.max_frame) => Err(Violation::TooBig),
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

/// Unmasks `payload`, whose first byte is at `offset` in its frame's payload.
fn apply_mask_at(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut mask = mask;
    mask.rotate_left(offset % 4);
    frame::apply_mask(payload, mask);
}

impl Fragments {
    /// Validates the text received so far, allowing only an incomplete character at the end
    /// (compressed text is checked once inflated).
    fn check_utf8_prefix(&mut self) -> Result<(), Violation> {
        if self.text && !self.compressed {
            self.utf8_valid += utf8_valid_up_to(&self.data[self.utf8_valid..])?;
        }
        Ok(())
    }
}

/// How many leading bytes of `bytes` are complete UTF-8 characters, when the rest is at most
/// the start of one more (text that may continue); a violation when they are not UTF-8.
fn utf8_valid_up_to(bytes: &[u8]) -> Result<usize, Violation> {
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(bytes.len()),
        Err(e) if e.error_len().is_none() => Ok(e.valid_up_to()),
        Err(_) => Err(Violation::InvalidUtf8),
    }
}

/// Checks `bytes`, which continue text that ends with `pending`, the start of a character (at
/// most 3 bytes; empty when the text ends on a character boundary): the whole must be UTF-8,
/// except perhaps for an incomplete character at the end.
fn check_utf8_after(pending: &[u8], bytes: &[u8]) -> Result<(), Violation> {
    let mut rest = bytes;
    if let Some(&lead) = pending.first() {
        // Complete the pending character first, in a buffer of its own (at most 4 bytes).
        let take = (utf8_width(lead) - pending.len()).min(rest.len());
        let mut joined = [0; 4];
        joined[..pending.len()].copy_from_slice(pending);
        joined[pending.len()..pending.len() + take].copy_from_slice(&rest[..take]);
        utf8_valid_up_to(&joined[..pending.len() + take])?;
        rest = &rest[take..];
    }
    utf8_valid_up_to(rest).map(drop)
}

/// The length of the incomplete character that ends `text` (0 to 3 bytes), where `text` is the
/// end of UTF-8 text that is valid except perhaps for such a character.
fn incomplete_char_len(text: &[u8]) -> usize {
    // An incomplete character is at most 3 bytes, starting with its lead byte: find the last
    // byte that is not a continuation byte (0b10xx_xxxx) and see whether its character ends.
    for (back, &byte) in text.iter().rev().take(3).enumerate() {
        if byte & 0xC0 != 0x80 {
            return if back + 1 < utf8_width(byte) {
                back + 1
            } else {
                0
            };
        }
    }
    0
}

/// The length of the character a UTF-8 lead byte starts (1 for ASCII and for invalid bytes,
/// which `from_utf8` rejects anyway).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
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
