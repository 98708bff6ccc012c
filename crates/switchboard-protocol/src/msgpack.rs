//! The MessagePack form of protocol v1 (subprotocol [`SUBPROTOCOL`], DESIGN.md §9): transcoding
//! between a frame's JSON text and its MessagePack bytes, both ways, for the server and the
//! clients alike.
//!
//! The two forms carry the same object: maps with the same string keys in the same order,
//! arrays, strings, integers, floats, booleans and null. MessagePack `bin` (bytes) has no JSON
//! type: its JSON form is `{"$bytes": "<standard base64, padded>"}` ([`BYTES_KEY`]), and a JSON
//! map of exactly that shape becomes `bin` again. So bytes survive everything that keeps the
//! JSON form (history, cluster envelopes, Redis streams) and reach a MessagePack client as
//! bytes, while a JSON client gets a compact string it can decode.
//!
//! Not here: frames, sockets, or what a frame means. Both directions refuse what JSON cannot
//! hold (extension types, NaN and infinities, non-string map keys) with a [`MsgPackError`],
//! and bound nesting at [`MAX_DEPTH`] so that hostile input cannot overflow the stack.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt::{self, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rmp::Marker;
use rmp::encode::{ByteBuf, ValueWriteError};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The `Sec-WebSocket-Protocol` value that selects MessagePack frames.
pub const SUBPROTOCOL: &str = "switchboard.v1.msgpack";

/// The key of the one-entry map that stands for MessagePack bytes in JSON.
pub const BYTES_KEY: &str = "$bytes";

/// How deep arrays and maps may nest in a MessagePack frame. Below serde_json's own limit
/// (128), which the JSON form must still pass after a `bin` became a one-entry map.
pub const MAX_DEPTH: usize = 100;

/// Why a frame could not be transcoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgPackError {
    /// The input ended inside a value.
    #[error("truncated MessagePack: the frame ends inside a value")]
    Truncated,
    /// Bytes were left after the first value.
    #[error("invalid MessagePack: {0} bytes after the frame's value")]
    TrailingBytes(usize),
    /// The reserved marker 0xc1.
    #[error("invalid MessagePack: reserved marker 0xc1")]
    Reserved,
    /// An extension type (`ext`, `fixext`): the protocol has none.
    #[error("MessagePack extension types are not supported")]
    Extension,
    /// A map key that is not a string.
    #[error("MessagePack map keys must be strings")]
    KeyNotString,
    /// A string that is not UTF-8.
    #[error("invalid MessagePack: a string is not valid UTF-8")]
    Utf8,
    /// NaN or an infinity, which JSON cannot hold.
    #[error("MessagePack floats must be finite")]
    NotFinite,
    /// Arrays and maps nested deeper than [`MAX_DEPTH`].
    #[error("MessagePack nesting is deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The JSON side was not valid JSON (a server fault when the server wrote it).
    #[error("invalid JSON: {0}")]
    Json(String),
}

/// The MessagePack form of the JSON text `json`.
pub fn from_json(json: &[u8]) -> Result<Vec<u8>, MsgPackError> {
    let value: Json<'_> =
        serde_json::from_slice(json).map_err(|e| MsgPackError::Json(e.to_string()))?;
    let mut out = ByteBuf::with_capacity(json.len());
    write_value(&mut out, &value);
    Ok(out.into_vec())
}

/// The JSON text of the MessagePack value `data` (exactly one value, nothing after it).
pub fn to_json(data: &[u8]) -> Result<String, MsgPackError> {
    let mut reader = Reader { data, at: 0 };
    // Most of a frame is strings, which keep their size; small ints and markers grow a little.
    let mut out = String::with_capacity(data.len() + data.len() / 4);
    reader.value(&mut out, 0)?;
    match data.len() - reader.at {
        0 => Ok(out),
        left => Err(MsgPackError::TrailingBytes(left)),
    }
}

/// A JSON value that keeps its keys' order and borrows its strings where it can.
enum Json<'a> {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Unsigned(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Signed(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((Key(key), value)) = map.next_entry()? {
            entries.push((key, value));
        }
        Ok(Json::Object(entries))
    }
}

/// A map key, borrowed from the input unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Writing into a `ByteBuf` cannot fail.
fn written<T>(result: Result<T, ValueWriteError<Infallible>>) {
    if let Err(
        ValueWriteError::InvalidMarkerWrite(never) | ValueWriteError::InvalidDataWrite(never),
    ) = result
    {
        match never {}
    }
}

/// The bytes a `{"$bytes": "<base64>"}` map stands for, if it is one.
fn as_bytes(entries: &[(Cow<'_, str>, Json<'_>)]) -> Option<Vec<u8>> {
    match entries {
        [(key, Json::Str(encoded))] if key == BYTES_KEY => STANDARD.decode(&**encoded).ok(),
        _ => None,
    }
}

fn write_value(out: &mut ByteBuf, value: &Json<'_>) {
    match value {
        Json::Null => {
            written(rmp::encode::write_nil(out).map_err(ValueWriteError::InvalidMarkerWrite))
        }
        Json::Bool(v) => {
            written(rmp::encode::write_bool(out, *v).map_err(ValueWriteError::InvalidMarkerWrite));
        }
        Json::Unsigned(v) => written(rmp::encode::write_uint(out, *v)),
        Json::Signed(v) => written(rmp::encode::write_sint(out, *v)),
        Json::Float(v) => written(rmp::encode::write_f64(out, *v)),
        Json::Str(v) => written(rmp::encode::write_str(out, v)),
        Json::Array(items) => {
            written(rmp::encode::write_array_len(out, len32(items.len())));
            for item in items {
                write_value(out, item);
            }
        }
        Json::Object(entries) => {
            if let Some(bytes) = as_bytes(entries) {
                written(rmp::encode::write_bin(out, &bytes));
                return;
            }
            written(rmp::encode::write_map_len(out, len32(entries.len())));
            for (key, value) in entries {
                written(rmp::encode::write_str(out, key));
                write_value(out, value);
            }
        }
    }
}

