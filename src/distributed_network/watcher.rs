//! Discovery-driven links: every network that discovery lists (other than
//! this peer) is held by a bridge supervisor while it is listed, at the
//! endpoint the roster gives; a network that leaves the roster is released
//! (its session, if any, stays until it ends by itself).

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, select};

use super::error::DistributedError;
use crate::bridge::Bridge;
use crate::discovery::{DiscoveryEvent, DiscoveryService, NetworkInfo};
use crate::distributed_config::DistributedConfig;

pub(crate) struct Watcher {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

struct Context {
    me: String,
    bridge: Arc<Bridge>,
    legacy_auth: bool,
}

impl Watcher {
    pub(crate) fn start(
        config: &DistributedConfig,
        bridge: Arc<Bridge>,
        discovery: Arc<DiscoveryService>,
    ) -> Result<Watcher, DistributedError> {
        let (stop, stop_rx) = crossbeam_channel::bounded(0);
        let discovered = discovery.subscribe();
        let context = Context {
            me: config.network_id.clone(),
            bridge,
            legacy_auth: config.legacy_auth,
        };
        let known = discovery.known_networks();
        let thread = std::thread::Builder::new()
            .name(format!("discovery-watch-{}", config.network_id))
            .spawn(move || watch(&context, known, &discovered, &stop_rx))
            .map_err(|e| DistributedError::Runtime(crate::runtime::RuntimeError::Spawn(e)))?;
        Ok(Watcher { stop, thread })
    }

    pub(crate) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn watch(
    context: &Context,
    known: Vec<NetworkInfo>,
    discovered: &Receiver<DiscoveryEvent>,
    stop: &Receiver<()>,
) {
    for info in &known {
        hold(context, info);
    }
    loop {
        select! {
            recv(stop) -> _ => return,
            recv(discovered) -> event => match event {
                Ok(DiscoveryEvent::Added(info)) | Ok(DiscoveryEvent::Updated(info)) => hold(context, &info),
                Ok(DiscoveryEvent::Removed(network_id)) => context.bridge.release_network(&network_id),
                Err(_) => return,
            },
        }
    }
}

fn hold(context: &Context, info: &NetworkInfo) {
    if info.network_id == context.me {
        return;
    }
    if let Err(e) = context
        .bridge
        .hold_network(&info.network_id, &info.endpoint, context.legacy_auth)
    {
        log::warn!(
            "cannot hold a link to {} at {} (found through discovery): {e}",
            info.network_id,
            info.endpoint
        );
    }
}
