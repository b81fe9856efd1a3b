//! The bridge handshake, without I/O: what each side writes, and what it
//! makes of what it reads. The dialer offers protocol 1.1 inside a valid 1.0
//! first frame; an acceptor that speaks 1.1 answers with a challenge that a
//! 1.0 dialer never sees, and both prove they know the token without sending
//! it (`auth.rs`). A peer that answers as 1.0 is spoken to in 1.0.
//!
//! ```text
//! dialer                                        acceptor
//!   | -- request {ids, protocol_version,           |
//!   |    auth_token: null, capabilities +          |
//!   |    "bridge-1.1", nonce, max_message_bytes} -> | on_request()
//!   |                                              |   1.0 dialer: token check, reply (done)
//!   | <- challenge {protocol_version: "1.1", ids,  |   1.1 dialer: challenge with the
//!   |    nonce, proof, max_message_bytes} -------- |   acceptor's proof
//!   | on_reply(): identity, acceptor's proof       |
//!   | -- {proof} ---------------------------------> | Challenged::check(): dialer's proof
//!   | <- reply {success, ids, error} ------------- |
//!   | on_result()                                  |
//!   |  ...binary typed frames from here on (1.1)   |
//! ```
//!
//! Against a 1.0 acceptor the challenge never comes: its 1.0 reply ends the
//! handshake. A dialer with a token refuses a 1.0 acceptor (it cannot prove
//! it knows the token) unless the endpoint is configured for legacy auth, in
//! which case it dials again and sends the token in clear.

use serde::{Deserialize, Serialize};

use super::delivery::DeliveryOffer;

use super::auth::{self, Direction, Nonce, Transcript};
use super::batch;
use super::config::BridgeIdentity;
use super::error::HandshakeError;
use super::session::Wire;
use crate::names::{check_id, escaped};
use crate::secret::Secret;

/// The protocol version written in the 1.0-shaped frames.
pub(crate) const PROTOCOL_VERSION: &str = "1.0";
/// The version an acceptor's challenge names.
pub(crate) const PROTOCOL_V11: &str = "1.1";
/// The capability a dialer lists to offer protocol 1.1.
pub(crate) const CAPABILITY_V11: &str = "bridge-1.1";

/// The dialer's first frame (1.0 fields, plus the 1.1 offer).
#[derive(Serialize, Deserialize)]
pub(crate) struct HandshakeRequest {
    pub(crate) network_id: String,
    pub(crate) instance_id: String,
    pub(crate) protocol_version: String,
    #[serde(default, with = "crate::secret::optional_text")]
    pub(crate) auth_token: Option<Secret>,
    #[serde(default)]
    pub(crate) capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_message_bytes: Option<u64>,
    /// The delivery features offered (1.1 only; absent from older peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) delivery: Option<DeliveryOffer>,
}

/// Never prints the token.
impl std::fmt::Debug for HandshakeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeRequest")
            .field("network_id", &escaped(&self.network_id).to_string())
            .field("instance_id", &escaped(&self.instance_id).to_string())
            .field("auth_token", &self.auth_token)
            .finish_non_exhaustive()
    }
}

impl HandshakeRequest {
    fn offers_v11(&self) -> bool {
        self.capabilities.iter().any(|c| c == CAPABILITY_V11) && self.nonce.is_some()
    }
}

/// The acceptor's 1.0 answer, and the last frame of a 1.1 handshake.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandshakeReply {
    pub(crate) success: bool,
    pub(crate) network_id: String,
    pub(crate) instance_id: String,
    #[serde(default)]
    pub(crate) error: Option<String>,
}

/// The acceptor's 1.1 challenge, sent only to a dialer that offered 1.1.
#[derive(Debug, Serialize, Deserialize)]
struct Challenge {
    protocol_version: String,
    network_id: String,
    instance_id: String,
    nonce: String,
    /// HMAC proof that the acceptor knows the token; null when it has none.
    proof: Option<String>,
    max_message_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delivery: Option<DeliveryOffer>,
    /// The extensions the acceptor reads, listed only when the dialer
    /// listed them too (`bridge-batch`); absent from earlier peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    capabilities: Vec<String>,
}

/// The dialer's proof frame. `declined` is set by a dialer that will not go
/// on (the acceptor's proof was missing or wrong), so that an acceptor
/// without a token does not take a null proof for a tokenless dialer.
#[derive(Debug, Serialize, Deserialize)]
struct DialerProof {
    proof: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    declined: bool,
}

