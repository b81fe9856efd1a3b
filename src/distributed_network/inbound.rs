//! The router: delivers messages that arrive over the bridge to local nodes,
//! and the seam through which actors send to other networks.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::bridge::{Arrival, Bridge, DeliveryError, InboundSink, Outbound, RemoteMessage, Tracking};
use crate::message::Message;
use crate::runtime::{Envelope, Network, RemoteSend, RemoteSource, Room, SendError, SendErrorKind, Source};

/// Hands inbound messages to the local network, waiting up to
/// `delivery_timeout` for room (the bridge keeps the connection alive meanwhile).
pub(crate) struct LocalRouter {
    pub(crate) network: Network,
    pub(crate) delivery_timeout: Duration,
}

impl LocalRouter {
    /// Into the target's inbox: with `tracking`, as the bridge's delivery
    /// features say (room, receipt, whether the reader may run the turn);
    /// without, waiting up to `delivery_timeout` for room.
    fn hand_over(&self, arrival: Arrival<'_>, tracking: Option<Tracking>) -> Result<(), DeliveryError> {
        let Arrival {
            source_network,
            source_actor,
            target_actor,
            target_port,
            payload,
            ..
        } = arrival;
        log::debug!("router: {source_network} -> {target_actor}.{target_port}");
        let (receipt, room, run_here) = match tracking {
            Some(tracking) => (Some(tracking.receipt), tracking.room, tracking.run_here),
            None => (None, Room::Wait(self.delivery_timeout), true),
        };
        let envelope = Envelope {
            message: payload,
            source: Source::Remote(remote_source(source_network, source_actor)),
            receipt,
        };
        // The reader may run the turn itself when it holds nothing another
        // reader may wait for.
        let here_stack = run_here.then_some(crate::bridge::READER_STACK_BYTES);
        self.network
            .deliver_inbound(target_actor, target_port, envelope, room, here_stack)
            .map_err(|e| delivery_error(&e, target_actor, target_port))
    }
}

/// Runs `hand_over` on a whole message seen as an [`Arrival`].
fn as_arrival<R>(message: RemoteMessage, hand_over: impl FnOnce(Arrival<'_>) -> R) -> R {
    let RemoteMessage {
        source_network,
        source_actor,
        target_network,
        target_actor,
        target_port,
        payload,
        ..
    } = message;
    hand_over(Arrival {
        source_network: &source_network,
        source_actor: &source_actor,
        target_network: &target_network,
        target_actor: &target_actor,
        target_port: &target_port,
        payload,
    })
}

thread_local! {
    /// The source of the last message this reader thread handed over: a
    /// stream comes from one actor, so its messages share one allocation.
    static LAST_SOURCE: RefCell<Option<Arc<RemoteSource>>> = const { RefCell::new(None) };
}

/// The shared source for `network` and `actor`, made anew only when it
/// differs from the last one on this thread.
fn remote_source(network: &str, actor: &str) -> Arc<RemoteSource> {
    LAST_SOURCE.with(|last| {
        let mut last = last.borrow_mut();
        match last.as_ref() {
            Some(source) if source.network == network && source.actor == actor => source.clone(),
            _ => {
                let source = Arc::new(RemoteSource {
                    network: network.to_string(),
                    actor: actor.to_string(),
                });
                *last = Some(source.clone());
                source
            }
        }
    })
}

fn delivery_error(error: &SendError, actor: &str, port: &str) -> DeliveryError {
    let (actor, port) = (actor.to_string(), port.to_string());
    match error.kind() {
        SendErrorKind::UnknownNode(_) => DeliveryError::UnknownActor(actor),
        SendErrorKind::UnknownPort { .. } => DeliveryError::UnknownPort { actor, port },
        SendErrorKind::Full { .. } => DeliveryError::Full,
        _ => DeliveryError::ShuttingDown,
    }
}

impl InboundSink for LocalRouter {
    fn deliver(&self, message: RemoteMessage) -> Result<(), DeliveryError> {
        as_arrival(message, |arrival| self.hand_over(arrival, None))
    }

    /// The receipt goes into the inbox with the message: the runtime
    /// completes it after the tick that consumes it.
    fn deliver_tracked(&self, message: RemoteMessage, tracking: Tracking) -> Result<(), DeliveryError> {
        as_arrival(message, |arrival| self.hand_over(arrival, Some(tracking)))
    }

    /// No envelope is made: the names stay borrowed until the inbox, and
    /// the source is shared with the message before it when the same.
    fn deliver_arrival(&self, arrival: Arrival<'_>, tracking: Option<Tracking>) -> Result<(), DeliveryError> {
        self.hand_over(arrival, tracking)
    }
}

/// Lets actors of the local network send over the bridge
/// (`ActorContext::send_to_remote_actor` and `reply`).
pub(crate) struct BridgeSender {
    pub(crate) bridge: Arc<OnceLock<Arc<Bridge>>>,
    pub(crate) send_timeout: Duration,
}

impl RemoteSend for BridgeSender {
    fn send_remote(
        &self,
        from: &str,
        network: &str,
        actor: &str,
        port: &str,
        message: Message,
        wait: bool,
    ) -> Result<(), (String, Message)> {
        let Some(bridge) = self.bridge.get() else {
            return Err(("the distributed network is not started".into(), message));
        };
        let parts = Outbound {
            source_actor: from,
            target_network: network,
            target_actor: actor,
            target_port: port,
        };
        let timeout = if wait { self.send_timeout } else { Duration::ZERO };
        bridge
            .send_parts(&parts, message, timeout)
            .map_err(|(error, payload)| (error.to_string(), payload))
    }
}
