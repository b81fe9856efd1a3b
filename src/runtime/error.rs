//! Errors of the local runtime.

use std::fmt;
use std::time::Duration;

use crate::message::Message;

/// Why a network operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RuntimeError {
    UnknownNode(String),
    UnknownPort {
        node: String,
        port: String,
        available: Vec<String>,
    },
    UnknownTemplate(String),
    DuplicateNode(String),
    DuplicateTemplate(String),
    /// The actor's declaration is inconsistent (an await rule naming no inport…).
    InvalidActor {
        node: String,
        reason: String,
    },
    AlreadyStarted,
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
    UnknownNode(String),
    UnknownPort {
        node: String,
        port: String,
    },
    /// The inbox stayed full for the whole wait (zero for `try_` sends).
    Full {
        node: String,
        port: String,
        waited: Duration,
    },
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

    pub fn kind(&self) -> &SendErrorKind {
        &self.kind
    }

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
