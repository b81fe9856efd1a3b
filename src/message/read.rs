//! Reading a [`Message`] in any form a peer may send (see `wire.rs` for
//! the forms and the wrapper rule): the 1.0 wrapper form and the inline
//! form, Reflow 1.0's own kinds, any field order, and the `[type, data]`
//! sequence that compact MessagePack makes of the envelope.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::wire::{unwrap_wrapper, wrapped_json};
use super::{Message, RemoteReference};
use crate::runtime::StreamHandle;

impl Message {
    /// Builds a message of kind `type_name` from its `data` field (`None`
    /// when absent), as [`Deserialize`] does: either form, Reflow 1.0's
    /// `Stream`/`Encoded` as `Bytes` and `NetworkEvent` as `Event`. Without
    /// data, `Flow`, `Event`/`Any` (`null`), `Optional` (`None`) and
    /// `StreamHandle` are still built; other kinds are an error. `Err` names
    /// the kind and what its data must be.
    ///
    /// # Errors
    ///
    /// An unknown `type_name`, missing data for a kind that needs it, or
    /// data of the wrong shape for the kind; the text says which.
    pub fn from_parts(type_name: &str, data: Option<Value>) -> Result<Self, String> {
        let kind = Kind::from_name(type_name).ok_or_else(|| unknown_kind(type_name))?;
        match data {
            Some(value) => from_data(kind, value),
            None => without_data(kind),
        }
    }
}

/// Every kind a peer may name in `type`, Reflow 1.0's own included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Flow,
    Event,
    Boolean,
    Integer,
    Float,
    String,
    Object,
    Array,
    Bytes,
    Optional,
    Any,
    Error,
    RemoteReference,
    StreamHandle,
    Stream,
    Encoded,
    NetworkEvent,
}

