//! `Message`: the values that flow between actors and across the bridge.
//!
//! Payloads are shared (`Arc`), so cloning a message for fan-out costs a
//! reference count, not a copy.
//!
//! On the wire a message is `{"type": KIND, "data": VALUE}` (`Flow` has no
//! `data`), in one of two forms:
//!
//! - **1.0 (JSON)**, what `Serialize` writes: the forms async Reflow 1.0 reads.
//!   JSON-valued kinds travel in Reflow's wrapper `{"data": [bytes of the JSON
//!   text]}`, `Bytes` travels as Reflow's `Stream`, and a kind 1.0 cannot
//!   carry makes serialisation fail ([`Message::check_v10`]). See `wire.rs`.
//! - **inline**, for peers that negotiated protocol 1.1: plain values, bytes
//!   as a byte string (`inline.rs`, crate-internal).
//!
//! `Deserialize` reads both forms, plus Reflow 1.0's `Stream`, `Encoded` and
//! `NetworkEvent` (`read.rs`; [`Message::from_parts`] gives the mapping).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::runtime::StreamHandle;

pub(crate) mod inline;
mod read;
#[cfg(test)]
mod tests;
mod wire;

/// One value travelling through a graph, and across the bridge.
///
/// Payloads are shared (`Arc`): cloning a message for fan-out costs a
/// reference count, not a copy. The kinds are Reflow's, with the same names
/// in the JSON `type` field (`{"type": "String", "data": "hello"}`).
///
/// `Serialize` writes the protocol 1.0 form that async Reflow reads, and
/// fails for a kind 1.0 cannot carry; `Deserialize` reads both protocol
/// forms plus Reflow 1.0's `Stream`, `Encoded` and `NetworkEvent`
/// (`docs/protocol.md`, "Messages").
///
/// ```
/// use reflow_distributed::Message;
///
/// let message = Message::from("hello");
/// assert_eq!(message, Message::string("hello"));
/// assert_eq!(message.as_str(), Some("hello"));
/// assert_eq!(message.type_name(), "String");
/// assert_eq!(format!("{message:?}"), "String(\"hello\")");
/// assert_eq!(Message::from(7).as_i64(), Some(7));
/// ```
#[derive(Clone, PartialEq)]
pub enum Message {
    /// A signal without data.
    Flow,
    /// Any JSON value, meant as an event notification. Reflow 1.0's
    /// `NetworkEvent` arrives as `Event({"event_type": …, "data": …})`.
    Event(Arc<Value>),
    /// `true` or `false`.
    Boolean(bool),
    /// A signed 64-bit integer.
    Integer(i64),
    /// A 64-bit float; crosses the JSON wire unchanged (no lost ulp).
    Float(f64),
    /// UTF-8 text.
    String(Arc<str>),
    /// A JSON object.
    Object(Arc<Map<String, Value>>),
    /// A JSON array. Reflow 1.0 sends each element wrapped as a message of
    /// its own; both forms arrive as this.
    Array(Arc<Vec<Value>>),
    /// Raw bytes. Reflow 1.0 has no `Bytes`: it sends `Stream` and `Encoded`,
    /// which both arrive as `Bytes`, and reads `Bytes` sent as `Stream`.
    Bytes(Arc<[u8]>),
    /// A value that may be absent (`null` on the wire).
    Optional(Option<Arc<Value>>),
    /// Any JSON value, untyped.
    Any(Arc<Value>),
    /// An error text, carried as data (not a failure of the send).
    Error(Arc<str>),
    /// Points at an actor's port in another network.
    RemoteReference(Arc<RemoteReference>),
    /// A handle to an in-process stream. Only its metadata crosses the bridge,
    /// and only toward a 1.1 peer: Reflow 1.0 has no such kind, so writing it
    /// in the 1.0 form fails.
    StreamHandle(StreamHandle),
}

