//! Frames exchanged after the handshake (protocol 1.0). Frames carry no type
//! tag: each is recognised by its required fields, and unknown fields are
//! ignored. The handshake frames live in `handshake.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::now_rfc3339;
use crate::ids::uuid_v4;
use crate::message::Message;

/// A message for an actor's port in another network: the envelope of
/// protocol 1.0's message frame (`docs/protocol.md`), field for field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoteMessage {
    /// A UUID v4, unique per message.
    pub message_id: String,
    /// The sending peer's network.
    pub source_network: String,
    /// `"unknown"` when the sender is not an actor.
    pub source_actor: String,
    /// The network that hosts the target actor.
    pub target_network: String,
    /// The target actor's id in its network.
    pub target_actor: String,
    /// The target actor's input port.
    pub target_port: String,
    /// What is delivered to the port.
    pub payload: Message,
    /// RFC 3339, UTC.
    pub timestamp: String,
}

impl RemoteMessage {
    /// A message with a fresh UUID v4 `message_id` and the current time.
    pub fn new(
        source_network: impl Into<String>,
        source_actor: impl Into<String>,
        target_network: impl Into<String>,
        target_actor: impl Into<String>,
        target_port: impl Into<String>,
        payload: Message,
    ) -> Self {
        RemoteMessage {
            message_id: uuid_v4(),
            source_network: source_network.into(),
            source_actor: source_actor.into(),
            target_network: target_network.into(),
            target_actor: target_actor.into(),
            target_port: target_port.into(),
            payload,
            timestamp: now_rfc3339(),
        }
    }
}

/// A message on its way out, by its parts: what a proxy or an actor knows
/// before it becomes a [`RemoteMessage`]. Toward a peer that reads BATCH
/// frames it never does (no id or timestamp is made for it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outbound<'a> {
    pub(crate) source_actor: &'a str,
    pub(crate) target_network: &'a str,
    pub(crate) target_actor: &'a str,
    pub(crate) target_port: &'a str,
}

impl Outbound<'_> {
    /// The whole envelope, with a fresh id and the current time, from `source_network`.
    pub(crate) fn to_remote(self, source_network: &str, payload: Message) -> RemoteMessage {
        RemoteMessage::new(
            source_network,
            self.source_actor,
            self.target_network,
            self.target_actor,
            self.target_port,
            payload,
        )
    }
}

/// Sign of life, sent by both sides every heartbeat interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Heartbeat {
    pub network_id: String,
    pub timestamp: String,
}

/// Asks the peer which actors it offers (optional in 1.0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct DiscoveryRequest {
    pub request_id: String,
    pub requesting_network: String,
}

/// One actor listed in a [`DiscoveryResponse`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ActorInfo {
    pub actor_id: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub description: String,
}

/// Answer to a [`DiscoveryRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct DiscoveryResponse {
    pub request_id: String,
    pub network_id: String,
    pub actors: Vec<ActorInfo>,
}

/// A frame received after the handshake, recognised by its fields.
#[derive(Debug)]
pub(crate) enum Inbound {
    Message(Box<RemoteMessage>),
    Heartbeat(Heartbeat),
    DiscoveryRequest(DiscoveryRequest),
    DiscoveryResponse(DiscoveryResponse),
}

/// Why a text frame could not be used. The connection survives both.
#[derive(Debug, PartialEq)]
pub(crate) enum FrameProblem {
    /// A remote message (it names a target actor) whose fields are wrong.
    BadMessage {
        target_actor: Option<String>,
        reason: String,
    },
    /// Not JSON, or a JSON object that matches no 1.0 frame.
    Unrecognised(String),
}

/// Fields whose presence marks a frame as a remote message.
const MESSAGE_FIELDS: [&str; 3] = ["message_id", "target_actor", "payload"];

