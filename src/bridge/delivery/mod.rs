//! Acknowledged delivery and per-target credits (docs/delivery.md): the
//! sender's outbox and credits, the receiver's inbound log. No I/O here; the
//! session's reader and writer move these frames.

mod credits;
mod durable;
mod inbound;
mod outbox;

pub(crate) use credits::{Credits, NoCredit};
pub(crate) use durable::{Reopened, reopen};
pub(crate) use inbound::{Admit, InboundLog};
pub(crate) use outbox::{Limits, Outbox, PushError, Store};

/// What a 1.1 peer states about acknowledged delivery and credits in its
/// handshake frame (the `delivery` field). Both sides must state it for
/// either feature to be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct DeliveryOffer {
    /// The sender's incarnation: the space its sequence numbers belong to.
    pub(crate) incarnation: u64,
    /// Messages this side accepts per target actor before it grants more
    /// (its credit window as a receiver).
    pub(crate) target_window: u32,
}