/// The proof frame of a dialer that will not go on because the acceptor's
/// proof did not check out: it tells the acceptor, whose operator then sees
/// the refusal in its own log. It carries nothing secret.
pub(crate) fn decline_frame() -> String {
    serde_json::to_string(&DialerProof {
        proof: None,
        declined: true,
    })
    .unwrap_or_default()
}

/// Why a dialer refuses an acceptor whose proof is wrong.
const WRONG_PROOF: &str = "its proof does not match our auth_token";

/// Whether to send `decline_frame` after `err`: only to an acceptor that
/// showed a (wrong) proof: it has a token, and its operator learns from the
/// refusal in its log that the tokens differ. A stranger without a proof
/// gets nothing more; a 1.0 acceptor has no use for it.
pub(crate) fn worth_declining(err: &HandshakeError) -> bool {
    matches!(err, HandshakeError::Unproven(why) if why == WRONG_PROOF)
}

/// Who is on the other side, once the handshake succeeded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PeerInfo {
    pub(crate) network_id: String,
    pub(crate) instance_id: String,
    pub(crate) wire: Wire,
}

/// Why an acceptor turns a dialer away. `text()` is the reply's `error`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    TokenMismatch,
    ProofMissing,
    ProofMismatch,
    LegacyAuthRefused,
    /// The dialer could not verify this acceptor's proof and said so.
    Declined,
    MaxConnections,
    UnsupportedVersion(String),
    BadId {
        field: &'static str,
        rule: String,
    },
    SameNetworkId,
    LiveInstance {
        instance_id: String,
    },
    BadNonce,
    Internal(String),
}

impl Refusal {
    /// The reason it is counted under (`stats::REFUSAL_REASONS`).
    pub(crate) fn counted_as(&self) -> &'static str {
        match self {
            Refusal::TokenMismatch | Refusal::ProofMissing | Refusal::ProofMismatch | Refusal::Declined => {
                "auth"
            }
            Refusal::LegacyAuthRefused => "legacy_auth",
            Refusal::MaxConnections => "max_connections",
            Refusal::LiveInstance { .. } => "live_instance",
            Refusal::UnsupportedVersion(_)
            | Refusal::BadId { .. }
            | Refusal::SameNetworkId
            | Refusal::BadNonce => "bad_handshake",
            Refusal::Internal(_) => "other",
        }
    }

    pub(crate) fn text(&self) -> String {
        match self {
            // One text for every way of not knowing the token: the dialer
            // learns nothing more than a 1.0 dialer would.
            Refusal::TokenMismatch | Refusal::ProofMissing | Refusal::ProofMismatch => {
                "auth_token mismatch".into()
            }
            Refusal::Declined => {
                "auth_token mismatch (the dialer found this peer's proof missing or wrong)".into()
            }
            Refusal::LegacyAuthRefused => {
                "plaintext auth_token refused (accept_legacy_auth is off): offer protocol 1.1".into()
            }
            Refusal::MaxConnections => "max_connections reached".into(),
            Refusal::UnsupportedVersion(v) => format!(
                "unsupported protocol_version {} (this peer speaks 1.0 and 1.1)",
                escaped(v)
            ),
            Refusal::BadId { field, rule } => format!("{field} is not valid: {rule}"),
            Refusal::SameNetworkId => "network_id is the acceptor's own".into(),
            Refusal::LiveInstance { instance_id } => format!(
                "network already connected as live instance {}",
                escaped(instance_id)
            ),
            Refusal::BadNonce => "nonce must be 64 hex digits".into(),
            Refusal::Internal(why) => why.clone(),
        }
    }
}

fn token_bytes(identity: &BridgeIdentity) -> Option<&[u8]> {
    identity
        .auth_token
        .as_ref()
        .map(|token| token.expose().as_bytes())
}

// ---------------------------------------------------------------- dialer

/// How a dialer introduces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DialMode {
    /// Offer 1.1; `auth_token` is null on the wire.
    Offer,
    /// Protocol 1.0 with the token in clear (an endpoint configured for legacy auth).
    LegacyPlaintext,
}

/// The dialer's side of one handshake.
pub(crate) struct Dialer<'a> {
    identity: &'a BridgeIdentity,
    expected: Option<&'a str>,
    mode: DialMode,
    nonce: Nonce,
    max_message_bytes: usize,
    delivery: Option<DeliveryOffer>,
    /// Offers to read BATCH frames (`BridgeConfig::batch_frames`).
    batch: bool,
}

/// What the dialer does after the acceptor's first answer.
#[derive(Debug)]
pub(crate) enum DialerNext {
    /// A 1.0 acceptor accepted: the session speaks 1.0.
    Done(PeerInfo),
    /// A 1.1 acceptor proved itself: send `frame`, then read its result.
    Prove { frame: String, peer: PeerInfo },
}

