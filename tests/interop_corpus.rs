//! Interop with async Reflow 1.0, both ways, against the frames in
//! `tests/fixtures/reflow10/` (see its README.md): each frame as Reflow 1.0
//! writes it must parse to the expected `Message`, and each `Message` we send
//! must serialise to the payload Reflow 1.0 writes (and so reads).

use std::path::PathBuf;
use std::sync::Arc;

use reflow_distributed::bridge::{RemoteMessage, inspect};
use reflow_distributed::runtime::stream_channel;
use reflow_distributed::{Message, RemoteReference};
use serde_json::{Value, json};

/// Whether our writer must produce the fixture's payload for the message.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    /// Reflow writes it and we write it.
    Both,
    /// Only read: Reflow writes it, we write the message in another form.
    ReadOnly,
}

fn corpus() -> Vec<(&'static str, Message, Way)> {
    let object = |value: Value| Message::Object(Arc::new(value.as_object().cloned().unwrap_or_default()));
    vec![
        ("flow", Message::Flow, Way::Both),
        (
            "event",
            Message::Event(Arc::new(json!({"kind": "tick", "seq": 1}))),
            Way::Both,
        ),
        ("boolean", Message::Boolean(true), Way::Both),
        ("integer", Message::Integer(i64::MIN), Way::Both),
        ("float", Message::Float(1.5), Way::Both),
        ("string", Message::string("hello-from-reflow"), Way::Both),
        (
            "object",
            object(json!({"a": 1, "b": "two", "c": [true, null]})),
            Way::Both,
        ),
        (
            "array",
            Message::Array(Arc::new(vec![
                json!(1),
                json!("two"),
                json!({"x": true}),
                Value::Null,
            ])),
            Way::Both,
        ),
        (
            "stream",
            Message::Bytes(vec![0u8, 1, 2, 127, 255].into()),
            Way::Both,
        ),
        (
            "encoded",
            Message::Bytes(vec![3u8, 1, 4, 1, 5].into()),
            Way::ReadOnly,
        ),
        ("optional_none", Message::Optional(None), Way::Both),
        ("optional_none_absent", Message::Optional(None), Way::ReadOnly),
        (
            "optional_some",
            Message::Optional(Some(Arc::new(json!({"v": 3})))),
            Way::Both,
        ),
        ("any", Message::Any(Arc::new(json!([1, "a", null]))), Way::Both),
        ("error", Message::error("boom"), Way::Both),
        (
            "remote_reference",
            Message::RemoteReference(Arc::new(RemoteReference {
                network_id: "alpha".into(),
                actor_id: "recorder".into(),
                port: "in".into(),
            })),
            Way::Both,
        ),
        (
            "network_event",
            Message::Event(Arc::new(
                json!({"event_type": "ActorRegistered", "data": {"actor_id": "recorder"}}),
            )),
            Way::ReadOnly,
        ),
    ]
}

fn fixture(name: &str) -> String {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "reflow10",
        &format!("{name}.json"),
    ]
    .iter()
    .collect();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_fixture_is_in_the_corpus_and_the_other_way_round() {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "reflow10"]
        .iter()
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixture folder")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".json").map(str::to_string))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = corpus().iter().map(|(name, ..)| name.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn frames_reflow_writes_parse_to_the_expected_message() {
    for (name, expected, _) in corpus() {
        let text = fixture(name);
        assert_eq!(inspect::classify_frame(text.trim_end()), "message", "{name}");
        let frame: RemoteMessage = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(frame.payload, expected, "{name}");
        assert_eq!(
            frame.source_actor, "",
            "{name}: Reflow 1.0 sends an empty source_actor"
        );
    }
}

#[test]
fn what_we_write_is_what_reflow_writes() {
    for (name, message, way) in corpus() {
        if way == Way::ReadOnly {
            continue;
        }
        let theirs: Value = serde_json::from_str(&fixture(name)).expect("fixture is JSON");
        let ours = RemoteMessage::new("beta", "unknown", "alpha", "recorder", "in", message);
        let ours = serde_json::to_value(&ours).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ours["payload"], theirs["payload"], "{name}");
        // The envelope has Reflow's field names (and nothing it would reject).
        let keys = |frame: &Value| {
            let mut keys: Vec<String> = frame.as_object().expect("object").keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(&ours), keys(&theirs), "{name}");
    }
}

#[test]
fn kinds_reflow_cannot_read_are_refused_at_the_sender() {
    let (_writer, handle) = stream_channel(1, json!({"content_type": "text/plain"}));
    for (message, kind) in [
        (Message::StreamHandle(handle), "StreamHandle"),
        (Message::Float(f64::NAN), "Float"),
        (Message::Float(f64::INFINITY), "Float"),
    ] {
        assert!(message.check_v10().is_err(), "{kind}");
        let frame = RemoteMessage::new("beta", "unknown", "alpha", "recorder", "in", message);
        let err = serde_json::to_string(&frame).unwrap_err().to_string();
        assert!(err.contains(kind), "{err}");
    }
}
