//! Errors of the distributed layer: each wraps the layer it came from.

use std::fmt;

use crate::bridge::{BridgeError, SendError as BridgeSendError};
use crate::discovery::DiscoveryError;
use crate::runtime::{RuntimeError, SendError};

/// Why an operation of a [`DistributedNetwork`](super::DistributedNetwork)
/// failed. Each variant wraps the error of the layer it came from, whose
/// `Display` text it shows unchanged (and returns as `source()`).
#[derive(Debug)]
#[non_exhaustive]
pub enum DistributedError {
    /// The local network refused (duplicate node, already started, thread
    /// not started…).
    Runtime(RuntimeError),
    /// A message for a local node was not delivered (unknown node or port,
    /// inbox full); the message is inside.
    Send(SendError),
    /// The bridge failed: bind, dial, handshake, or it is shutting down.
    Bridge(BridgeError),
    /// A message for another network was not queued; the message is inside
    /// (`into_message`).
    NotSent(BridgeSendError),
    /// The discovery client could not start (a bad endpoint, or its thread).
    Discovery(DiscoveryError),
    /// An actor or network id that cannot be used (empty, or containing `@`).
    InvalidName(String),
    /// The admin listener could not listen on `admin_bind`.
    Admin {
        /// The address as configured.
        bind: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The call needs `start()` first.
    NotStarted,
    /// `start()` was called twice.
    AlreadyStarted,
}

impl fmt::Display for DistributedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DistributedError::Runtime(e) => e.fmt(f),
            DistributedError::Send(e) => e.fmt(f),
            DistributedError::Bridge(e) => e.fmt(f),
            DistributedError::NotSent(e) => e.fmt(f),
            DistributedError::Discovery(e) => e.fmt(f),
            DistributedError::InvalidName(why) => f.write_str(why),
            DistributedError::Admin { bind, source } => write!(
                f,
                "cannot start the admin listener on {bind}: {source} (change admin_bind or --admin)"
            ),
            DistributedError::NotStarted => {
                f.write_str("the distributed network is not started; call start() first")
            }
            DistributedError::AlreadyStarted => f.write_str("the distributed network is already started"),
        }
    }
}

impl std::error::Error for DistributedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DistributedError::Runtime(e) => Some(e),
            DistributedError::Send(e) => Some(e),
            DistributedError::Bridge(e) => Some(e),
            DistributedError::NotSent(e) => Some(e),
            DistributedError::Discovery(e) => Some(e),
            DistributedError::Admin { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<RuntimeError> for DistributedError {
    fn from(e: RuntimeError) -> Self {
        DistributedError::Runtime(e)
    }
}

impl From<SendError> for DistributedError {
    fn from(e: SendError) -> Self {
        DistributedError::Send(e)
    }
}

impl DistributedError {
    /// The message a failed send hands back, if this error came from one.
    pub fn into_message(self) -> Option<crate::message::Message> {
        match self {
            DistributedError::NotSent(e) => Some(e.into_message().payload),
            DistributedError::Send(e) => Some(e.into_message()),
            _ => None,
        }
    }
}

impl From<BridgeSendError> for DistributedError {
    fn from(e: BridgeSendError) -> Self {
        DistributedError::NotSent(e)
    }
}

impl From<BridgeError> for DistributedError {
    fn from(e: BridgeError) -> Self {
        DistributedError::Bridge(e)
    }
}

impl From<DiscoveryError> for DistributedError {
    fn from(e: DiscoveryError) -> Self {
        DistributedError::Discovery(e)
    }
}