impl Kind {
    fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "Flow" => Kind::Flow,
            "Event" => Kind::Event,
            "Boolean" => Kind::Boolean,
            "Integer" => Kind::Integer,
            "Float" => Kind::Float,
            "String" => Kind::String,
            "Object" => Kind::Object,
            "Array" => Kind::Array,
            "Bytes" => Kind::Bytes,
            "Optional" => Kind::Optional,
            "Any" => Kind::Any,
            "Error" => Kind::Error,
            "RemoteReference" => Kind::RemoteReference,
            "StreamHandle" => Kind::StreamHandle,
            "Stream" => Kind::Stream,
            "Encoded" => Kind::Encoded,
            "NetworkEvent" => Kind::NetworkEvent,
            _ => return None,
        })
    }

    /// What the kind's `data` must be, for error messages.
    fn expected(self) -> &'static str {
        match self {
            Kind::Boolean => "true or false",
            Kind::Integer => "a 64-bit signed integer",
            Kind::Float => "a number",
            Kind::String | Kind::Error => "a string",
            Kind::Object => "a JSON object or its wrapper",
            Kind::Array => "an array",
            Kind::Bytes | Kind::Stream | Kind::Encoded => "an array of numbers 0..=255",
            Kind::RemoteReference => "{network_id, actor_id, port}",
            Kind::NetworkEvent => "{event_type, data}",
            Kind::Flow | Kind::Event | Kind::Optional | Kind::Any | Kind::StreamHandle => "any JSON value",
        }
    }

    /// Kinds whose data is read as a JSON value first (wrappers, metadata).
    fn is_json(self) -> bool {
        matches!(
            self,
            Kind::Event
                | Kind::Any
                | Kind::Optional
                | Kind::Object
                | Kind::Array
                | Kind::StreamHandle
                | Kind::NetworkEvent
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

fn unknown_kind(name: &str) -> String {
    format!("unknown message type {name:?}")
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn without_data(kind: Kind) -> Result<Message, String> {
    Ok(match kind {
        Kind::Flow => Message::Flow,
        Kind::Event => Message::Event(Arc::new(Value::Null)),
        Kind::Any => Message::Any(Arc::new(Value::Null)),
        Kind::Optional => Message::Optional(None),
        Kind::StreamHandle => Message::StreamHandle(StreamHandle::from_metadata(Value::Null)),
        _ => return Err(format!("{kind} message has no data")),
    })
}

/// A message of `kind` from its data already parsed as a JSON value.
fn from_data(kind: Kind, value: Value) -> Result<Message, String> {
    let wrong = |value: &Value| format!("{kind} data must be {}, got {}", kind.expected(), kind_of(value));
    Ok(match kind {
        Kind::Event => Message::Event(Arc::new(unwrap_wrapper(value))),
        Kind::Any => Message::Any(Arc::new(unwrap_wrapper(value))),
        // Only a bare null is None: a wrapped "null" is Some(null).
        Kind::Optional => match value {
            Value::Null => Message::Optional(None),
            value => Message::Optional(Some(Arc::new(unwrap_wrapper(value)))),
        },
        Kind::Object => match unwrap_wrapper(value) {
            Value::Object(map) => Message::Object(Arc::new(map)),
            other => return Err(wrong(&other)),
        },
        Kind::Array => match value {
            Value::Array(mut items) => {
                for item in &mut items {
                    if let Value::Object(map) = item
                        && let Some(inner) = wrapped_json(map)
                    {
                        *item = inner;
                    }
                }
                Message::Array(Arc::new(items))
            }
            other => return Err(wrong(&other)),
        },
        Kind::StreamHandle => Message::StreamHandle(StreamHandle::from_metadata(value)),
        Kind::NetworkEvent => {
            let Value::Object(mut map) = value else {
                return Err(wrong(&value));
            };
            let Some(Value::String(event_type)) = map.remove("event_type") else {
                return Err("NetworkEvent data must have a string event_type".into());
            };
            let data = map.remove("data").map(unwrap_wrapper).unwrap_or(Value::Null);
            Message::Event(Arc::new(json!({"event_type": event_type, "data": data})))
        }
        _ => Data(kind).deserialize(value).map_err(|e| e.to_string())?,
    })
}

/// Reads `data` once the kind is known, straight into the message: scalars
/// and bytes without a `serde_json::Value` on the way.
struct Data(Kind);

impl<'de> DeserializeSeed<'de> for Data {
    type Value = Message;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Message, D::Error> {
        let kind = self.0;
        match kind {
            Kind::Flow => IgnoredAny::deserialize(deserializer).map(|_| Message::Flow),
            Kind::Bytes | Kind::Stream | Kind::Encoded => deserializer
                .deserialize_any(ByteVisitor(kind))
                .map(Message::Bytes),
            Kind::RemoteReference => RemoteReference::deserialize(deserializer)
                .map(|r| Message::RemoteReference(Arc::new(r)))
                .map_err(|e| D::Error::custom(format!("RemoteReference data: {e}"))),
            _ if kind.is_json() => {
                from_data(kind, Value::deserialize(deserializer)?).map_err(D::Error::custom)
            }
            _ => deserializer.deserialize_any(Scalar(kind)),
        }
    }
}

/// Boolean, Integer, Float, String and Error data.
struct Scalar(Kind);

impl<'de> Visitor<'de> for Scalar {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} data: {}", self.0, self.0.expected())
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Message, E> {
        match self.0 {
            Kind::Boolean => Ok(Message::Boolean(b)),
            _ => Err(E::invalid_type(Unexpected::Bool(b), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Message, E> {
        match self.0 {
            Kind::Integer => Ok(Message::Integer(i)),
            Kind::Float => Ok(Message::Float(i as f64)),
            _ => Err(E::invalid_type(Unexpected::Signed(i), &self)),
        }
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Message, E> {
        match self.0 {
            Kind::Integer => i64::try_from(u)
                .map(Message::Integer)
                .map_err(|_| E::invalid_value(Unexpected::Unsigned(u), &self)),
            Kind::Float => Ok(Message::Float(u as f64)),
            _ => Err(E::invalid_type(Unexpected::Unsigned(u), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Message, E> {
        match self.0 {
            Kind::Float => Ok(Message::Float(x)),
            _ => Err(E::invalid_type(Unexpected::Float(x), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Message, E> {
        match self.0 {
            Kind::String => Ok(Message::String(s.into())),
            Kind::Error => Ok(Message::Error(s.into())),
            _ => Err(E::invalid_type(Unexpected::Str(s), &self)),
        }
    }
}

/// Bytes as numbers (JSON, the 1.0 form) or as a byte string (MessagePack).
struct ByteVisitor(Kind);

impl<'de> Visitor<'de> for ByteVisitor {
    type Value = Arc<[u8]>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} data: {}", self.0, self.0.expected())
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Arc<[u8]>, E> {
        Ok(bytes.into())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Arc<[u8]>, A::Error> {
        // The hint comes from the peer: cap what it may make us reserve.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(bytes.into())
    }
}

impl<'de> Deserialize<'de> for Message {
    /// Either form, any field order; unknown fields are ignored. An object
    /// `{"type", "data"}`, or the sequence `[type, data]` that a compact
    /// MessagePack encoding makes of it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("Message", &["type", "data"], MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a message {"type": KIND, "data": VALUE}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let mut kind = None;
        let mut message = None;
        // `data` before `type`: kept until the kind is known.
        let mut early: Option<Early> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Type if kind.is_some() => return Err(A::Error::duplicate_field("type")),
                Field::Type => kind = Some(map.next_value::<KindName>()?.0),
                Field::Data if message.is_some() || early.is_some() => {
                    return Err(A::Error::duplicate_field("data"));
                }
                Field::Data => match kind {
                    Some(kind) => message = Some(map.next_value_seed(Data(kind))?),
                    None => early = Some(map.next_value()?),
                },
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let kind = kind.ok_or_else(|| A::Error::missing_field("type"))?;
        match (message, early) {
            (Some(message), _) => Ok(message),
            (None, Some(Early::Json(value))) => from_data(kind, value).map_err(A::Error::custom),
            (None, Some(Early::Bin(bytes))) => match kind {
                Kind::Bytes | Kind::Stream | Kind::Encoded => Ok(Message::Bytes(bytes.0.into())),
                _ => Err(A::Error::custom(format!(
                    "{kind} data must be {}, got bytes",
                    kind.expected()
                ))),
            },
            (None, None) => without_data(kind).map_err(A::Error::custom),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Message, A::Error> {
        let kind = seq
            .next_element::<KindName>()?
            .ok_or_else(|| A::Error::invalid_length(0, &self))?
            .0;
        let message = match seq.next_element_seed(Data(kind))? {
            Some(message) => message,
            None => without_data(kind).map_err(A::Error::custom)?,
        };
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(message)
    }
}

enum Field {
    Type,
    Data,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Ok(match name {
                    "type" => Field::Type,
                    "data" => Field::Data,
                    _ => Field::Other,
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

struct KindName(Kind);

impl<'de> Deserialize<'de> for KindName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl Visitor<'_> for KindVisitor {
            type Value = KindName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message type name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<KindName, E> {
                Kind::from_name(name)
                    .map(KindName)
                    .ok_or_else(|| E::custom(unknown_kind(name)))
            }
        }
        deserializer.deserialize_str(KindVisitor)
    }
}

/// `data` met before `type`: a JSON value, or a byte string (MessagePack).
#[derive(Deserialize)]
#[serde(untagged)]
enum Early {
    Bin(ByteString),
    Json(Value),
}

struct ByteString(Vec<u8>);

impl<'de> Deserialize<'de> for ByteString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BinVisitor;
        impl Visitor<'_> for BinVisitor {
            type Value = ByteString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<ByteString, E> {
                Ok(ByteString(bytes.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<ByteString, E> {
                Ok(ByteString(bytes))
            }
        }
        deserializer.deserialize_byte_buf(BinVisitor)
    }
}
