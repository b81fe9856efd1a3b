//! The JSON wire form of [`Message`] (protocol 1.0) and the wrapper rule.
//! The reader of every form a peer may send is in `read.rs`.
//!
//! **Writing** (`Serialize`) produces what async Reflow 1.0 reads: its
//! `Message` is a serde enum tagged `type` with content `data`, so
//!
//! | kind | written as |
//! |---|---|
//! | Flow | `{"type": "Flow"}` |
//! | Boolean, Integer, Float, String, Error | `{"type": K, "data": value}` |
//! | Object, Event, Any, Optional(Some) | `{"type": K, "data": {"data": [bytes of the JSON text]}}` |
//! | Array | `{"type": "Array", "data": [{"data": [bytes]}, …]}`, one wrapper per element |
//! | Optional(None) | `{"type": "Optional", "data": null}` |
//! | Bytes | `{"type": "Stream", "data": [numbers 0..=255]}` |
//! | RemoteReference | `{"type": "RemoteReference", "data": {"network_id", "actor_id", "port"}}` |
//!
//! `Bytes` goes as `Stream` because that is Reflow's raw-bytes kind: its
//! `Encoded` holds an encoded Reflow message and Reflow decodes it as such.
//! A `StreamHandle` or a non-finite `Float` has no 1.0 form (Reflow has no
//! handle kind; JSON has no NaN, and serde_json would write `null`, which
//! Reflow drops): serialising one fails with an error that names the kind.
//!
//! **Reading** (`Deserialize`) accepts the 1.0 wrapper form and the inline
//! form alike, for the whole value and for each `Array` element. The
//! wrapper rule: a value is unwrapped when it is an object with exactly one
//! field, `data`, holding an array of numbers 0..=255 that are valid UTF-8
//! JSON text; anything else (a `data` that is not such an array, bytes that
//! are not JSON, a second field) is taken as it is. So an inline value that
//! happens to have that exact shape is read as a wrapper; the inline writer
//! (`inline.rs`) wraps such values itself, so our own peers never lose one.
//! Reflow 1.0's `Stream` and `Encoded` become `Bytes` (the bytes unchanged,
//! `Encoded` is not decoded) and its `NetworkEvent {event_type, data}` becomes
//! `Event({"event_type": …, "data": …})`. An unknown kind is an error.

use serde::Serialize;
use serde::ser::{Error as _, SerializeMap, SerializeStruct, Serializer};
use serde_json::{Map, Value};

use super::Message;

impl Message {
    /// Whether this message has a protocol 1.0 form, i.e. whether a Reflow
    /// 1.0 peer can read it. `Err` says why not: a `StreamHandle` (1.0 has
    /// no such kind) or a `Float` that is NaN or infinite (JSON has no such
    /// number). `Serialize` fails with the same text, so a sender may check
    /// first or just encode.
    ///
    /// # Errors
    ///
    /// The reason, as text, when the message has no 1.0 form.
    pub fn check_v10(&self) -> Result<(), String> {
        match self {
            Message::StreamHandle(_) => Err(
                "StreamHandle has no protocol 1.0 form: a Reflow 1.0 peer cannot receive a stream handle"
                    .into(),
            ),
            Message::Float(x) if !x.is_finite() => Err(format!(
                "Float {x} has no JSON form: a Reflow 1.0 peer would drop it"
            )),
            _ => Ok(()),
        }
    }
}

impl Serialize for Message {
    /// The protocol 1.0 form (see the module docs); fails for a kind that
    /// has none, with [`Message::check_v10`]'s text.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // One match, literal names: this is the hot path of every send.
        match self {
            Message::Flow => {
                let mut s = serializer.serialize_struct("Message", 1)?;
                s.serialize_field("type", "Flow")?;
                s.end()
            }
            Message::Boolean(b) => tagged(serializer, "Boolean", b),
            Message::Integer(i) => tagged(serializer, "Integer", i),
            Message::Float(x) if x.is_finite() => tagged(serializer, "Float", x),
            Message::String(t) => tagged(serializer, "String", &**t),
            Message::Error(t) => tagged(serializer, "Error", &**t),
            Message::Event(v) => tagged(serializer, "Event", &Wrapped(&**v)),
            Message::Any(v) => tagged(serializer, "Any", &Wrapped(&**v)),
            Message::Object(map) => tagged(serializer, "Object", &Wrapped(&**map)),
            Message::Array(items) => tagged(serializer, "Array", &WrappedItems(items)),
            // `[u8]` is a sequence of numbers, as Reflow's `Vec<u8>`.
            Message::Bytes(bytes) => tagged(serializer, "Stream", &**bytes),
            Message::Optional(None) => tagged(serializer, "Optional", &None::<()>),
            Message::Optional(Some(v)) => tagged(serializer, "Optional", &Wrapped(&**v)),
            Message::RemoteReference(r) => tagged(serializer, "RemoteReference", &**r),
            Message::Float(_) | Message::StreamHandle(_) => {
                Err(S::Error::custom(self.check_v10().err().unwrap_or_default()))
            }
        }
    }
}

/// `{"type": kind, "data": data}`.
pub(super) fn tagged<S: Serializer, T: Serialize + ?Sized>(
    serializer: S,
    kind: &'static str,
    data: &T,
) -> Result<S::Ok, S::Error> {
    let mut s = serializer.serialize_struct("Message", 2)?;
    s.serialize_field("type", kind)?;
    s.serialize_field("data", data)?;
    s.end()
}

/// Reflow's wrapper: `{"data": [bytes of the JSON text of the value]}`.
pub(super) struct Wrapped<'a, T: ?Sized>(pub(super) &'a T);

impl<T: Serialize + ?Sized> Serialize for Wrapped<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_vec(self.0).map_err(S::Error::custom)?;
        // A map, not a struct: compact MessagePack writes structs as arrays.
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("data", &text[..])?;
        map.end()
    }
}

struct WrappedItems<'a>(&'a [Value]);

impl Serialize for WrappedItems<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Wrapped))
    }
}

/// The JSON value inside a wrapper-shaped map (see the module docs), or
/// `None` when `map` is not a wrapper.
pub(super) fn wrapped_json(map: &Map<String, Value>) -> Option<Value> {
    if map.len() != 1 {
        return None;
    }
    let bytes = bytes_of(map.get("data")?)?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether `value` would be read as a wrapper.
pub(super) fn looks_wrapped(value: &Value) -> bool {
    value.as_object().is_some_and(|map| wrapped_json(map).is_some())
}

/// `value` with one wrapper taken off, or as it is when it is none.
pub(super) fn unwrap_wrapper(value: Value) -> Value {
    match &value {
        Value::Object(map) => wrapped_json(map).unwrap_or(value),
        _ => value,
    }
}

fn bytes_of(value: &Value) -> Option<Vec<u8>> {
    value
        .as_array()?
        .iter()
        .map(|n| n.as_u64().and_then(|n| u8::try_from(n).ok()))
        .collect()
}
