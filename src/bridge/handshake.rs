//! The bridge handshake, without I/O: the dialer's first frame, the
//! acceptor's decision and reply, and how the dialer reads that reply.
//!
//! ```text
//! dialer                                   acceptor
//!   | -- {"network_id", "instance_id",        |
//!   |     "protocol_version", "auth_token",   |  check_request()
//!   |     "capabilities"} ------------------> |  (token, version, ids)
//!   | <-- {"success", "network_id",           |
//!   |      "instance_id", "error"} ---------- |  reply_text()
//!   | parse_reply(): Ok(peer) or              |
//!   |   "handshake refused: <error>"          |
//! ```

use serde::{Deserialize, Serialize};

use super::config::BridgeIdentity;
use super::error::HandshakeError;

/// The protocol this bridge speaks.
pub(crate) const PROTOCOL_VERSION: &str = "1.0";

/// The dialer's first frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandshakeRequest {
    pub(crate) network_id: String,
    pub(crate) instance_id: String,
    pub(crate) protocol_version: String,
    #[serde(default)]
    pub(crate) auth_token: Option<String>,
    #[serde(default)]
    pub(crate) capabilities: Vec<String>,
}

/// The acceptor's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandshakeReply {
    pub(crate) success: bool,
    pub(crate) network_id: String,
    pub(crate) instance_id: String,
    #[serde(default)]
    pub(crate) error: Option<String>,
}

/// Who is on the other side, once the handshake succeeded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PeerInfo {
    pub(crate) network_id: String,
    pub(crate) instance_id: String,
}

/// Why an acceptor turns a dialer away. `text()` is the reply's `error`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    TokenMismatch,
    MaxConnections,
    UnsupportedVersion(String),
    EmptyNetworkId,
    SameNetworkId,
}

impl Refusal {
    pub(crate) fn text(&self) -> String {
        match self {
            Refusal::TokenMismatch => "auth_token mismatch".into(),
            Refusal::MaxConnections => "max_connections reached".into(),
            Refusal::UnsupportedVersion(v) => {
                format!("unsupported protocol_version {v:?} (this peer speaks {PROTOCOL_VERSION})")
            }
            Refusal::EmptyNetworkId => "network_id must not be empty".into(),
            Refusal::SameNetworkId => "network_id is the acceptor's own".into(),
        }
    }
}

/// The dialer's first frame for `identity`, as JSON text.
pub(crate) fn request_text(identity: &BridgeIdentity) -> String {
    let request = HandshakeRequest {
        network_id: identity.network_id.clone(),
        instance_id: identity.instance_id.clone(),
        protocol_version: PROTOCOL_VERSION.to_string(),
        auth_token: identity.auth_token.clone(),
        capabilities: identity.capabilities.clone(),
    };
    serde_json::to_string(&request).unwrap_or_default()
}

/// Reads the dialer's first frame. Anything else is `Malformed`.
pub(crate) fn parse_request(text: &str) -> Result<HandshakeRequest, HandshakeError> {
    serde_json::from_str(text)
        .map_err(|err| HandshakeError::Malformed(format!("first frame is not a handshake request: {err}")))
}

/// The acceptor's decision on a request (before any capacity check).
pub(crate) fn check_request(request: &HandshakeRequest, acceptor: &BridgeIdentity) -> Result<(), Refusal> {
    if !request.protocol_version.starts_with("1.") && request.protocol_version != "1" {
        return Err(Refusal::UnsupportedVersion(request.protocol_version.clone()));
    }
    if request.network_id.is_empty() {
        return Err(Refusal::EmptyNetworkId);
    }
    if request.network_id == acceptor.network_id {
        return Err(Refusal::SameNetworkId);
    }
    if let Some(expected) = &acceptor.auth_token {
        let given = request.auth_token.as_deref().unwrap_or("");
        if !tokens_match(expected.as_bytes(), given.as_bytes()) {
            return Err(Refusal::TokenMismatch);
        }
    }
    Ok(())
}

/// The acceptor's reply frame as JSON text.
pub(crate) fn reply_text(acceptor: &BridgeIdentity, outcome: Result<(), &Refusal>) -> String {
    let reply = HandshakeReply {
        success: outcome.is_ok(),
        network_id: acceptor.network_id.clone(),
        instance_id: acceptor.instance_id.clone(),
        error: outcome.err().map(Refusal::text),
    };
    serde_json::to_string(&reply).unwrap_or_default()
}

/// Reads the acceptor's reply on the dialer's side.
pub(crate) fn parse_reply(text: &str) -> Result<PeerInfo, HandshakeError> {
    let reply: HandshakeReply = serde_json::from_str(text)
        .map_err(|err| HandshakeError::Malformed(format!("reply is not a handshake reply: {err}")))?;
    if !reply.success {
        let why = reply.error.unwrap_or_else(|| "no reason given".to_string());
        return Err(HandshakeError::Refused(why));
    }
    if reply.network_id.is_empty() {
        return Err(HandshakeError::Malformed("reply has an empty network_id".into()));
    }
    Ok(PeerInfo {
        network_id: reply.network_id,
        instance_id: reply.instance_id,
    })
}

