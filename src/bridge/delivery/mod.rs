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
