//! The seam between the bridge and the local network.

use super::error::DeliveryError;
use super::protocol::RemoteMessage;
use crate::message::Message;
use crate::runtime::{Receipt, Room};

/// Where inbound remote messages go. The bridge calls it on the
/// connection's reader thread, one message at a time, in arrival order.
///
/// [`InboundSink::deliver`] may block while the target actor's inbox is
/// full, up to the configured `delivery_timeout`; meanwhile the connection
/// counts as alive and the sender feels TCP backpressure. An error drops
/// that message only: the bridge logs a warning naming the actor and counts
/// it.
pub trait InboundSink: Send + Sync + 'static {
    /// Hands one inbound message to the local side.
    ///
    /// # Errors
    ///
    /// A [`DeliveryError`] when the target does not exist, its inbox stayed
    /// full, or the local network is shutting down; the bridge drops the
    /// message, logs it and counts it.
    fn deliver(&self, message: RemoteMessage) -> Result<(), DeliveryError>;

    /// Hands one message to the local network under the delivery features
    /// (credits, acknowledged delivery): `tracking` says whether it may go
    /// past a full inbox and carries the receipt to complete once the
    /// message is consumed. The default takes the message with
    /// [`InboundSink::deliver`] and counts it consumed on return, which is
    /// right for a sink that does not queue messages.
    ///
    /// # Errors
    /// As [`InboundSink::deliver`]; the receipt must then be left alone (the
    /// bridge settles it).
    fn deliver_tracked(&self, message: RemoteMessage, tracking: Tracking) -> Result<(), DeliveryError> {
        self.deliver(message)?;
        tracking.consumed();
        Ok(())
    }

    /// Hands over one message of a BATCH frame (protocol 1.1 between peers
    /// of this project), whose names borrow the frame; `tracking` as in
    /// [`InboundSink::deliver_tracked`] when the session has the delivery
    /// features, `None` otherwise. The default makes it a [`RemoteMessage`]
    /// and calls [`InboundSink::deliver_tracked`] or [`InboundSink::deliver`];
    /// a BATCH entry carries no id and no timestamp, so `message_id` and
    /// `timestamp` are empty.
    ///
    /// # Errors
    /// As [`InboundSink::deliver`].
    fn deliver_arrival(&self, arrival: Arrival<'_>, tracking: Option<Tracking>) -> Result<(), DeliveryError> {
        let message = RemoteMessage {
            message_id: String::new(),
            source_network: arrival.source_network.to_string(),
            source_actor: arrival.source_actor.to_string(),
            target_network: arrival.target_network.to_string(),
            target_actor: arrival.target_actor.to_string(),
            target_port: arrival.target_port.to_string(),
            payload: arrival.payload,
            timestamp: String::new(),
        };
        match tracking {
            Some(tracking) => self.deliver_tracked(message, tracking),
            None => self.deliver(message),
        }
    }
}

/// A message that arrived in a BATCH frame, by reference: see
/// [`InboundSink::deliver_arrival`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Arrival<'a> {
    /// The sending peer's network, as proved in the handshake.
    pub source_network: &'a str,
    /// The actor that sent it (`"unknown"` when the sender is not an actor).
    pub source_actor: &'a str,
    /// This network.
    pub target_network: &'a str,
    /// The target actor's id in this network.
    pub target_actor: &'a str,
    /// The target actor's input port.
    pub target_port: &'a str,
    /// What is delivered to the port.
    pub payload: Message,
}

/// What travels with a message under the delivery features; see
/// [`InboundSink::deliver_tracked`].
pub struct Tracking {
    pub(crate) receipt: Receipt,
    pub(crate) room: Room,
    /// Whether the reader may run the target actor's turn itself: not for a
    /// sequenced message, whose reader holds its network's handover turn
    /// (another session's reader may be waiting for it) until it returns.
    pub(crate) run_here: bool,
}

impl Tracking {
    /// Whether the message may be taken past a full inbox: it is within the
    /// credit window its sender was granted, so the bound is the window.
    /// When false, wait for room as [`InboundSink::deliver`] does.
    pub fn may_overfill(&self) -> bool {
        self.room == Room::Overfill
    }

    /// Marks the message consumed: its credit goes back to the sender and,
    /// under acknowledged delivery, it is acknowledged. Call it once the
    /// message has been processed, never for a message that was refused.
    pub fn consumed(self) {
        self.receipt.complete();
    }
}

/// Any suitable closure is a sink.
impl<F> InboundSink for F
where
    F: Fn(RemoteMessage) -> Result<(), DeliveryError> + Send + Sync + 'static,
{
    fn deliver(&self, message: RemoteMessage) -> Result<(), DeliveryError> {
        self(message)
    }
}
