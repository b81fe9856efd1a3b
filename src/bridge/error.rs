//! Errors of the bridge: one enum for the bridge as a whole, one for the
//! handshake (wrapped, never flattened), one for the local delivery seam.

use std::fmt;
use std::io;
use std::time::Duration;

/// Why a handshake with a peer did not complete.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The acceptor answered with `success: false`; the text is its `error` field.
    Refused(String),
    /// The peer's frame was not the handshake frame the protocol requires.
    Malformed(String),
    /// Nothing (or not enough) arrived within `handshake_timeout`.
    TimedOut(Duration),
    /// The peer closed the connection before the handshake finished.
    Closed,
    /// The WebSocket upgrade itself failed (not a WebSocket peer, bad HTTP...).
    Upgrade(String),
    /// The socket failed during the handshake.
    Io(io::Error),
    /// This dialer has a token and the acceptor could not prove it knows
    /// it (no 1.1 proof, or a wrong one): nothing was sent to it.
    Unproven(String),
    /// The acceptor answered as another network than the one dialed for.
    WrongNetwork {
        /// The network this dialer expected (`HoldOptions::network_id`).
        expected: String,
        /// The network the acceptor named in its answer.
        found: String,
    },
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Refused(text) => write!(f, "handshake refused: {text}"),
            HandshakeError::Malformed(why) => write!(f, "handshake failed: {why}"),
            HandshakeError::TimedOut(limit) => write!(
                f,
                "handshake timed out after {} ms (raise handshake_timeout if the peer is slow)",
                limit.as_millis()
            ),
            HandshakeError::Closed => f.write_str("handshake failed: the peer closed the connection"),
            HandshakeError::Upgrade(why) => {
                write!(
                    f,
                    "handshake failed: WebSocket upgrade rejected ({why}); is this a bridge port?"
                )
            }
            HandshakeError::Io(err) => write!(f, "handshake failed: {err}"),
            HandshakeError::Unproven(why) if why.contains("protocol 1.0") => write!(
                f,
                "handshake refused: auth_token mismatch: the acceptor did not prove it knows this peer's auth_token \
                 ({why}); set legacy_auth = true for this endpoint only if it is an async Reflow 1.0 peer you trust"
            ),
            HandshakeError::Unproven(why) => write!(
                f,
                "handshake refused: auth_token mismatch: the acceptor did not prove it knows this peer's auth_token \
                 ({why}): a different token on one side, or not the peer this one meant to reach"
            ),
            HandshakeError::WrongNetwork { expected, found } => write!(
                f,
                "handshake refused by this dialer: expected network {expected}, the endpoint answered as {}",
                crate::names::escaped(found)
            ),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::Io(err) => Some(err),
            _ => None,
        }
    }
}