impl<'a> Dialer<'a> {
    /// `expected` is the network the dialer means to reach, when it knows.
    pub(crate) fn new(
        identity: &'a BridgeIdentity,
        expected: Option<&'a str>,
        mode: DialMode,
        max_message_bytes: usize,
    ) -> Result<Self, HandshakeError> {
        let nonce =
            Nonce::random().map_err(|err| HandshakeError::Malformed(format!("no random nonce: {err}")))?;
        Ok(Dialer {
            identity,
            expected,
            mode,
            nonce,
            max_message_bytes,
            delivery: None,
            batch: false,
        })
    }

    /// Offers BATCH frames (with 1.1 only) when `offer`.
    pub(crate) fn with_batch(mut self, offer: bool) -> Self {
        self.batch = offer;
        self
    }

    /// Offers the delivery features (with 1.1 only), when `offer` is some.
    pub(crate) fn with_delivery(mut self, offer: Option<DeliveryOffer>) -> Self {
        self.delivery = offer;
        self
    }

    /// The first frame, as JSON text.
    pub(crate) fn first_frame(&self) -> String {
        let mut capabilities = self.identity.capabilities.clone();
        let request = match self.mode {
            DialMode::Offer => {
                capabilities.push(CAPABILITY_V11.to_string());
                if self.batch {
                    capabilities.push(batch::CAPABILITY.to_string());
                }
                HandshakeRequest {
                    network_id: self.identity.network_id.clone(),
                    instance_id: self.identity.instance_id.clone(),
                    protocol_version: PROTOCOL_VERSION.to_string(),
                    auth_token: None,
                    capabilities,
                    nonce: Some(self.nonce.to_hex()),
                    max_message_bytes: Some(self.max_message_bytes as u64),
                    delivery: self.delivery,
                }
            }
            DialMode::LegacyPlaintext => HandshakeRequest {
                network_id: self.identity.network_id.clone(),
                instance_id: self.identity.instance_id.clone(),
                protocol_version: PROTOCOL_VERSION.to_string(),
                auth_token: self.identity.auth_token.clone(),
                capabilities,
                nonce: None,
                max_message_bytes: None,
                delivery: None,
            },
        };
        serde_json::to_string(&request).unwrap_or_default()
    }

    /// Reads the acceptor's first answer.
    pub(crate) fn on_reply(&self, text: &str) -> Result<DialerNext, HandshakeError> {
        if let (DialMode::Offer, Ok(challenge)) = (self.mode, serde_json::from_str::<Challenge>(text)) {
            return self.on_challenge(challenge);
        }
        let reply: HandshakeReply = serde_json::from_str(text)
            .map_err(|err| HandshakeError::Malformed(format!("reply is not a handshake reply: {err}")))?;
        if !reply.success {
            let why = reply.error.unwrap_or_else(|| "no reason given".to_string());
            return Err(HandshakeError::Refused(escaped(&why).to_string()));
        }
        self.check_identity(&reply.network_id, &reply.instance_id)?;
        if self.mode == DialMode::Offer && self.identity.auth_token.is_some() {
            return Err(HandshakeError::Unproven(
                "it speaks protocol 1.0 and cannot prove that it knows the auth_token".into(),
            ));
        }
        Ok(DialerNext::Done(PeerInfo {
            network_id: reply.network_id,
            instance_id: reply.instance_id,
            wire: Wire::V10,
        }))
    }

