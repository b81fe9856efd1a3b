//! Where a message came from, and the receipt that tells its sender when a
//! tick has consumed it.
//!
//! Every message in an inbox carries its [`Source`]: the application, a node
//! of this network, or an actor of another network (over the bridge). An
//! actor reads it as an [`Origin`] and can answer it with
//! [`ActorContext::reply`](super::ActorContext::reply).
//!
//! A message that arrived with acknowledged delivery or under a credit window
//! also carries a [`Receipt`]. The runtime completes it once the tick that
//! took the message has returned (successfully, with an error, or by
//! panicking): the message is then *consumed*, and only then may its sender
//! forget it. A receipt that is dropped unfinished (the process stopped with
//! the message still queued) tells nobody, so the sender replays it.

use std::sync::{Arc, Weak};

use super::node::Node;
use crate::message::Message;

/// Where a message an actor received came from, as the actor sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Sent from outside the graph: an application thread
    /// (`Network::send_to_actor`), an initial packet, or a node that has
    /// since been removed.
    External,
    /// Emitted by the node of this network with this name.
    Node(String),
    /// Arrived over the bridge from `actor` in `network`. `actor` is
    /// `"unknown"` when the sender was not an actor.
    Remote {
        /// The sending peer's network id.
        network: String,
        /// The sending actor's node name in that network.
        actor: String,
    },
}

/// The sender of a message in an inbox (kept with the message).
#[derive(Clone, Default)]
pub(crate) enum Source {
    #[default]
    External,
    /// Weak: inboxes hold sources of any node, and a strong reference could
    /// make a cycle between two nodes' inboxes that is never freed.
    Node(Weak<Node>),
    Remote(Arc<RemoteSource>),
}

/// The sender of a message that came over the bridge.
pub(crate) struct RemoteSource {
    pub(crate) network: String,
    pub(crate) actor: String,
}

impl Source {
    pub(crate) fn node(node: &Arc<Node>) -> Source {
        Source::Node(Arc::downgrade(node))
    }

    pub(crate) fn origin(&self) -> Origin {
        match self {
            Source::External => Origin::External,
            Source::Node(node) => node
                .upgrade()
                .map_or(Origin::External, |n| Origin::Node(n.name().to_string())),
            Source::Remote(remote) => Origin::Remote {
                network: remote.network.clone(),
                actor: remote.actor.clone(),
            },
        }
    }
}

/// Told when messages it issued receipts for have been consumed.
pub(crate) trait Consumed: Send + Sync {
    /// The tick that took the message with this `token`, which held
    /// `units` of the issuer's budget (its credits), has returned. Token 0
    /// names no message: the runtime may report several such receipts of
    /// one issuer at once, their units summed ([`Settlement`]).
    fn consumed(&self, token: u64, units: u32);
}

/// Travels with one message; see the module documentation. Cloning is cheap
/// (a reference count): the deliverer keeps a copy to settle the message
/// itself when it never reaches an inbox. Completing two copies is the
/// deliverer's mistake to avoid.
#[derive(Clone)]
pub(crate) struct Receipt {
    to: Arc<dyn Consumed>,
    token: u64,
    units: u32,
}

impl Receipt {
    pub(crate) fn new(to: Arc<dyn Consumed>, token: u64, units: u32) -> Receipt {
        Receipt { to, token, units }
    }

    /// The message was consumed (or settled without reaching an actor).
    pub(crate) fn complete(self) {
        self.to.consumed(self.token, self.units);
    }
}

/// The receipts of one turn: token-0 receipts to the same issuer in a row
/// are completed as one, their units summed (a stream's credits go back in
/// one call, not one per message); any other receipt at once.
#[derive(Default)]
pub(crate) struct Settlement {
    pending: Option<Receipt>,
}

impl Settlement {
    pub(crate) fn add(&mut self, receipt: Receipt) {
        if receipt.token != 0 {
            receipt.complete();
            return;
        }
        match &mut self.pending {
            Some(pending) if std::ptr::addr_eq(Arc::as_ptr(&pending.to), Arc::as_ptr(&receipt.to)) => {
                pending.units = pending.units.saturating_add(receipt.units);
            }
            _ => {
                if let Some(before) = self.pending.replace(receipt) {
                    before.complete();
                }
            }
        }
    }

    /// Completes what is held.
    pub(crate) fn complete(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.complete();
        }
    }
}

/// A message in an inbox, with its sender and receipt.
pub(crate) struct Envelope {
    pub(crate) message: Message,
    pub(crate) source: Source,
    pub(crate) receipt: Option<Receipt>,
}

impl Envelope {
    pub(crate) fn new(message: Message, source: Source) -> Envelope {
        Envelope {
            message,
            source,
            receipt: None,
        }
    }
}

/// How a message that waits for room in a full inbox is admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Room {
    /// Wait up to this long for room (zero: not at all).
    Wait(std::time::Duration),
    /// Take it even when the inbox is full. Only for a message already
    /// counted against a bound elsewhere (a bridge credit window), so the
    /// inbox stays bounded by its capacity plus those windows.
    Overfill,
}

/// How actors reach actors of other networks; the distributed layer plugs
/// one in when it starts (the runtime knows nothing of the bridge).
pub(crate) trait RemoteSend: Send + Sync {
    /// Sends `message` from node `from` to `actor.port` in `network`,
    /// waiting for room only when `wait` is true. Gives the message back
    /// with a reason on failure.
    fn send_remote(
        &self,
        from: &str,
        network: &str,
        actor: &str,
        port: &str,
        message: Message,
        wait: bool,
    ) -> Result<(), (String, Message)>;
}
