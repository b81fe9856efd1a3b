//! Acknowledged delivery and per-target credits (docs/delivery.md): the
//! sender's outbox and credits, the receiver's inbound log. No I/O here; the
//! session's reader and writer move these frames.

mod credits;
mod durable;
mod inbound;
mod outbox;

pub(crate) use credits::{Credits, NoCredit, cost, credit_batch, fits};
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
    /// Bytes per credit this side charges as a receiver: a message costs
    /// 1 + its DATA frame's length / this. Absent from peers that count one
    /// credit per message (older 1.1 peers of this project); costs apply only
    /// when both sides state it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) credit_bytes: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::DeliveryOffer;

    #[test]
    fn the_byte_cost_is_optional_in_the_handshake_both_ways() {
        // An older peer's offer: one credit per message.
        let older: DeliveryOffer =
            serde_json::from_str(r#"{"incarnation": 7, "target_window": 64}"#).unwrap();
        assert_eq!(older.credit_bytes, None);
        let newer: DeliveryOffer =
            serde_json::from_str(r#"{"incarnation": 7, "target_window": 64, "credit_bytes": 2048}"#).unwrap();
        assert_eq!(newer.credit_bytes, Some(2048));
        // Not stated, the object is the older one exactly; stated, an older
        // peer's reading of it ignores the unknown field.
        let unstated = DeliveryOffer {
            credit_bytes: None,
            ..newer
        };
        assert_eq!(
            serde_json::to_string(&unstated).unwrap(),
            r#"{"incarnation":7,"target_window":64}"#
        );
        assert_eq!(
            serde_json::to_string(&newer).unwrap(),
            r#"{"incarnation":7,"target_window":64,"credit_bytes":2048}"#
        );
    }
}