/// Recognises one text frame. Remote messages are tried first: they are the
/// hot path and need a single parse.
pub(crate) fn parse_frame(text: &str) -> Result<Inbound, FrameProblem> {
    let message_error = match serde_json::from_str::<RemoteMessage>(text) {
        Ok(message) => return Ok(Inbound::Message(Box::new(message))),
        Err(err) => err.to_string(),
    };
    let value: Value =
        serde_json::from_str(text).map_err(|err| FrameProblem::Unrecognised(format!("not JSON: {err}")))?;
    let Value::Object(map) = &value else {
        return Err(FrameProblem::Unrecognised("not a JSON object".into()));
    };
    if MESSAGE_FIELDS.iter().any(|field| map.contains_key(*field)) {
        let target_actor = map
            .get("target_actor")
            .and_then(Value::as_str)
            .map(str::to_string);
        return Err(FrameProblem::BadMessage {
            target_actor,
            reason: message_error,
        });
    }
    if map.contains_key("request_id") {
        if map.contains_key("actors") {
            return from_value(value).map(Inbound::DiscoveryResponse);
        }
        return from_value(value).map(Inbound::DiscoveryRequest);
    }
    if map.contains_key("network_id") && map.contains_key("timestamp") {
        return from_value(value).map(Inbound::Heartbeat);
    }
    let mut keys: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
    keys.sort_unstable();
    Err(FrameProblem::Unrecognised(format!(
        "no 1.0 frame has the fields {keys:?}"
    )))
}

fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, FrameProblem> {
    serde_json::from_value(value).map_err(|err| FrameProblem::Unrecognised(err.to_string()))
}

/// The heartbeat frame of `network_id`, stamped now.
pub(crate) fn heartbeat_text(network_id: &str) -> String {
    let beat = Heartbeat {
        network_id: network_id.to_string(),
        timestamp: now_rfc3339(),
    };
    serde_json::to_string(&beat).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = r#"{"message_id": "m-1", "source_network": "beta", "source_actor": "unknown",
        "target_network": "alpha", "target_actor": "recorder", "target_port": "in",
        "payload": {"type": "String", "data": "hello-from-beta"},
        "timestamp": "2026-04-28T22:48:33.001Z", "extra": 1}"#;

    #[test]
    fn remote_message_is_recognised_and_extra_fields_ignored() {
        let Ok(Inbound::Message(message)) = parse_frame(MESSAGE) else {
            panic!("not a message")
        };
        assert_eq!(message.target_actor, "recorder");
        assert_eq!(message.payload, Message::string("hello-from-beta"));
    }

    #[test]
    fn remote_message_uses_the_protocol_field_names() {
        let message = RemoteMessage::new("beta", "unknown", "alpha", "recorder", "in", Message::Integer(7));
        let value = serde_json::to_value(&message).unwrap();
        for field in [
            "message_id",
            "source_network",
            "source_actor",
            "target_network",
            "target_actor",
            "target_port",
            "payload",
            "timestamp",
        ] {
            assert!(value.get(field).is_some(), "missing {field}");
        }
        assert_eq!(
            value["payload"],
            serde_json::json!({"type": "Integer", "data": 7})
        );
        assert_eq!(message.message_id.len(), 36);
    }

    #[test]
    fn heartbeat_and_discovery_frames_are_recognised() {
        let beat = heartbeat_text("beta");
        assert!(matches!(parse_frame(&beat), Ok(Inbound::Heartbeat(h)) if h.network_id == "beta"));
        let request = r#"{"request_id": "r", "requesting_network": "beta"}"#;
        assert!(matches!(parse_frame(request), Ok(Inbound::DiscoveryRequest(_))));
        let response = r#"{"request_id": "r", "network_id": "alpha",
            "actors": [{"actor_id": "recorder", "capabilities": [], "description": "x"}]}"#;
        assert!(matches!(parse_frame(response), Ok(Inbound::DiscoveryResponse(r)) if r.actors.len() == 1));
    }

    #[test]
    fn a_message_with_a_bad_payload_is_a_bad_message() {
        let text = MESSAGE.replace(r#""data": "hello-from-beta""#, r#""data": 5"#);
        match parse_frame(&text) {
            Err(FrameProblem::BadMessage { target_actor, .. }) => {
                assert_eq!(target_actor.as_deref(), Some("recorder"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_and_unknown_shapes_are_unrecognised() {
        for text in ["not json", "[1,2]", r#"{"hello": "world"}"#, "42"] {
            assert!(
                matches!(parse_frame(text), Err(FrameProblem::Unrecognised(_))),
                "{text}"
            );
        }
    }
}