/// Compares a secret in time that depends only on the expected length, so a
/// caller cannot find the token byte by byte by timing refusals.
fn tokens_match(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != given.len());
    for (i, &byte) in expected.iter().enumerate() {
        let other = given.get(i).copied().unwrap_or(!byte);
        diff |= std::hint::black_box(byte ^ other);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(network: &str, token: Option<&str>) -> BridgeIdentity {
        let mut id = BridgeIdentity::new(network, format!("{network}-1"));
        id.auth_token = token.map(str::to_string);
        id
    }

    fn request_from(network: &str, token: Option<&str>) -> HandshakeRequest {
        parse_request(&request_text(&identity(network, token))).unwrap()
    }

    #[test]
    fn request_has_the_protocol_fields() {
        let value: serde_json::Value = serde_json::from_str(&request_text(&identity("beta", None))).unwrap();
        assert_eq!(value["network_id"], "beta");
        assert_eq!(value["instance_id"], "beta-1");
        assert_eq!(value["protocol_version"], "1.0");
        assert!(value["auth_token"].is_null());
        assert_eq!(value["capabilities"], serde_json::json!(["actor_messaging"]));
    }

    #[test]
    fn matching_token_is_accepted_and_mismatch_refused() {
        let alpha = identity("alpha", Some("shared-secret"));
        assert_eq!(
            check_request(&request_from("beta", Some("shared-secret")), &alpha),
            Ok(())
        );
        assert_eq!(
            check_request(&request_from("beta", Some("shared-secreT")), &alpha),
            Err(Refusal::TokenMismatch)
        );
        assert_eq!(
            check_request(&request_from("beta", Some("shared")), &alpha),
            Err(Refusal::TokenMismatch)
        );
    }

    #[test]
    fn null_token_counts_as_empty() {
        assert_eq!(
            check_request(&request_from("beta", None), &identity("alpha", Some("s"))),
            Err(Refusal::TokenMismatch)
        );
        assert_eq!(
            check_request(&request_from("beta", None), &identity("alpha", Some(""))),
            Ok(())
        );
    }

    #[test]
    fn acceptor_without_token_accepts_anyone() {
        assert_eq!(
            check_request(&request_from("beta", Some("x")), &identity("alpha", None)),
            Ok(())
        );
    }

    #[test]
    fn refusal_reads_as_the_protocol_says_on_the_dialer() {
        let alpha = identity("alpha", Some("s"));
        let text = reply_text(&alpha, Err(&Refusal::TokenMismatch));
        let err = parse_reply(&text).unwrap_err();
        assert_eq!(err.to_string(), "handshake refused: auth_token mismatch");
        let full = parse_reply(&reply_text(&alpha, Err(&Refusal::MaxConnections))).unwrap_err();
        assert_eq!(full.to_string(), "handshake refused: max_connections reached");
    }

    #[test]
    fn success_reply_names_the_acceptor() {
        let peer = parse_reply(&reply_text(&identity("alpha", None), Ok(()))).unwrap();
        assert_eq!(
            peer,
            PeerInfo {
                network_id: "alpha".into(),
                instance_id: "alpha-1".into()
            }
        );
        let value: serde_json::Value =
            serde_json::from_str(&reply_text(&identity("alpha", None), Ok(()))).unwrap();
        assert!(value["error"].is_null());
        assert_eq!(value["success"], true);
    }

    #[test]
    fn other_versions_and_bad_ids_are_refused() {
        let alpha = identity("alpha", None);
        let mut request = request_from("beta", None);
        request.protocol_version = "2.0".into();
        assert!(matches!(
            check_request(&request, &alpha),
            Err(Refusal::UnsupportedVersion(_))
        ));
        assert_eq!(
            check_request(&request_from("alpha", None), &alpha),
            Err(Refusal::SameNetworkId)
        );
        assert_eq!(
            check_request(&request_from("", None), &alpha),
            Err(Refusal::EmptyNetworkId)
        );
    }

    #[test]
    fn a_first_frame_of_another_shape_is_malformed() {
        assert!(matches!(
            parse_request(r#"{"hello": 1}"#),
            Err(HandshakeError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply("garbage"),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn token_comparison_is_exact() {
        assert!(tokens_match(b"abc", b"abc"));
        assert!(!tokens_match(b"abc", b"abd"));
        assert!(!tokens_match(b"abc", b"abcd"));
        assert!(!tokens_match(b"abc", b""));
        assert!(tokens_match(b"", b""));
    }
}
