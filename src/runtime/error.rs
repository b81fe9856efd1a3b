//! Errors of the local runtime.

use std::fmt;
use std::time::Duration;

use crate::message::Message;

/// Why a network operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No node of that name.
    UnknownNode(String),
    /// The node has no port of that name.
    UnknownPort {
        /// The node.
        node: String,
        /// The port asked for.
        port: String,
        /// The ports it has, for the message.
        available: Vec<String>,
    },
    /// No template registered under that id.
    UnknownTemplate(String),
    /// A node of that name exists already.
    DuplicateNode(String),
    /// A template of that id exists already.
    DuplicateTemplate(String),
    /// The actor's declaration is inconsistent (an await rule naming no inport…).
    InvalidActor {
        /// The node it was added as.
        node: String,
        /// What is inconsistent.
        reason: String,
    },
    /// `start()` was called twice.
    AlreadyStarted,
    /// The network is shut down (or shutting down).
    ShutDown,
    /// The OS refused a thread.
    Spawn(std::io::Error),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::UnknownNode(node) => write!(f, "unknown node {node:?}"),
            RuntimeError::UnknownPort {
                node,
                port,
                available,
            } => {
                write!(
                    f,
                    "node {node:?} has no port {port:?} (ports: {})",
                    available.join(", ")
                )
            }
            RuntimeError::UnknownTemplate(id) => write!(f, "no actor template registered as {id:?}"),
            RuntimeError::DuplicateNode(node) => write!(f, "a node named {node:?} exists already"),
            RuntimeError::DuplicateTemplate(id) => write!(f, "a template named {id:?} exists already"),
            RuntimeError::InvalidActor { node, reason } => write!(f, "actor for node {node:?}: {reason}"),
            RuntimeError::AlreadyStarted => f.write_str("the network is already started"),
            RuntimeError::ShutDown => f.write_str("the network is shut down"),
            RuntimeError::Spawn(e) => write!(f, "could not start a thread: {e}"),
        }
    }
}

impl std::error::Error for RuntimeError {}

/// Why `send_to_actor` did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendErrorKind {
    /// No node of that name.
    UnknownNode(String),
    /// The node has no such inport.
    UnknownPort {
        /// The node.
        node: String,
        /// The port asked for.
        port: String,
    },
    /// The inbox stayed full for the whole wait (zero for `try_` sends).
    Full {
        /// The node.
        node: String,
        /// Its inport.
        port: String,
        /// How long the send waited (`NetworkConfig::send_timeout` at most).
        waited: Duration,
    },
    /// The network is shutting down or shut down.
    ShuttingDown,
}

/// A failed send. It hands the message back; `Debug` does not print it.
pub struct SendError {
    kind: SendErrorKind,
    message: Message,
}

impl SendError {
    pub(crate) fn new(kind: SendErrorKind, message: Message) -> Self {
        SendError { kind, message }
    }

    /// Why the send failed.
    pub fn kind(&self) -> &SendErrorKind {
        &self.kind
    }

    /// True when the inbox was full: the same send may succeed later.
    pub fn is_full(&self) -> bool {
        matches!(self.kind, SendErrorKind::Full { .. })
    }

    /// The message that was not delivered.
    pub fn into_message(self) -> Message {
        self.message
    }
}

impl fmt::Debug for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SendErrorKind::UnknownNode(node) => write!(f, "unknown node {node:?}"),
            SendErrorKind::UnknownPort { node, port } => write!(f, "node {node:?} has no inport {port:?}"),
            SendErrorKind::Full { node, port, waited } => write!(
                f,
                "inbox {node}.{port} is full (waited {} ms); the actor is slower than its input",
                waited.as_millis()
            ),
            SendErrorKind::ShuttingDown => f.write_str("the network is shutting down"),
        }
    }
}

impl std::error::Error for SendError {}