    fn on_challenge(&self, challenge: Challenge) -> Result<DialerNext, HandshakeError> {
        if challenge.protocol_version != PROTOCOL_V11 {
            return Err(HandshakeError::Malformed(format!(
                "challenge names protocol {}",
                escaped(&challenge.protocol_version)
            )));
        }
        self.check_identity(&challenge.network_id, &challenge.instance_id)?;
        let acceptor_nonce = Nonce::from_hex(&challenge.nonce)
            .map_err(|_| HandshakeError::Malformed("challenge nonce is not 64 hex digits".into()))?;
        let transcript = Transcript {
            dialer_network: &self.identity.network_id,
            dialer_instance: &self.identity.instance_id,
            acceptor_network: &challenge.network_id,
            acceptor_instance: &challenge.instance_id,
            dialer_nonce: &self.nonce,
            acceptor_nonce: &acceptor_nonce,
        };
        let proof = match token_bytes(self.identity) {
            Some(token) => {
                let Some(theirs) = challenge.proof.as_deref() else {
                    return Err(HandshakeError::Unproven("it has no auth_token to prove".into()));
                };
                if auth::verify(token, Direction::AcceptorToDialer, &transcript, theirs).is_err() {
                    return Err(HandshakeError::Unproven(WRONG_PROOF.into()));
                }
                Some(auth::prove_hex(token, Direction::DialerToAcceptor, &transcript))
            }
            None => None,
        };
        let frame = serde_json::to_string(&DialerProof {
            proof,
            declined: false,
        })
        .unwrap_or_default();
        let peer_max_message = usize::try_from(challenge.max_message_bytes).unwrap_or(usize::MAX);
        Ok(DialerNext::Prove {
            frame,
            peer: PeerInfo {
                network_id: challenge.network_id,
                instance_id: challenge.instance_id,
                wire: Wire::V11 {
                    peer_max_message,
                    delivery: self.delivery.and(challenge.delivery),
                    batch: self.batch && challenge.capabilities.iter().any(|c| c == batch::CAPABILITY),
                },
            },
        })
    }

    /// Reads the acceptor's last frame of a 1.1 handshake.
    pub(crate) fn on_result(&self, text: &str) -> Result<(), HandshakeError> {
        let reply: HandshakeReply = serde_json::from_str(text)
            .map_err(|err| HandshakeError::Malformed(format!("result is not a handshake reply: {err}")))?;
        if reply.success {
            Ok(())
        } else {
            let why = reply.error.unwrap_or_else(|| "no reason given".to_string());
            Err(HandshakeError::Refused(escaped(&why).to_string()))
        }
    }