/// A length for a MessagePack header. The JSON text is far below 4 GiB (frames are limited),
/// so a longer array or map cannot occur; saturating keeps this total.
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// A cursor over a MessagePack frame that writes the JSON form of what it reads.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgPackError> {
        let end = self.at.checked_add(n).ok_or(MsgPackError::Truncated)?;
        let taken = self.data.get(self.at..end).ok_or(MsgPackError::Truncated)?;
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MsgPackError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, MsgPackError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, MsgPackError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, MsgPackError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn str(&mut self, len: u32) -> Result<&'a str, MsgPackError> {
        std::str::from_utf8(self.take(len as usize)?).map_err(|_| MsgPackError::Utf8)
    }

    /// Reads one value at nesting `depth` and writes its JSON form to `out`.
    fn value(&mut self, out: &mut String, depth: usize) -> Result<(), MsgPackError> {
        let marker = Marker::from_u8(self.u8()?);
        match marker {
            Marker::Null => out.push_str("null"),
            Marker::True => out.push_str("true"),
            Marker::False => out.push_str("false"),
            Marker::FixPos(v) => number(out, v),
            Marker::FixNeg(v) => number(out, v),
            Marker::U8 => number(out, self.u8()?),
            Marker::U16 => number(out, self.u16()?),
            Marker::U32 => number(out, self.u32()?),
            Marker::U64 => number(out, u64::from_be_bytes(self.array()?)),
            Marker::I8 => number(out, i8::from_be_bytes(self.array()?)),
            Marker::I16 => number(out, i16::from_be_bytes(self.array()?)),
            Marker::I32 => number(out, i32::from_be_bytes(self.array()?)),
            Marker::I64 => number(out, i64::from_be_bytes(self.array()?)),
            Marker::F32 => float(out, f64::from(f32::from_be_bytes(self.array()?)))?,
            Marker::F64 => float(out, f64::from_be_bytes(self.array()?))?,
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                let len = self.length(marker)?;
                string(out, self.str(len)?);
            }
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                let len = self.length(marker)?;
                self.bin(out, len)?;
            }
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                let len = self.length(marker)?;
                self.seq(out, len, depth)?;
            }
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                let len = self.length(marker)?;
                self.map(out, len, depth)?;
            }
            Marker::Reserved => return Err(MsgPackError::Reserved),
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => return Err(MsgPackError::Extension),
        }
        Ok(())
    }

    /// The length that follows a string, bytes, array or map marker (0 for any other).
    fn length(&mut self, marker: Marker) -> Result<u32, MsgPackError> {
        Ok(match marker {
            Marker::FixStr(len) | Marker::FixArray(len) | Marker::FixMap(len) => u32::from(len),
            Marker::Str8 | Marker::Bin8 => u32::from(self.u8()?),
            Marker::Str16 | Marker::Bin16 | Marker::Array16 | Marker::Map16 => {
                u32::from(self.u16()?)
            }
            Marker::Str32 | Marker::Bin32 | Marker::Array32 | Marker::Map32 => self.u32()?,
            _ => 0,
        })
    }

    fn bin(&mut self, out: &mut String, len: u32) -> Result<(), MsgPackError> {
        let bytes = self.take(len as usize)?;
        out.push_str("{\"");
        out.push_str(BYTES_KEY);
        out.push_str("\":\"");
        STANDARD.encode_string(bytes, out);
        out.push_str("\"}");
        Ok(())
    }

    /// An array of `len` items. Nothing is reserved from `len`: a lying header runs out of
    /// input (`Truncated`) before it can cost memory.
    fn seq(&mut self, out: &mut String, len: u32, depth: usize) -> Result<(), MsgPackError> {
        if depth >= MAX_DEPTH {
            return Err(MsgPackError::TooDeep);
        }
        out.push('[');
        for i in 0..len {
            if i > 0 {
                out.push(',');
            }
            self.value(out, depth + 1)?;
        }
        out.push(']');
        Ok(())
    }

    fn map(&mut self, out: &mut String, len: u32, depth: usize) -> Result<(), MsgPackError> {
        if depth >= MAX_DEPTH {
            return Err(MsgPackError::TooDeep);
        }
        out.push('{');
        for i in 0..len {
            if i > 0 {
                out.push(',');
            }
            let key = match Marker::from_u8(self.u8()?) {
                marker @ (Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32) => {
                    let len = self.length(marker)?;
                    self.str(len)?
                }
                _ => return Err(MsgPackError::KeyNotString),
            };
            string(out, key);
            out.push(':');
            self.value(out, depth + 1)?;
        }
        out.push('}');
        Ok(())
    }
}

fn number(out: &mut String, value: impl fmt::Display) {
    // Writing into a String cannot fail.
    let _ = write!(out, "{value}");
}

fn float(out: &mut String, value: f64) -> Result<(), MsgPackError> {
    if !value.is_finite() {
        return Err(MsgPackError::NotFinite);
    }
    // serde_json writes the shortest form that reads back as the same f64 (and `1.0` for 1).
    match serde_json::Number::from_f64(value) {
        Some(number) => {
            let _ = write!(out, "{number}");
            Ok(())
        }
        None => Err(MsgPackError::NotFinite),
    }
}

fn string(out: &mut String, value: &str) {
    // A `&str` always serializes; the escapes are serde_json's.
    if let Ok(quoted) = serde_json::to_string(value) {
        out.push_str(&quoted);
    }
}

#[cfg(test)]
#[path = "msgpack_tests.rs"]
mod tests;
