use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Message, RemoteReference, inline};
use crate::runtime::stream_channel;

fn object(value: Value) -> Message {
    Message::Object(Arc::new(value.as_object().cloned().unwrap_or_default()))
}

fn array(items: Vec<Value>) -> Message {
    Message::Array(Arc::new(items))
}

/// Reflow 1.0's wrapper of `value`: `{"data": [bytes of its JSON text]}`.
fn wrapped(value: Value) -> Value {
    json!({"data": serde_json::to_vec(&value).unwrap()})
}

fn wire(message: &Message) -> Value {
    serde_json::to_value(message).expect("serialize")
}

fn read(value: Value) -> Message {
    serde_json::from_value(value).expect("deserialize")
}

/// One message of each kind that has a protocol 1.0 form, with edge values.
fn v10_samples() -> Vec<Message> {
    vec![
        Message::Flow,
        Message::Event(Arc::new(json!({"kind": "tick"}))),
        Message::Event(Arc::new(Value::Null)),
        Message::Boolean(true),
        Message::Integer(i64::MIN),
        Message::Float(1.5),
        Message::string("hello"),
        object(json!({"a": 1, "nested": {"b": [true, null]}})),
        // Shaped like a wrapper: must come back as itself.
        object(wrapped(json!({}))),
        array(vec![
            json!(1),
            json!("two"),
            Value::Null,
            wrapped(json!(3)),
            json!({"data": "x"}),
        ]),
        array(vec![]),
        Message::Bytes(vec![0u8, 255, 7].into()),
        Message::Bytes(Vec::new().into()),
        Message::Optional(None),
        Message::Optional(Some(Arc::new(json!(3)))),
        Message::Optional(Some(Arc::new(Value::Null))),
        Message::Any(Arc::new(json!([true]))),
        Message::error("boom"),
        Message::RemoteReference(Arc::new(RemoteReference {
            network_id: "alpha".into(),
            actor_id: "recorder".into(),
            port: "in".into(),
        })),
    ]
}

#[test]
fn every_v10_kind_roundtrips_through_json() {
    for message in v10_samples() {
        let text = serde_json::to_string(&message).expect("serialize");
        let back: Message = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, message, "{text}");
    }
}

