//! The one route from every send API to the wire: at-most-once messages go
//! to their session's data lane, acknowledged ones into their network's
//! outbox; both under the peer's per-target credits when it grants them.
//! Every failure hands the message back.

use std::time::{Duration, Instant};

use super::config::DeliveryMode;
use super::delivery::PushError;
use super::error::{BridgeError, SendError};
use super::hub::Hub;
use super::protocol::{Outbound, RemoteMessage};
use super::session::{Outgoing, Wire};
use crate::message::Message;

/// How one message is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendOptions {
    /// Delivery mode of this message.
    pub mode: DeliveryMode,
    /// How long the send may wait for room (credit, queue or outbox); zero:
    /// not at all.
    pub timeout: Duration,
}

impl SendOptions {
    /// Options for `mode`, waiting up to `timeout`.
    pub fn new(mode: DeliveryMode, timeout: Duration) -> Self {
        SendOptions { mode, timeout }
    }
}

/// Sends `message`; `held` says whether a link to a network is held (so an
/// acknowledged message may wait in the outbox while it is down).
pub(crate) fn send(
    hub: &Hub,
    message: RemoteMessage,
    options: SendOptions,
    held: impl Fn(&str) -> bool,
) -> Result<(), SendError> {
    if hub.is_stopping() {
        return Err(SendError::new(BridgeError::ShuttingDown, message));
    }
    let network = message.target_network.as_str();
    let session = hub.sessions.get(network);
    match options.mode {
        DeliveryMode::AtMostOnce => match session {
            Some(session) => session.send(message, options.timeout),
            None => {
                let network = network.to_string();
                Err(SendError::new(BridgeError::NoConnection(network), message))
            }
        },
        DeliveryMode::Acknowledged => {
            let known = session.is_some() || held(network) || hub.existing_outbox(network).is_some();
            if !known {
                let network = network.to_string();
                return Err(SendError::new(BridgeError::NoConnection(network), message));
            }
            send_acknowledged(hub, message, options.timeout)
        }
    }
}

/// Sends a message given by its parts (`Session::send_parts`): at most
/// once on the live session, without building its envelope when the peer
/// reads BATCH frames; acknowledged as [`send`] does. The payload comes
/// back on failure.
pub(crate) fn send_parts(
    hub: &Hub,
    parts: &Outbound<'_>,
    payload: Message,
    options: SendOptions,
    held: impl Fn(&str) -> bool,
) -> Result<(), (BridgeError, Message)> {
    if options.mode == DeliveryMode::AtMostOnce {
        if hub.is_stopping() {
            return Err((BridgeError::ShuttingDown, payload));
        }
        return match hub.sessions.get(parts.target_network) {
            Some(session) => session.send_parts(parts, payload, options.timeout),
            None => Err((
                BridgeError::NoConnection(parts.target_network.to_string()),
                payload,
            )),
        };
    }
    let message = parts.to_remote(&hub.identity.network_id, payload);
    send(hub, message, options, held).map_err(|err| {
        let (error, message) = err.into_parts();
        (error, message.payload)
    })
}

/// Into the network's outbox: with a credit of the live session when there
/// is one; without, when the link is down (the replay then starts with
/// those messages spent).
fn send_acknowledged(hub: &Hub, message: RemoteMessage, timeout: Duration) -> Result<(), SendError> {
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    let network = message.target_network.clone();
    let target = message.target_actor.clone();
    let (data_frame, credit_from) = loop {
        let Some(session) = hub.sessions.get(&network) else {
            let frame = match super::frame::encode_data(&message) {
                Ok(frame) => frame,
                Err(err) => return Err(SendError::new(BridgeError::Encode(err.to_string()), message)),
            };
            break (frame, None);
        };
        if session.delivery.is_none() {
            let reason = match session.peer.wire {
                Wire::V10 => "it speaks protocol 1.0 (async Reflow)".to_string(),
                Wire::V11 { .. } => "it does not offer the delivery features".to_string(),
            };
            return Err(SendError::new(
                BridgeError::DeliveryUnavailable {
                    network_id: network,
                    reason,
                },
                message,
            ));
        }
        let frame = match session.encode(&message) {
            Ok(Outgoing::Binary(frame)) => frame,
            // Delivery is only offered in 1.1 handshakes, and `encode` makes
            // no BATCH entry; answer rather than panic.
            Ok(Outgoing::Text(_) | Outgoing::Batch { .. }) => {
                let reason = "its session speaks protocol 1.0".to_string();
                let error = BridgeError::DeliveryUnavailable {
                    network_id: network,
                    reason,
                };
                return Err(SendError::new(error, message));
            }
            Err(error) => return Err(SendError::new(error, message)),
        };
        match session.take_credit(&target, frame.len(), deadline) {
            Ok(cost) => break (frame, Some((session, cost))),
            // The session ended while waiting: try its successor, or none.
            Err(BridgeError::ConnectionClosed(_)) => continue,
            Err(error) => return Err(SendError::new(error, message)),
        }
    };
    let outbox = hub.outbox(&network);
    match outbox.push(&target, &data_frame, deadline) {
        Ok(seq) => {
            log::debug!("Message {seq} for {target}@{network} is in the outbox");
            if let Some(session) = hub.sessions.get(&network) {
                session.wake();
            }
            Ok(())
        }
        Err(why) => {
            if let Some((session, cost)) = &credit_from
                && let Some(delivery) = &session.delivery
            {
                delivery.credits.grant(&target, u64::from(*cost));
            }
            let error = match why {
                PushError::Full => BridgeError::OutboxFull {
                    network_id: network,
                    limit: format!(
                        "{} messages or {} bytes",
                        hub.config.delivery.outbox_messages, hub.config.delivery.outbox_bytes
                    ),
                },
                PushError::Journal(why) => BridgeError::Journal(why),
            };
            Err(SendError::new(error, message))
        }
    }
}
