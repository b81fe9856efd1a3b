//! The inline form of [`Message`], for peers of this project that negotiated
//! protocol 1.1 (MessagePack frames through `rmp-serde`).
//!
//! Same `{"type": KIND, "data": VALUE}` envelope as the 1.0 form, but every
//! kind keeps its own name (`Bytes`, `StreamHandle`) and data is the plain
//! value: Object, Event, Any, Optional(Some) and Array elements unwrapped,
//! `Bytes` as a byte string (`serialize_bytes`: MessagePack `bin`, a number
//! array in JSON), `StreamHandle` as its metadata `{"stream_id", "metadata"}`.
//!
//! A value that the reader would take for Reflow's wrapper (see `wire.rs`)
//! is written wrapped, and so is `Optional(Some(null))` (a bare `null` reads
//! as `None`): the reader unwraps once and gets the value back, so every
//! message round-trips. The reader is `Message`'s own `Deserialize`, which
//! takes both forms. In a human-readable format (JSON) a NaN or infinite
//! `Float` has no form and fails; MessagePack carries it.
//!
//! Use on a field: `#[serde(with = "crate::message::inline")]`, or wrap a
//! message in [`Inline`].

use serde::ser::{Error as _, SerializeStruct};
#[cfg(test)]
use serde::{Deserialize, Deserializer};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::Message;
use super::wire::{Wrapped, looks_wrapped, tagged, wrapped_json};

/// Writes `message` in the inline form; for `#[serde(serialize_with)]`.
pub(crate) fn serialize<S: Serializer>(message: &Message, serializer: S) -> Result<S::Ok, S::Error> {
    if let Message::Float(x) = message
        && !x.is_finite()
        && serializer.is_human_readable()
    {
        return Err(S::Error::custom(format!("Float {x} has no JSON form")));
    }
    let kind = message.type_name();
    match message {
        Message::Flow => {
            let mut s = serializer.serialize_struct("Message", 1)?;
            s.serialize_field("type", kind)?;
            s.end()
        }
        Message::Boolean(b) => tagged(serializer, kind, b),
        Message::Integer(i) => tagged(serializer, kind, i),
        Message::Float(x) => tagged(serializer, kind, x),
        Message::String(t) | Message::Error(t) => tagged(serializer, kind, &**t),
        Message::Event(v) | Message::Any(v) => tagged(serializer, kind, &Guarded(v)),
        Message::Object(map) if wrapped_json(map).is_some() => tagged(serializer, kind, &Wrapped(&**map)),
        Message::Object(map) => tagged(serializer, kind, &**map),
        Message::Array(items) => tagged(serializer, kind, &GuardedItems(items)),
        Message::Bytes(bytes) => tagged(serializer, kind, &ByteStr(bytes)),
        Message::Optional(None) => tagged(serializer, kind, &None::<()>),
        Message::Optional(Some(v)) if v.is_null() => tagged(serializer, kind, &Wrapped(&**v)),
        Message::Optional(Some(v)) => tagged(serializer, kind, &Guarded(v)),
        Message::RemoteReference(r) => tagged(serializer, kind, &**r),
        Message::StreamHandle(h) => tagged(serializer, kind, &h.metadata_value()),
    }
}

/// Reads either form; for `#[serde(deserialize_with)]`. The bridge's reader
/// decodes a whole `RemoteMessage`, so only the tests need this one.
#[cfg(test)]
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Message, D::Error> {
    Message::deserialize(deserializer)
}

/// A message that serialises in the inline form.
pub(crate) struct Inline<'a>(pub(crate) &'a Message);

impl Serialize for Inline<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(self.0, serializer)
    }
}

/// A JSON value as it is, or wrapped when the reader would take it for a
/// wrapper.
struct Guarded<'a>(&'a Value);

impl Serialize for Guarded<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if looks_wrapped(self.0) {
            Wrapped(self.0).serialize(serializer)
        } else {
            self.0.serialize(serializer)
        }
    }
}

struct GuardedItems<'a>(&'a [Value]);

impl Serialize for GuardedItems<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Guarded))
    }
}

struct ByteStr<'a>(&'a [u8]);

impl Serialize for ByteStr<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}
