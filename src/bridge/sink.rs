//! The seam between the bridge and the local network.

use super::error::DeliveryError;
use super::protocol::RemoteMessage;

/// Where inbound remote messages go. The bridge calls `deliver` on the
/// connection's reader thread, one message at a time, in arrival order.
///
/// `deliver` may block while the target actor's inbox is full, up to the
/// configured `delivery_timeout`; meanwhile the connection counts as alive and
/// the sender feels TCP backpressure. An error drops that message only: the
/// bridge logs a warning naming the actor and counts it.
pub trait InboundSink: Send + Sync + 'static {
    /// Hands one inbound message to the local side.
    ///
    /// # Errors
    ///
    /// A [`DeliveryError`] when the target does not exist, its inbox stayed
    /// full, or the local network is shutting down; the bridge drops the
    /// message, logs it and counts it.
    fn deliver(&self, message: RemoteMessage) -> Result<(), DeliveryError>;
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
