//! Proxy nodes: a local node named `actor@network` that forwards whatever
//! reaches it, on any port, to that actor's port in the remote network.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::bridge::{Bridge, RemoteMessage};
use crate::runtime::{Actor, ActorContext, ActorError, Threading};

pub(crate) struct RemoteProxy {
    pub(crate) local_network: String,
    pub(crate) actor_id: String,
    pub(crate) network_id: String,
    /// Set when the distributed network starts; proxies may be made before.
    pub(crate) bridge: Arc<OnceLock<Arc<Bridge>>>,
    pub(crate) send_timeout: Duration,
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

    fn run(&mut self, ctx: &mut ActorContext<'_>) -> Result<(), ActorError> {
        let bridge = self
            .bridge
            .get()
            .ok_or_else(|| ActorError::new("the distributed network is not started"))?;
        let source = RemoteProxy::node_name(&self.actor_id, &self.network_id);
        let mut failures = Vec::new();
        for (port, message) in ctx.inputs() {
            let remote = RemoteMessage::new(
                &self.local_network,
                &source,
                &self.network_id,
                &self.actor_id,
                port,
                message.clone(),
            );
            if let Err(e) = bridge.send(remote, self.send_timeout) {
                failures.push(format!("{port}: {e}"));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ActorError::new(format!(
                "not forwarded to {source}: {}",
                failures.join("; ")
            )))
        }
    }
}