    fn check_identity(&self, network_id: &str, instance_id: &str) -> Result<(), HandshakeError> {
        for (field, id) in [("network_id", network_id), ("instance_id", instance_id)] {
            if let Err(rule) = check_id(id) {
                return Err(HandshakeError::Malformed(format!(
                    "acceptor's {field} is not valid: {rule}"
                )));
            }
        }
        match self.expected {
            Some(expected) if expected != network_id => Err(HandshakeError::WrongNetwork {
                expected: expected.to_string(),
                found: network_id.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

// ---------------------------------------------------------------- acceptor

/// The acceptor's settings for a handshake.
pub(crate) struct AcceptorPolicy<'a> {
    pub(crate) identity: &'a BridgeIdentity,
    pub(crate) accept_legacy_auth: bool,
    pub(crate) max_message_bytes: usize,
    /// Offered back to a dialer that offers delivery.
    pub(crate) delivery: Option<DeliveryOffer>,
    /// Reads BATCH frames from a dialer that offers them (`BridgeConfig::batch_frames`).
    pub(crate) batch: bool,
}

/// What the acceptor does with a first frame.
#[derive(Debug)]
pub(crate) enum AcceptorNext {
    /// A 1.0 dialer that passed: reply success (once it has a place).
    Accept10,
    /// A 1.1 dialer: send `frame`, read its proof, check it with `state`.
    Challenge { frame: String, state: Challenged },
}

/// A 1.1 handshake waiting for the dialer's proof.
#[derive(Debug)]
pub(crate) struct Challenged {
    dialer_network: String,
    dialer_instance: String,
    dialer_nonce: Nonce,
    acceptor_nonce: Nonce,
    pub(crate) peer_max_message: usize,
    /// The dialer's offer, when both sides offered delivery.
    pub(crate) peer_delivery: Option<DeliveryOffer>,
    /// Both sides offered BATCH frames.
    pub(crate) batch: bool,
}

/// Reads the dialer's first frame. Anything else is `Malformed`.
pub(crate) fn parse_request(text: &str) -> Result<HandshakeRequest, HandshakeError> {
    serde_json::from_str(text).map_err(|err| {
        HandshakeError::Malformed(format!(
            "first frame is not a handshake request: {}",
            escaped(&err.to_string())
        ))
    })
}

/// The acceptor's decision on a first frame (before any capacity check).
pub(crate) fn on_request(
    request: &HandshakeRequest,
    policy: &AcceptorPolicy<'_>,
) -> Result<AcceptorNext, Refusal> {
    let acceptor = policy.identity;
    for (field, id) in [
        ("network_id", &request.network_id),
        ("instance_id", &request.instance_id),
    ] {
        if let Err(rule) = check_id(id) {
            return Err(Refusal::BadId {
                field,
                rule: rule.to_string(),
            });
        }
    }
    if !request.protocol_version.starts_with("1.") && request.protocol_version != "1" {
        return Err(Refusal::UnsupportedVersion(request.protocol_version.clone()));
    }
    if request.network_id == acceptor.network_id {
        return Err(Refusal::SameNetworkId);
    }
    if request.offers_v11() {
        return challenge(request, policy);
    }
    if let Some(expected) = &acceptor.auth_token {
        if !policy.accept_legacy_auth {
            return Err(Refusal::LegacyAuthRefused);
        }
        let given = request.auth_token.as_ref().map_or("", Secret::expose);
        if !auth::tokens_equal(expected.expose().as_bytes(), given.as_bytes()) {
            return Err(Refusal::TokenMismatch);
        }
    }
    Ok(AcceptorNext::Accept10)
}

fn challenge(request: &HandshakeRequest, policy: &AcceptorPolicy<'_>) -> Result<AcceptorNext, Refusal> {
    let acceptor = policy.identity;
    let dialer_nonce =
        Nonce::from_hex(request.nonce.as_deref().unwrap_or("")).map_err(|_| Refusal::BadNonce)?;
    let acceptor_nonce =
        Nonce::random().map_err(|err| Refusal::Internal(format!("no random nonce: {err}")))?;
    let state = Challenged {
        dialer_network: request.network_id.clone(),
        dialer_instance: request.instance_id.clone(),
        dialer_nonce,
        acceptor_nonce,
        peer_max_message: request
            .max_message_bytes
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        peer_delivery: policy.delivery.and(request.delivery),
        batch: policy.batch && request.capabilities.iter().any(|c| c == batch::CAPABILITY),
    };
    let proof = token_bytes(acceptor)
        .map(|token| auth::prove_hex(token, Direction::AcceptorToDialer, &state.transcript(acceptor)));
    let frame = Challenge {
        protocol_version: PROTOCOL_V11.to_string(),
        network_id: acceptor.network_id.clone(),
        instance_id: acceptor.instance_id.clone(),
        nonce: state.acceptor_nonce.to_hex(),
        proof,
        max_message_bytes: policy.max_message_bytes as u64,
        delivery: state.peer_delivery.and(policy.delivery),
        capabilities: if state.batch {
            vec![batch::CAPABILITY.to_string()]
        } else {
            Vec::new()
        },
    };
    Ok(AcceptorNext::Challenge {
        frame: serde_json::to_string(&frame).unwrap_or_default(),
        state,
    })
}

impl Challenged {
    fn transcript<'a>(&'a self, acceptor: &'a BridgeIdentity) -> Transcript<'a> {
        Transcript {
            dialer_network: &self.dialer_network,
            dialer_instance: &self.dialer_instance,
            acceptor_network: &acceptor.network_id,
            acceptor_instance: &acceptor.instance_id,
            dialer_nonce: &self.dialer_nonce,
            acceptor_nonce: &self.acceptor_nonce,
        }
    }

    /// Checks the dialer's proof frame.
    pub(crate) fn check(&self, text: &str, acceptor: &BridgeIdentity) -> Result<(), Refusal> {
        let Ok(frame) = serde_json::from_str::<DialerProof>(text) else {
            return Err(Refusal::ProofMissing);
        };
        if frame.declined {
            return Err(Refusal::Declined);
        }
        let Some(token) = token_bytes(acceptor) else {
            return Ok(());
        };
        let Some(proof) = frame.proof else {
            return Err(Refusal::ProofMissing);
        };
        auth::verify(
            token,
            Direction::DialerToAcceptor,
            &self.transcript(acceptor),
            &proof,
        )
        .map_err(|_| Refusal::ProofMismatch)
    }
}

/// The acceptor's reply frame (1.0 shape) as JSON text.
pub(crate) fn reply_text(acceptor: &BridgeIdentity, outcome: Result<(), &Refusal>) -> String {
    let reply = HandshakeReply {
        success: outcome.is_ok(),
        network_id: acceptor.network_id.clone(),
        instance_id: acceptor.instance_id.clone(),
        error: outcome.err().map(Refusal::text),
    };
    serde_json::to_string(&reply).unwrap_or_default()
}

/// Reads a 1.0 reply on the dialer's side (for tools and fuzzing).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_reply(text: &str) -> Result<HandshakeReply, HandshakeError> {
    let reply: HandshakeReply = serde_json::from_str(text)
        .map_err(|err| HandshakeError::Malformed(format!("reply is not a handshake reply: {err}")))?;
    if !reply.success {
        let why = reply.error.unwrap_or_else(|| "no reason given".to_string());
        return Err(HandshakeError::Refused(escaped(&why).to_string()));
    }
    Ok(reply)
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