#[test]
fn v10_form_is_what_reflow_reads() {
    assert_eq!(wire(&Message::Flow), json!({"type": "Flow"}));
    assert_eq!(
        wire(&Message::string("hi")),
        json!({"type": "String", "data": "hi"})
    );
    assert_eq!(wire(&Message::Integer(7)), json!({"type": "Integer", "data": 7}));
    assert_eq!(
        wire(&object(json!({"x": 5}))),
        json!({"type": "Object", "data": {"data": br#"{"x":5}"#.to_vec()}})
    );
    assert_eq!(
        wire(&array(vec![json!(1), json!("a")])),
        json!({"type": "Array", "data": [{"data": b"1".to_vec()}, {"data": br#""a""#.to_vec()}]})
    );
    assert_eq!(
        wire(&Message::Optional(None)),
        json!({"type": "Optional", "data": null})
    );
    assert_eq!(
        wire(&Message::Optional(Some(Arc::new(json!(3))))),
        json!({"type": "Optional", "data": {"data": b"3".to_vec()}})
    );
    assert_eq!(
        wire(&Message::Any(Arc::new(json!(true)))),
        json!({"type": "Any", "data": wrapped(json!(true))})
    );
    assert_eq!(
        wire(&Message::Event(Arc::new(json!({"k": 1})))),
        json!({"type": "Event", "data": wrapped(json!({"k": 1}))})
    );
    assert_eq!(
        wire(&Message::Bytes(vec![1u8, 2].into())),
        json!({"type": "Stream", "data": [1, 2]})
    );
}

#[test]
fn kinds_without_a_v10_form_fail_to_serialise() {
    let (_writer, handle) = stream_channel(1, json!({"k": 1}));
    let cases = [
        (Message::StreamHandle(handle), "StreamHandle"),
        (Message::Float(f64::NAN), "Float NaN"),
        (Message::Float(f64::NEG_INFINITY), "Float -inf"),
    ];
    for (message, name) in cases {
        let err = serde_json::to_string(&message).unwrap_err().to_string();
        assert!(err.contains(name), "{err}");
        assert!(message.check_v10().unwrap_err().contains(name));
    }
    for message in v10_samples() {
        assert_eq!(message.check_v10(), Ok(()), "{message:?}");
    }
}

#[test]
fn inline_form_is_read_too() {
    assert_eq!(
        read(json!({"type": "Object", "data": {"x": 5}})),
        object(json!({"x": 5}))
    );
    assert_eq!(
        read(json!({"type": "Any", "data": [1]})),
        Message::Any(Arc::new(json!([1])))
    );
    assert_eq!(
        read(json!({"type": "Optional", "data": 3})),
        Message::Optional(Some(Arc::new(json!(3))))
    );
    assert_eq!(read(json!({"type": "Optional"})), Message::Optional(None));
    assert_eq!(
        read(json!({"type": "Bytes", "data": [1, 2]})),
        Message::Bytes(vec![1u8, 2].into())
    );
    assert_eq!(
        read(json!({"type": "Array", "data": [1, wrapped(json!({"a": 2})), "x"]})),
        array(vec![json!(1), json!({"a": 2}), json!("x")])
    );
}

#[test]
fn only_an_exact_wrapper_is_unwrapped() {
    let kept = [
        json!({"data": "text"}),
        json!({"data": [256]}),
        json!({"data": []}),
        // Bytes that are not JSON text.
        json!({"data": [1, 2]}),
        json!({"data": [123, 125], "more": 1}),
    ];
    let message = read(json!({"type": "Array", "data": kept.clone()}));
    assert_eq!(message, array(kept.to_vec()));
    let message = read(json!({"type": "Object", "data": {"data": [1, 2]}}));
    assert_eq!(message, object(json!({"data": [1, 2]})));
    // A wrapped null is a present value, a bare null is none.
    let some_null = read(json!({"type": "Optional", "data": wrapped(Value::Null)}));
    assert_eq!(some_null, Message::Optional(Some(Arc::new(Value::Null))));
}

#[test]
fn reflow_only_kinds_are_mapped() {
    assert_eq!(
        read(json!({"type": "Stream", "data": [9, 8]})),
        Message::Bytes(vec![9u8, 8].into())
    );
    assert_eq!(
        read(json!({"type": "Encoded", "data": [7]})),
        Message::Bytes(vec![7u8].into())
    );
    let event = json!({"event_type": "NetworkConnected", "data": wrapped(json!({"network_id": "beta"}))});
    assert_eq!(
        read(json!({"type": "NetworkEvent", "data": event})),
        Message::Event(Arc::new(
            json!({"event_type": "NetworkConnected", "data": {"network_id": "beta"}})
        ))
    );
}

#[test]
fn field_order_and_shape_do_not_matter() {
    let text = r#"{"data": "hi", "extra": [1], "type": "String"}"#;
    assert_eq!(
        serde_json::from_str::<Message>(text).unwrap(),
        Message::string("hi")
    );
    let text = r#"{"data": {"data": [123, 125]}, "type": "Object"}"#;
    assert_eq!(serde_json::from_str::<Message>(text).unwrap(), object(json!({})));
    assert_eq!(
        serde_json::from_str::<Message>(r#"["Integer", 4]"#).unwrap(),
        Message::Integer(4)
    );
    assert_eq!(
        serde_json::from_str::<Message>(r#"["Flow"]"#).unwrap(),
        Message::Flow
    );
}

#[test]
fn wrong_data_gets_a_clear_error() {
    let cases = [
        (json!({"type": "Integer", "data": "x"}), "Integer data"),
        (
            json!({"type": "Integer", "data": 9223372036854775808u64}),
            "Integer data",
        ),
        (json!({"type": "Boolean", "data": 1}), "Boolean data"),
        (json!({"data": 1, "type": "String"}), "String data"),
        (json!({"type": "Object", "data": [1]}), "Object data"),
        (json!({"type": "Bytes", "data": [256]}), "u8"),
        (json!({"type": "NetworkEvent", "data": {"data": 1}}), "event_type"),
        (json!({"type": "Nope"}), "unknown message type \"Nope\""),
        (json!({"data": 1}), "missing field `type`"),
        (json!({"type": "String"}), "String message has no data"),
    ];
    for (value, expected) in cases {
        let err = serde_json::from_value::<Message>(value.clone())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{value}: {err}");
    }
    let text = r#"{"type": "String", "data": "a", "data": "b"}"#;
    let err = serde_json::from_str::<Message>(text).unwrap_err().to_string();
    assert!(err.contains("duplicate field `data`"), "{err}");
}

#[test]
fn from_parts_takes_either_form() {
    assert_eq!(
        Message::from_parts("Object", Some(wrapped(json!({"x": 5})))),
        Ok(object(json!({"x": 5})))
    );
    assert_eq!(
        Message::from_parts("Integer", Some(json!(3))),
        Ok(Message::Integer(3))
    );
    assert_eq!(
        Message::from_parts("Encoded", Some(json!([1]))),
        Ok(Message::Bytes(vec![1u8].into()))
    );
    assert!(
        Message::from_parts("Bogus", None)
            .unwrap_err()
            .contains("unknown message type")
    );
}

/// A 1.1 frame's use of the inline form.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Frame {
    #[serde(with = "inline")]
    payload: Message,
}

fn inline_samples() -> Vec<Message> {
    let (_writer, handle) = stream_channel(1, json!({"content_type": "text/plain"}));
    let mut samples = v10_samples();
    samples.extend([
        Message::StreamHandle(handle),
        Message::Float(f64::INFINITY),
        Message::Optional(Some(Arc::new(wrapped(json!(1))))),
        Message::Any(Arc::new(wrapped(json!("x")))),
    ]);
    samples
}

/// Equal, except that a handle read from the wire is equal to the local one
/// it came from by id and metadata (it has no frames, so `==` says no).
fn assert_same(back: &Frame, sent: &Frame) {
    match (&back.payload, &sent.payload) {
        (Message::StreamHandle(back), Message::StreamHandle(sent)) => {
            assert_eq!((back.id(), back.metadata()), (sent.id(), sent.metadata()));
            assert!(!back.is_local());
        }
        _ => assert_eq!(back, sent),
    }
}

#[test]
fn every_kind_roundtrips_inline_through_msgpack() {
    for message in inline_samples() {
        let frame = Frame { payload: message };
        let named = rmp_serde::to_vec_named(&frame).expect("encode");
        assert_same(
            &rmp_serde::from_slice::<Frame>(&named).expect("decode named"),
            &frame,
        );
        let compact = rmp_serde::to_vec(&frame).expect("encode compact");
        assert_same(
            &rmp_serde::from_slice::<Frame>(&compact).expect("decode compact"),
            &frame,
        );
    }
}

#[test]
fn inline_form_roundtrips_through_json() {
    for message in inline_samples() {
        let frame = Frame { payload: message };
        match serde_json::to_string(&frame) {
            Ok(text) => assert_same(&serde_json::from_str::<Frame>(&text).expect(&text), &frame),
            Err(err) => assert!(
                matches!(frame.payload, Message::Float(x) if !x.is_finite()),
                "{err}"
            ),
        }
    }
    let value = serde_json::to_value(inline::Inline(&object(json!({"x": 5})))).unwrap();
    assert_eq!(value, json!({"type": "Object", "data": {"x": 5}}));
    let value = serde_json::to_value(inline::Inline(&Message::Bytes(vec![1u8].into()))).unwrap();
    assert_eq!(value, json!({"type": "Bytes", "data": [1]}));
}

#[test]
fn inline_bytes_are_a_msgpack_byte_string() {
    let bytes = rmp_serde::to_vec_named(&inline::Inline(&Message::Bytes(vec![7u8; 3].into()))).unwrap();
    // bin 8 marker, length 3, then the bytes themselves.
    assert!(bytes.windows(5).any(|w| w == [0xc4, 3, 7, 7, 7]), "{bytes:x?}");

    // `data` before `type`: the byte string is kept until the kind is known.
    struct Reversed;
    impl Serialize for Reversed {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            struct Bin;
            impl Serialize for Bin {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_bytes(&[1, 2])
                }
            }
            let mut map = s.serialize_map(Some(2))?;
            map.serialize_entry("data", &Bin)?;
            map.serialize_entry("type", "Bytes")?;
            map.end()
        }
    }
    let bytes = rmp_serde::to_vec(&Reversed).unwrap();
    let message: Message = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(message, Message::Bytes(vec![1u8, 2].into()));
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

#[test]
fn floats_cross_the_json_wire_unchanged() {
    // 4.5e300 came back one ulp off with serde_json's default float parser.
    for x in [4.5e300, 1e-308, 0.1, f64::MAX, f64::MIN_POSITIVE, -2.5e-5] {
        let text = serde_json::to_string(&Message::Float(x)).unwrap();
        let again: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(again, Message::Float(x), "{text}");
    }
}
