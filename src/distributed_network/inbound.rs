//! The router: delivers messages that arrive over the bridge to local nodes.

use std::time::Duration;

use crate::bridge::{DeliveryError, InboundSink, RemoteMessage};
use crate::runtime::{Network, SendErrorKind};

/// Hands inbound messages to the local network, waiting up to
/// `delivery_timeout` for room (the bridge keeps the connection alive meanwhile).
pub(crate) struct LocalRouter {
    pub(crate) network: Network,
    pub(crate) delivery_timeout: Duration,
}

impl InboundSink for LocalRouter {
    fn deliver(&self, message: RemoteMessage) -> Result<(), DeliveryError> {
        let RemoteMessage {
            target_actor,
            target_port,
            payload,
            source_network,
            ..
        } = message;
        log::debug!("router: {source_network} -> {target_actor}.{target_port}: {payload:?}");
        self.network
            .send_to_actor_timeout(&target_actor, &target_port, payload, self.delivery_timeout)
            .map_err(|e| match e.kind() {
                SendErrorKind::UnknownNode(_) => DeliveryError::UnknownActor(target_actor.clone()),
                SendErrorKind::UnknownPort { .. } => DeliveryError::UnknownPort {
                    actor: target_actor.clone(),
                    port: target_port.clone(),
                },
                SendErrorKind::Full { .. } => DeliveryError::Full,
                _ => DeliveryError::ShuttingDown,
            })
    }
}
