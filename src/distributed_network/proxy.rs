//! Proxy nodes: a local node named `actor@network` that forwards whatever
//! reaches it, on any port, to that actor's port in the remote network.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::bridge::{Bridge, BridgeError, Outbound};
use crate::message::Message;
use crate::runtime::{Actor, ActorContext, ActorError, Forward, Origin, Threading};

/// Where a proxy forwards to; shared by the proxy actor and its forwarder.
pub(crate) struct ProxyTarget {
    /// This proxy's node name, `actor@network`: the source actor of what
    /// reaches it from outside the local network.
    pub(crate) node_name: String,
    pub(crate) actor_id: String,
    pub(crate) network_id: String,
    /// Set when the distributed network starts; proxies may be made before.
    pub(crate) bridge: Arc<OnceLock<Arc<Bridge>>>,
    pub(crate) send_timeout: Duration,
}

impl ProxyTarget {
    /// Where a message to `port` from `origin` goes: a local node that sent
    /// it is named as the source actor, so the remote actor can reply to
    /// it; otherwise the proxy itself is.
    fn parts<'a>(&'a self, port: &'a str, origin: Option<&'a Origin>) -> Outbound<'a> {
        let source_actor = match origin {
            Some(Origin::Node(node)) => node.as_str(),
            _ => &self.node_name,
        };
        Outbound {
            source_actor,
            target_network: &self.network_id,
            target_actor: &self.actor_id,
            target_port: port,
        }
    }
}

/// A message reaching an idle proxy goes onto the bridge from the sender's
/// thread when the connection's queue has room; otherwise the proxy's own
/// thread takes it and waits for room.
impl Forward for ProxyTarget {
    fn try_forward(&self, port: &str, message: Message, origin: &Origin) -> Result<(), Message> {
        let Some(bridge) = self.bridge.get() else {
            return Err(message);
        };
        bridge
            .send_parts(&self.parts(port, Some(origin)), message, Duration::ZERO)
            .map_err(|(_, message)| message)
    }
}

pub(crate) struct RemoteProxy {
    pub(crate) target: Arc<ProxyTarget>,
}

impl RemoteProxy {
    pub(crate) fn node_name(actor_id: &str, network_id: &str) -> String {
        format!("{actor_id}@{network_id}")
    }
}

impl Actor for RemoteProxy {
    fn inports(&self) -> Vec<String> {
        vec!["in".to_string()]
    }

    fn outports(&self) -> Vec<String> {
        Vec::new()
    }

    fn accepts_any_inport(&self) -> bool {
        true
    }

    /// Forwarding waits for room in the connection's bounded queue; on its own
    /// thread that wait holds back only this proxy's senders, never the pool.
    fn threading(&self) -> Threading {
        Threading::Dedicated
    }

    fn forwarder(&self) -> Option<Arc<dyn Forward>> {
        Some(self.target.clone())
    }

    fn run(&mut self, ctx: &mut ActorContext<'_>) -> Result<(), ActorError> {
        let target = &self.target;
        let bridge = target
            .bridge
            .get()
            .ok_or_else(|| ActorError::new("the distributed network is not started"))?;
        let mut failures = Vec::new();
        for (port, message) in ctx.inputs() {
            let origin = ctx.origin(port);
            let parts = target.parts(port, origin.as_ref());
            let mut payload = message.clone();
            // A full window, queue or outbox is backpressure, not a failure:
            // this proxy (on its own thread) keeps waiting, its inbox fills
            // and its local senders are held back in turn. Anything else
            // (no connection, too large) is reported.
            while let Err((error, back)) = bridge.send_parts(&parts, payload, target.send_timeout) {
                if !is_backpressure(&error) || ctx.is_shutting_down() {
                    failures.push(format!("{port}: {error}"));
                    break;
                }
                payload = back;
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            let source = RemoteProxy::node_name(&target.actor_id, &target.network_id);
            Err(ActorError::new(format!(
                "not forwarded to {source}: {}",
                failures.join("; ")
            )))
        }
    }
}

/// Errors that only say "not now": the peer or the link is slow.
fn is_backpressure(error: &BridgeError) -> bool {
    matches!(
        error,
        BridgeError::QueueFull { .. } | BridgeError::WindowFull { .. } | BridgeError::OutboxFull { .. }
    )
}
