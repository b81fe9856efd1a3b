//! The router: delivers messages that arrive over the bridge to local nodes,
//! and the seam through which actors send to other networks.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::bridge::{Bridge, DeliveryError, InboundSink, RemoteMessage, Tracking};
use crate::message::Message;
use crate::runtime::{Envelope, Network, RemoteSend, RemoteSource, Room, SendError, SendErrorKind, Source};

/// Hands inbound messages to the local network, waiting up to
/// `delivery_timeout` for room (the bridge keeps the connection alive meanwhile).
pub(crate) struct LocalRouter {
    pub(crate) network: Network,
    pub(crate) delivery_timeout: Duration,
}

impl LocalRouter {
    /// `run_here`: the reader may run the target's turn itself (it holds
    /// nothing another reader may wait for).
    fn hand_over(
        &self,
        message: RemoteMessage,
        receipt: Option<crate::runtime::Receipt>,
        room: Room,
        run_here: bool,
    ) -> Result<(), DeliveryError> {
        let RemoteMessage {
            target_actor,
            target_port,
            payload,
            source_network,
            source_actor,
            ..
        } = message;
        log::debug!("router: {source_network} -> {target_actor}.{target_port}");
        let source = Source::Remote(Arc::new(RemoteSource {
            network: source_network,
            actor: source_actor,
        }));
        let envelope = Envelope {
            message: payload,
            source,
            receipt,
        };
        let here_stack = run_here.then_some(crate::bridge::READER_STACK_BYTES);
        self.network
            .deliver_inbound(&target_actor, &target_port, envelope, room, here_stack)
            .map_err(|e| delivery_error(&e, target_actor, target_port))
    }
}

fn delivery_error(error: &SendError, actor: String, port: String) -> DeliveryError {
    match error.kind() {
        SendErrorKind::UnknownNode(_) => DeliveryError::UnknownActor(actor),
        SendErrorKind::UnknownPort { .. } => DeliveryError::UnknownPort { actor, port },
        SendErrorKind::Full { .. } => DeliveryError::Full,
        _ => DeliveryError::ShuttingDown,
    }
}

impl InboundSink for LocalRouter {
    fn deliver(&self, message: RemoteMessage) -> Result<(), DeliveryError> {
        self.hand_over(message, None, Room::Wait(self.delivery_timeout), true)
    }

    /// The receipt goes into the inbox with the message: the runtime
    /// completes it after the tick that consumes it.
    fn deliver_tracked(&self, message: RemoteMessage, tracking: Tracking) -> Result<(), DeliveryError> {
        self.hand_over(message, Some(tracking.receipt), tracking.room, tracking.run_here)
    }
}

/// Lets actors of the local network send over the bridge
/// (`ActorContext::send_to_remote_actor` and `reply`).
pub(crate) struct BridgeSender {
    pub(crate) local_network: String,
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
        let remote = RemoteMessage::new(&self.local_network, from, network, actor, port, message);
        let timeout = if wait { self.send_timeout } else { Duration::ZERO };
        bridge.send(remote, timeout).map_err(|err| {
            let why = err.to_string();
            (why, err.into_message().payload)
        })
    }
}
