//! Discovery-driven connect: dials networks that discovery reports and this
//! peer is not connected to, and retries networks whose redialing gave up
//! once discovery lists them again.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, after, never, select};

use super::error::DistributedError;
use crate::bridge::{Bridge, BridgeEvent};
use crate::discovery::{DiscoveryEvent, DiscoveryService, NetworkInfo};
use crate::distributed_config::DistributedConfig;

pub(crate) struct Watcher {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

struct Context {
    me: String,
    bridge: Arc<Bridge>,
    discovery: Arc<DiscoveryService>,
    retry_every: Duration,
}

impl Watcher {
    pub(crate) fn start(
        config: &DistributedConfig,
        bridge: Arc<Bridge>,
        discovery: Arc<DiscoveryService>,
    ) -> Result<Watcher, DistributedError> {
        let (stop, stop_rx) = crossbeam_channel::bounded(0);
        let discovered = discovery.subscribe();
        let bridge_events = bridge.subscribe();
        let context = Context {
            me: config.network_id.clone(),
            bridge,
            discovery,
            retry_every: config.discovery.refresh_interval,
        };
        let thread = std::thread::Builder::new()
            .name(format!("discovery-watch-{}", config.network_id))
            .spawn(move || watch(context, discovered, bridge_events, stop_rx))
            .map_err(|e| DistributedError::Runtime(crate::runtime::RuntimeError::Spawn(e)))?;
        Ok(Watcher { stop, thread })
    }

    pub(crate) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn watch(
    context: Context,
    discovered: Receiver<DiscoveryEvent>,
    bridge_events: Receiver<BridgeEvent>,
    stop: Receiver<()>,
) {
    let mut given_up: HashSet<String> = HashSet::new();
    for info in context.discovery.known_networks() {
        dial(&context, &info);
    }
    loop {
        // Only while some network has been given up on does a timer run.
        let retry = if given_up.is_empty() {
            never()
        } else {
            after(context.retry_every)
        };
        select! {
            recv(stop) -> _ => return,
            recv(discovered) -> event => match event {
                Ok(DiscoveryEvent::Added(info)) | Ok(DiscoveryEvent::Updated(info)) => {
                    dial(&context, &info);
                }
                Ok(DiscoveryEvent::Removed(_)) => {}
                Err(_) => return,
            },
            recv(bridge_events) -> event => match event {
                Ok(BridgeEvent::GaveUp { network_id, .. }) => {
                    given_up.insert(network_id);
                }
                Ok(BridgeEvent::Connected { network_id, .. }) | Ok(BridgeEvent::Reconnected { network_id, .. }) => {
                    given_up.remove(&network_id);
                }
                Ok(_) => {}
                Err(_) => return,
            },
            recv(retry) -> _ => {
                for info in context.discovery.known_networks() {
                    if given_up.contains(&info.network_id) && dial(&context, &info) {
                        given_up.remove(&info.network_id);
                    }
                }
            }
        }
    }
}

/// Dials `info` unless it is this peer or already connected; true when connected.
fn dial(context: &Context, info: &NetworkInfo) -> bool {
    if info.network_id == context.me || context.bridge.is_connected_to(&info.network_id) {
        return true;
    }
    match context.bridge.connect(&info.endpoint) {
        Ok(network) => {
            log::info!(
                "connected to {network} at {} (found through discovery)",
                info.endpoint
            );
            true
        }
        Err(e) => {
            log::warn!(
                "could not connect to {} at {} (found through discovery): {e}",
                info.network_id,
                info.endpoint
            );
            false
        }
    }
}
