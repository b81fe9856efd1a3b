//! What `reflow-peer` does once its arguments are parsed: load the config,
//! start a peer hosting a `recorder` node, dial, send, and run until a signal.
//! The binary only sets up logging and maps the outcome to an exit code.

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::bridge::BridgeEvent;
use crate::distributed_network::DistributedNetwork;
use crate::names::escaped;
use crate::peer_cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, PeerArgs, SendSpec};
use crate::peer_config::PeerConfig;
use crate::runtime::Recorder;

/// Name of the built-in recorder node every peer hosts.
pub const RECORDER_NODE: &str = "recorder";

/// How long a `--send` waits for a connection to its network (plus one
/// discovery refresh interval when discovery is configured).
pub const SEND_CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Runs a peer as `reflow-peer` does and returns its exit code.
pub fn run(args: &PeerArgs) -> u8 {
    let config = match PeerConfig::from_path(&args.config) {
        Ok(config) => config,
        Err(e) => {
            log::error!("{e}");
            return EXIT_USAGE;
        }
    };
    // Install the handlers first, so a signal during start-up is not lost.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            return EXIT_FAILURE;
        }
    };
    log::info!(
        "starting peer: network_id={}, instance_id={}, bind={}:{}",
        config.network_id,
        config.instance_id,
        config.bind_address,
        config.bind_port
    );
    let peer = match start_peer(&config) {
        Ok(peer) => peer,
        Err(e) => {
            log::error!("{e}");
            return EXIT_FAILURE;
        }
    };
    let mut code = EXIT_OK;
    if let Err(e) = dial_and_send(&peer, &config, &args.sends) {
        log::error!("{e}");
        code = EXIT_FAILURE;
    }
    if code == EXIT_OK && !args.once {
        log::info!("peer ready, awaiting messages (Ctrl-C to stop)");
        let _ = signals.forever().next();
    }
    log::info!("shutting down");
    peer.shutdown();
    code
}

fn start_peer(config: &PeerConfig) -> Result<DistributedNetwork, String> {
    let peer = DistributedNetwork::new(config.to_distributed_config()).map_err(|e| e.to_string())?;
    let recorder = Recorder::new(Recorder::DEFAULT_HISTORY);
    peer.register_local_actor(RECORDER_NODE, Box::new(recorder), json!({}))
        .map_err(|e| e.to_string())?;
    for remote in &config.remote_actors {
        peer.register_remote_actor(&remote.actor_id, &remote.network_id)
            .map_err(|e| e.to_string())?;
    }
    peer.start().map_err(|e| format!("cannot start peer: {e}"))?;
    if let (Some(bound), Some(advertised)) = (peer.local_addr(), peer.advertised_endpoint()) {
        log::info!("bridge listening on {bound} (advertised as {advertised})");
    }
    Ok(peer)
}

fn dial_and_send(peer: &DistributedNetwork, config: &PeerConfig, sends: &[SendSpec]) -> Result<(), String> {
    let events = peer.bridge_events().map_err(|e| e.to_string())?;
    for target in &config.connect {
        match peer.connect_to_network(&target.endpoint) {
            // The network id is the one the other peer announced: escaped.
            Ok(network) => log::info!(
                "connected to peer at {} (network {})",
                target.endpoint,
                escaped(&network)
            ),
            Err(e) if sends.is_empty() => {
                log::error!("could not connect to peer at {}: {e}", target.endpoint)
            }
            Err(e) => return Err(format!("could not connect to peer at {}: {e}", target.endpoint)),
        }
    }
    // The connection may still be on its way: dialed by the other side, or
    // made once discovery lists the network.
    let mut wait = SEND_CONNECT_WAIT;
    if !config.discovery_endpoints.is_empty() {
        wait += config.discovery_refresh;
    }
    for send in sends {
        send_one(peer, send, &events, wait)?;
    }
    Ok(())
}

fn send_one(
    peer: &DistributedNetwork,
    send: &SendSpec,
    events: &Receiver<BridgeEvent>,
    wait: Duration,
) -> Result<(), String> {
    let target = format!("{}/{}.{}", send.network_id, send.actor_id, send.port);
    let payload = send.payload.as_str();
    let result = if send.network_id == peer.network_id() {
        peer.send_to_actor(&send.actor_id, &send.port, payload)
    } else {
        if !wait_for_connection(peer, &send.network_id, events, wait) {
            return Err(format!(
                "could not send to {target}: no connection to network {} after {} s",
                send.network_id,
                wait.as_secs()
            ));
        }
        peer.send_to_remote_actor(&send.network_id, &send.actor_id, &send.port, payload)
    };
    match result {
        Ok(()) => {
            log::info!("sent test message to {target}: {payload:?}");
            Ok(())
        }
        Err(e) => Err(format!("could not send to {target}: {e}")),
    }
}

/// Waits for a connection to `network`, woken by bridge events rather than polling.
fn wait_for_connection(
    peer: &DistributedNetwork,
    network: &str,
    events: &Receiver<BridgeEvent>,
    wait: Duration,
) -> bool {
    let deadline = Instant::now() + wait;
    while !peer.is_connected_to(network) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        // Any event (or a quiet second) is a reason to look again.
        let _ = events.recv_timeout(left.min(Duration::from_secs(1)));
    }
    true
}