/// Errors of the bridge's public operations.
#[derive(Debug)]
#[non_exhaustive]
pub enum BridgeError {
    /// The listener could not bind `address`.
    Bind {
        /// `bind_address:bind_port` as configured.
        address: String,
        /// The operating system's error (address in use, not on this host…).
        source: io::Error,
    },
    /// `endpoint` is not `host:port` or did not resolve.
    Resolve {
        /// The endpoint as given.
        endpoint: String,
        /// What was wrong with it.
        reason: String,
    },
    /// TCP connect to `endpoint` failed.
    Connect {
        /// The endpoint dialed.
        endpoint: String,
        /// The operating system's error (refused, unreachable…).
        source: io::Error,
    },
    /// TCP connect to `endpoint` did not finish within `connect_timeout`.
    ConnectTimedOut {
        /// The endpoint dialed.
        endpoint: String,
        /// `BridgeConfig::connect_timeout`.
        timeout: Duration,
    },
    /// The handshake with a peer failed.
    Handshake(HandshakeError),
    /// No live connection to the target network.
    NoConnection(String),
    /// The outbound queue to `network_id` stayed full for the whole timeout.
    QueueFull {
        /// The network the message was for.
        network_id: String,
        /// The queue's bound, `BridgeConfig::outbound_queue_capacity` frames.
        capacity: usize,
    },
    /// The connection closed while the message was being queued.
    ConnectionClosed(String),
    /// Actor `target` of `network_id` still had its whole credit window
    /// (`window` credits: messages, or their cost in bytes when both sides
    /// count bytes) held by messages not consumed at the end of the timeout.
    WindowFull {
        /// The network the message was for.
        network_id: String,
        /// The target actor whose window is used up.
        target: String,
        /// The window the peer grants per target actor (its `target_window`),
        /// in credits.
        window: u32,
    },
    /// The outbox of unacknowledged messages to `network_id` stayed full
    /// for the whole timeout.
    OutboxFull {
        /// The network the message was for.
        network_id: String,
        /// The bounds, as text: `DeliveryConfig::outbox_messages` and `outbox_bytes`.
        limit: String,
    },
    /// Acknowledged delivery was asked for toward a peer that cannot do it.
    DeliveryUnavailable {
        /// The network the message was for.
        network_id: String,
        /// Why: it speaks protocol 1.0, or does not offer the feature.
        reason: String,
    },
    /// The durable outbox could not store the message (the text names the
    /// path and the cause).
    Journal(String),
    /// The message could not be encoded.
    Encode(String),
    /// The message holds a kind the peer's protocol cannot carry.
    Unrepresentable {
        /// The network the message was for.
        network_id: String,
        /// Which kind of value, and why protocol 1.0 cannot carry it.
        reason: String,
    },
    /// The encoded message is larger than the peer said it accepts.
    TooLarge {
        /// The network the message was for.
        network_id: String,
        /// The encoded message, in bytes.
        size: usize,
        /// The largest message the peer accepts, in bytes (its
        /// `max_frame_bytes`, told in the handshake).
        limit: usize,
    },
    /// Another instance of the network is connected and alive.
    LiveInstance {
        /// The network both instances claim.
        network_id: String,
        /// The instance already connected.
        instance_id: String,
    },
    /// This bridge already has `max_connections` live connections.
    MaxConnections(usize),
    /// The bridge is shutting down or has shut down.
    ShuttingDown,
    /// A bridge thread could not be started.
    Spawn(io::Error),
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::Bind { address, source } => write!(
                f,
                "cannot listen on {address}: {source} (check bind_address and bind_port)"
            ),
            BridgeError::Resolve { endpoint, reason } => {
                write!(
                    f,
                    "cannot resolve endpoint {endpoint:?}: {reason} (expected host:port)"
                )
            }
            BridgeError::Connect { endpoint, source } => write!(f, "cannot connect to {endpoint}: {source}"),
            BridgeError::ConnectTimedOut { endpoint, timeout } => write!(
                f,
                "connecting to {endpoint} timed out after {} ms (connect_timeout)",
                timeout.as_millis()
            ),
            BridgeError::Handshake(err) => err.fmt(f),
            BridgeError::NoConnection(network) => write!(f, "No connection to network: {network}"),
            BridgeError::QueueFull { network_id, capacity } => write!(
                f,
                "outbound queue to network {network_id} is full ({capacity} frames, \
                 outbound_queue_capacity); the peer is not keeping up"
            ),
            BridgeError::ConnectionClosed(network) => {
                write!(f, "connection to network {network} closed while sending")
            }
            BridgeError::WindowFull {
                network_id,
                target,
                window,
            } => write!(
                f,
                "actor {} of network {network_id} has its credit window ({window} credits) \
                 held by messages not yet consumed; it is not keeping up",
                crate::names::escaped(target)
            ),
            BridgeError::OutboxFull { network_id, limit } => write!(
                f,
                "outbox of unacknowledged messages to network {network_id} is full ({limit}); \
                 the network is not acknowledging"
            ),
            BridgeError::DeliveryUnavailable { network_id, reason } => write!(
                f,
                "acknowledged delivery to network {network_id} is unavailable: {reason}"
            ),
            BridgeError::Journal(why) => write!(f, "durable outbox: {why}"),
            BridgeError::Encode(why) => write!(f, "cannot encode message: {why}"),
            BridgeError::Unrepresentable { network_id, reason } => write!(
                f,
                "network {network_id} speaks protocol 1.0, which cannot carry this message: {reason}"
            ),
            BridgeError::TooLarge {
                network_id,
                size,
                limit,
            } => write!(
                f,
                "message of {size} bytes is larger than network {network_id} accepts ({limit} bytes, its max_frame_bytes)"
            ),
            BridgeError::LiveInstance {
                network_id,
                instance_id,
            } => write!(
                f,
                "network {network_id} is already connected as live instance {}",
                crate::names::escaped(instance_id)
            ),
            BridgeError::MaxConnections(max) => write!(
                f,
                "this bridge already has {max} connections (raise max_connections to allow more)"
            ),
            BridgeError::ShuttingDown => f.write_str("the bridge is shutting down"),
            BridgeError::Spawn(err) => write!(f, "cannot start a bridge thread: {err}"),
        }
    }
}

