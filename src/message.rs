//! `Message`: the values that flow between actors and across the bridge.
//!
//! Payloads are shared (`Arc`), so cloning a message for fan-out costs a
//! reference count, not a copy. The JSON form is `{"type": VARIANT, "data": VALUE}`
//! as the bridge protocol 1.0 defines it (`Flow` has no `data`).

use std::fmt;
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::runtime::stream::StreamHandle;

/// One value travelling through a graph.
#[derive(Clone, PartialEq)]
pub enum Message {
    /// A signal without data.
    Flow,
    /// Any JSON value, meant as an event notification.
    Event(Arc<Value>),
    Boolean(bool),
    Integer(i64),
    Float(f64),
    String(Arc<str>),
    Object(Arc<Map<String, Value>>),
    Array(Arc<Vec<Value>>),
    Bytes(Arc<[u8]>),
    Optional(Option<Arc<Value>>),
    Any(Arc<Value>),
    Error(Arc<str>),
    RemoteReference(Arc<RemoteReference>),
    /// A handle to an in-process stream. Only its metadata crosses the bridge.
    StreamHandle(StreamHandle),
}

/// Points at a port of an actor in another network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteReference {
    pub network_id: String,
    pub actor_id: String,
    pub port: String,
}

impl Message {
    pub fn string(text: impl Into<Arc<str>>) -> Self {
        Message::String(text.into())
    }

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