/// Points at a port of an actor in another network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteReference {
    /// The network that hosts the actor.
    pub network_id: String,
    /// The actor's id in that network.
    pub actor_id: String,
    /// One of its ports.
    pub port: String,
}

impl Message {
    /// A `String` message.
    pub fn string(text: impl Into<Arc<str>>) -> Self {
        Message::String(text.into())
    }

    /// An `Error` message.
    pub fn error(text: impl Into<Arc<str>>) -> Self {
        Message::Error(text.into())
    }

    /// The variant's name as it appears in the JSON `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Flow => "Flow",
            Message::Event(_) => "Event",
            Message::Boolean(_) => "Boolean",
            Message::Integer(_) => "Integer",
            Message::Float(_) => "Float",
            Message::String(_) => "String",
            Message::Object(_) => "Object",
            Message::Array(_) => "Array",
            Message::Bytes(_) => "Bytes",
            Message::Optional(_) => "Optional",
            Message::Any(_) => "Any",
            Message::Error(_) => "Error",
            Message::RemoteReference(_) => "RemoteReference",
            Message::StreamHandle(_) => "StreamHandle",
        }
    }

    /// The text of a `String` or `Error` message.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Message::String(s) | Message::Error(s) => Some(s),
            _ => None,
        }
    }

    /// The number of an `Integer` message.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Message::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The message's data as a plain JSON value (`Flow` becomes `null`).
    pub fn to_value(&self) -> Value {
        match self {
            Message::Flow => Value::Null,
            Message::Event(v) | Message::Any(v) => (**v).clone(),
            Message::Boolean(b) => Value::Bool(*b),
            Message::Integer(i) => Value::from(*i),
            Message::Float(f) => Value::from(*f),
            Message::String(s) | Message::Error(s) => Value::String(s.to_string()),
            Message::Object(map) => Value::Object((**map).clone()),
            Message::Array(items) => Value::Array((**items).clone()),
            Message::Bytes(bytes) => Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()),
            Message::Optional(v) => v.as_deref().cloned().unwrap_or(Value::Null),
            Message::RemoteReference(r) => serde_json::to_value(&**r).unwrap_or(Value::Null),
            Message::StreamHandle(h) => h.metadata_value(),
        }
    }
}

/// Reads naturally in logs: `String("hello")`, `Integer(7)`, `Object({"a":1})`.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Flow => f.write_str("Flow"),
            Message::Boolean(b) => write!(f, "Boolean({b})"),
            Message::Integer(i) => write!(f, "Integer({i})"),
            Message::Float(x) => write!(f, "Float({x})"),
            Message::String(s) => write!(f, "String({:?})", &**s),
            Message::Error(s) => write!(f, "Error({:?})", &**s),
            Message::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Message::StreamHandle(h) => write!(f, "StreamHandle({})", h.id()),
            other => write!(f, "{}({})", other.type_name(), other.to_value()),
        }
    }
}

impl From<Value> for Message {
    /// Maps each JSON kind to its natural variant; `null` becomes `Optional(None)`.
    fn from(value: Value) -> Self {
        match value {
            Value::Null => Message::Optional(None),
            Value::Bool(b) => Message::Boolean(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Message::Integer(i),
                None => Message::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Message::String(s.into()),
            Value::Array(items) => Message::Array(Arc::new(items)),
            Value::Object(map) => Message::Object(Arc::new(map)),
        }
    }
}

impl From<&Message> for Value {
    fn from(message: &Message) -> Self {
        message.to_value()
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::String(text.into())
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::String(text.into())
    }
}

impl From<i64> for Message {
    fn from(i: i64) -> Self {
        Message::Integer(i)
    }
}

impl From<bool> for Message {
    fn from(b: bool) -> Self {
        Message::Boolean(b)
    }
}

impl From<f64> for Message {
    fn from(x: f64) -> Self {
        Message::Float(x)
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Message::Bytes(bytes.into())
    }
}