impl std::error::Error for BridgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BridgeError::Bind { source, .. } | BridgeError::Connect { source, .. } => Some(source),
            BridgeError::Handshake(err) => Some(err),
            BridgeError::Spawn(err) => Some(err),
            _ => None,
        }
    }
}

impl From<HandshakeError> for BridgeError {
    fn from(err: HandshakeError) -> Self {
        BridgeError::Handshake(err)
    }
}

/// A send that failed, with the message handed back. `Debug` and `Display`
/// never print the payload.
pub struct SendError {
    error: BridgeError,
    message: Box<super::protocol::RemoteMessage>,
}

impl SendError {
    pub(crate) fn new(error: BridgeError, message: super::protocol::RemoteMessage) -> Self {
        SendError {
            error,
            message: Box::new(message),
        }
    }

    /// Why the message was not queued.
    pub fn error(&self) -> &BridgeError {
        &self.error
    }

    /// The message, unsent.
    pub fn into_message(self) -> super::protocol::RemoteMessage {
        *self.message
    }

    /// The reason and the message, apart.
    pub fn into_parts(self) -> (BridgeError, super::protocol::RemoteMessage) {
        (self.error, *self.message)
    }
}

impl fmt::Debug for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError")
            .field("error", &self.error)
            .field("message_id", &self.message.message_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<SendError> for BridgeError {
    fn from(err: SendError) -> Self {
        err.error
    }
}

/// Why the local side could not take an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryError {
    /// No actor of that name in the local network.
    UnknownActor(String),
    /// The actor exists but has no such input port.
    UnknownPort {
        /// The actor addressed.
        actor: String,
        /// The port it does not have.
        port: String,
    },
    /// The actor's inbox stayed full for the whole delivery timeout.
    Full,
    /// The local network is shutting down.
    ShuttingDown,
}

impl DeliveryError {
    /// True for errors that name a target that does not exist.
    pub fn is_unknown_target(&self) -> bool {
        matches!(
            self,
            DeliveryError::UnknownActor(_) | DeliveryError::UnknownPort { .. }
        )
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::UnknownActor(actor) => write!(f, "no local actor named {actor}"),
            DeliveryError::UnknownPort { actor, port } => write!(f, "actor {actor} has no input port {port}"),
            DeliveryError::Full => f.write_str("inbox stayed full for the whole delivery_timeout"),
            DeliveryError::ShuttingDown => f.write_str("the local network is shutting down"),
        }
    }
}

impl std::error::Error for DeliveryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_the_protocol() {
        let refused = BridgeError::from(HandshakeError::Refused("auth_token mismatch".into()));
        assert_eq!(refused.to_string(), "handshake refused: auth_token mismatch");
        assert_eq!(
            BridgeError::NoConnection("beta".into()).to_string(),
            "No connection to network: beta"
        );
    }
}