    /// Builds a message of variant `type_name` from its `data` field, accepting the
    /// older wrapper form `{"data": [bytes of JSON text]}` for Object, Event, Any
    /// and Optional.
    pub fn from_parts(type_name: &str, data: Option<Value>) -> Result<Self, String> {
        let wrapped = |data: Option<Value>| data.map(unwrap_legacy).unwrap_or(Value::Null);
        let need = |data: Option<Value>| data.ok_or_else(|| format!("{type_name} message has no data"));
        Ok(match type_name {
            "Flow" => Message::Flow,
            "Event" => Message::Event(Arc::new(wrapped(data))),
            "Any" => Message::Any(Arc::new(wrapped(data))),
            "Optional" => match wrapped(data) {
                Value::Null => Message::Optional(None),
                v => Message::Optional(Some(Arc::new(v))),
            },
            "Object" => match unwrap_legacy(need(data)?) {
                Value::Object(map) => Message::Object(Arc::new(map)),
                other => {
                    return Err(format!(
                        "Object data must be a JSON object, got {}",
                        kind_of(&other)
                    ));
                }
            },
            "Boolean" => match need(data)? {
                Value::Bool(b) => Message::Boolean(b),
                other => {
                    return Err(format!(
                        "Boolean data must be true or false, got {}",
                        kind_of(&other)
                    ));
                }
            },
            "Integer" => match need(data)?.as_i64() {
                Some(i) => Message::Integer(i),
                None => return Err("Integer data must be a 64-bit signed integer".into()),
            },
            "Float" => match need(data)?.as_f64() {
                Some(f) => Message::Float(f),
                None => return Err("Float data must be a number".into()),
            },
            "String" => match need(data)? {
                Value::String(s) => Message::String(s.into()),
                other => return Err(format!("String data must be a string, got {}", kind_of(&other))),
            },
            "Error" => match need(data)? {
                Value::String(s) => Message::Error(s.into()),
                other => return Err(format!("Error data must be a string, got {}", kind_of(&other))),
            },
            "Array" => match need(data)? {
                Value::Array(items) => Message::Array(Arc::new(items)),
                other => return Err(format!("Array data must be an array, got {}", kind_of(&other))),
            },
            "Bytes" => Message::Bytes(
                bytes_of(&need(data)?)
                    .ok_or("Bytes data must be an array of numbers 0..=255")?
                    .into(),
            ),
            "RemoteReference" => {
                let reference: RemoteReference =
                    serde_json::from_value(need(data)?).map_err(|e| format!("RemoteReference data: {e}"))?;
                Message::RemoteReference(Arc::new(reference))
            }
            "StreamHandle" => Message::StreamHandle(StreamHandle::from_metadata(data.unwrap_or(Value::Null))),
            other => return Err(format!("unknown message type {other:?}")),
        })
    }
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

fn bytes_of(value: &Value) -> Option<Vec<u8>> {
    value
        .as_array()?
        .iter()
        .map(|n| n.as_u64().and_then(|n| u8::try_from(n).ok()))
        .collect()
}

/// Unwraps `{"data": [bytes of JSON text]}` when the bytes hold valid JSON;
/// any other value is returned as it is.
fn unwrap_legacy(value: Value) -> Value {
    if let Value::Object(map) = &value
        && map.len() == 1
        && let Some(bytes) = map.get("data").and_then(bytes_of)
        && let Ok(inner) = serde_json::from_slice::<Value>(&bytes)
    {
        return inner;
    }
    value
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let has_data = !matches!(self, Message::Flow);
        let mut s = serializer.serialize_struct("Message", 1 + usize::from(has_data))?;
        s.serialize_field("type", self.type_name())?;
        match self {
            Message::Flow => {}
            Message::Boolean(b) => s.serialize_field("data", b)?,
            Message::Integer(i) => s.serialize_field("data", i)?,
            Message::Float(f) => s.serialize_field("data", f)?,
            Message::String(t) | Message::Error(t) => s.serialize_field("data", &**t)?,
            Message::Event(v) | Message::Any(v) => s.serialize_field("data", &**v)?,
            Message::Object(map) => s.serialize_field("data", &**map)?,
            Message::Array(items) => s.serialize_field("data", &**items)?,
            Message::Bytes(bytes) => s.serialize_field("data", &**bytes)?,
            Message::Optional(v) => s.serialize_field("data", &v.as_deref())?,
            Message::RemoteReference(r) => s.serialize_field("data", &**r)?,
            Message::StreamHandle(h) => s.serialize_field("data", &h.metadata_value())?,
        }
        s.end()
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Tagged {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            data: Option<Value>,
        }
        let tagged = Tagged::deserialize(deserializer)?;
        Message::from_parts(&tagged.kind, tagged.data).map_err(D::Error::custom)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(message: Message) -> Message {
        let text = serde_json::to_string(&message).expect("serialize");
        serde_json::from_str(&text).expect("deserialize")
    }

    #[test]
    fn every_variant_roundtrips_through_json() {
        let samples = vec![
            Message::Flow,
            Message::Event(Arc::new(json!({"kind": "tick"}))),
            Message::Boolean(true),
            Message::Integer(-42),
            Message::Float(1.5),
            Message::string("hello"),
            Message::Object(Arc::new(json!({"a": 1}).as_object().cloned().unwrap_or_default())),
            Message::Array(Arc::new(vec![json!(1), json!("two")])),
            Message::Bytes(vec![0u8, 255, 7].into()),
            Message::Optional(None),
            Message::Optional(Some(Arc::new(json!(3)))),
            Message::Any(Arc::new(json!([true]))),
            Message::error("boom"),
            Message::RemoteReference(Arc::new(RemoteReference {
                network_id: "alpha".into(),
                actor_id: "recorder".into(),
                port: "in".into(),
            })),
        ];
        for message in samples {
            assert_eq!(roundtrip(message.clone()), message);
        }
    }

    #[test]
    fn wire_form_matches_the_protocol() {
        assert_eq!(
            serde_json::to_value(Message::Flow).unwrap(),
            json!({"type": "Flow"})
        );
        assert_eq!(
            serde_json::to_value(Message::string("hi")).unwrap(),
            json!({"type": "String", "data": "hi"})
        );
        assert_eq!(
            serde_json::to_value(Message::Bytes(vec![1u8, 2].into())).unwrap(),
            json!({"type": "Bytes", "data": [1, 2]})
        );
    }

    #[test]
    fn legacy_wrapper_form_is_accepted() {
        let bytes: Vec<u8> = br#"{"x":5}"#.to_vec();
        let wire = json!({"type": "Object", "data": {"data": bytes}});
        let message: Message = serde_json::from_value(wire).unwrap();
        assert_eq!(message.to_value(), json!({"x": 5}));
    }

    #[test]
    fn wrong_data_gets_a_clear_error() {
        let err = serde_json::from_value::<Message>(json!({"type": "Integer", "data": "x"})).unwrap_err();
        assert!(err.to_string().contains("Integer data must be"), "{err}");
        let err = serde_json::from_value::<Message>(json!({"type": "Nope"})).unwrap_err();
        assert!(err.to_string().contains("unknown message type"), "{err}");
    }

    #[test]
    fn debug_reads_naturally() {
        assert_eq!(format!("{:?}", Message::string("hello")), "String(\"hello\")");
        assert_eq!(format!("{:?}", Message::Integer(7)), "Integer(7)");
    }

    #[test]
    fn json_values_convert_to_natural_variants() {
        assert_eq!(Message::from(json!(3)), Message::Integer(3));
        assert_eq!(Message::from(json!("x")), Message::string("x"));
        assert_eq!(Message::from(json!(null)), Message::Optional(None));
    }
}
