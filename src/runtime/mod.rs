//! The in-process actor runtime: actors, networks, scheduling and backpressure.
//! `docs/runtime.md` explains the model for actor authors.

mod actor;
mod catalog;
mod config;
mod error;
mod events;
mod network;
mod node;
mod origin;
mod scheduler;
mod state;
mod stream;
mod wake;

pub use actor::{Actor, ActorContext, ActorError, AwaitRule, FnActor, Forward, Threading};
pub use catalog::{Passthrough, Record, Recorder, RecorderLog};
pub use config::NetworkConfig;
pub use error::{RuntimeError, SendError, SendErrorKind};
pub use events::NetworkEvent;
pub use network::Network;
pub use origin::Origin;
pub(crate) use origin::{Consumed, Envelope, Receipt, RemoteSend, RemoteSource, Room, Source};
pub(crate) use scheduler::with_turns_deferred;
pub use stream::{StreamError, StreamFrame, StreamHandle, StreamWriter, stream_channel};
