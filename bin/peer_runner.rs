//! What `reflow-peer` does once its arguments are parsed: load the config,
//! start a peer hosting a `recorder` node, dial, send, and run until a signal.
//! The binary only sets up logging and maps the outcome to an exit code.

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use reflow_distributed::bridge::BridgeEvent;
use reflow_distributed::runtime::Recorder;
use reflow_distributed::{DistributedNetwork, PeerConfig};

use crate::peer_cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, PeerArgs, SendSpec};

/// Name of the built-in recorder node every peer hosts.
pub const RECORDER_NODE: &str = "recorder";

/// How long a `--send` waits for a connection to its network (plus one
/// discovery refresh interval when discovery is configured).
pub const SEND_CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Runs a peer as `reflow-peer` does and returns its exit code.
///
/// A configuration error is printed on stderr as `FILE:LINE: message`, with
/// no log prefix, the form editors and compilers use, so it can be jumped to.
pub fn run(args: &PeerArgs) -> u8 {
    let config = match PeerConfig::from_path(&args.config) {
        Ok(mut config) => {
            if args.admin.is_some() {
                config.distributed.admin_bind = args.admin.clone();
            }
            config
        }
        Err(e) => {
            eprintln!("{e}");
            return EXIT_USAGE;
        }
    };
    // Install the handlers first, so a signal during start-up is not lost.
    let signals = match SignalWatch::start() {
        Ok(signals) => signals,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            return EXIT_FAILURE;
        }
    };
    log::info!(
        "starting peer: network_id={}, instance_id={}, bind={}:{}",
        config.distributed.network_id,
        config.distributed.instance_id,
        config.distributed.bridge.bind_address,
        config.distributed.bridge.bind_port
    );
    let peer = match start_peer(&config) {
        Ok(peer) => peer,
        Err(e) => {
            log::error!("{e}");
            signals.stop();
            return EXIT_FAILURE;
        }
    };
    let mut code = EXIT_OK;
    match hold_and_send(&peer, &config, &args.sends, &signals.received) {
        Ok(Outcome::Done) => {}
        Ok(Outcome::Stopped) => {
            log::info!("stopped by a signal before every message was sent");
            code = EXIT_FAILURE;
        }
        Err(e) => {
            log::error!("{e}");
            code = EXIT_FAILURE;
        }
    }
    if code == EXIT_OK && !args.once {
        log::info!("peer ready, awaiting messages (Ctrl-C to stop)");
        let _ = signals.received.recv();
    } else if args.once {
        settle(&peer, &signals.received);
    }
    log::info!("shutting down");
    peer.shutdown();
    signals.stop();
    code
}

/// With `--once`: lets the local actors consume what was sent to them
/// before the network stops (a shutdown drops what is still queued), for up
/// to `SETTLE_TIME` or until a signal.
fn settle(peer: &DistributedNetwork, signals: &Receiver<i32>) {
    let network = peer.get_local_network();
    // Subscribed before the check, so an Idle published in between is seen.
    let events = network.events();
    let deadline = Instant::now() + SETTLE_TIME;
    while !network.is_idle() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            log::warn!(
                "local actors still busy after {} s; stopping anyway",
                SETTLE_TIME.as_secs()
            );
            return;
        };
        crossbeam_channel::select! {
            recv(events) -> event => if event.is_err() { return },
            recv(signals) -> _ => return,
            default(left) => {}
        }
    }
}

/// How long `--once` waits for local actors to finish before stopping.
const SETTLE_TIME: Duration = Duration::from_secs(5);

/// SIGINT and SIGTERM as a channel, so every wait can also wait for them.
struct SignalWatch {
    received: Receiver<i32>,
    handle: signal_hook::iterator::Handle,
    thread: std::thread::JoinHandle<()>,
}

impl SignalWatch {
    fn start() -> std::io::Result<SignalWatch> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let (tx, received) = crossbeam_channel::bounded(4);
        let thread = std::thread::Builder::new()
            .name("peer-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let _ = tx.try_send(signal);
                }
            })?;
        Ok(SignalWatch {
            received,
            handle,
            thread,
        })
    }

    fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}

/// How the sends ended when nothing failed.
enum Outcome {
    Done,
    Stopped,
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

/// Holds every `[[connect]]` link (dialed in the background, redialed for
/// the life of the peer), then sends each `--send` once its network is linked.
fn hold_and_send(
    peer: &DistributedNetwork,
    config: &PeerConfig,
    sends: &[SendSpec],
    signals: &Receiver<i32>,
) -> Result<Outcome, String> {
    let events = peer.bridge_events().map_err(|e| e.to_string())?;
    for target in &config.connect {
        peer.hold_connection(&target.endpoint, target.options.clone())
            .map_err(|e| format!("cannot hold a link to {}: {e}", target.endpoint))?;
    }
    // The link may still be on its way: being dialed, dialed by the other
    // side, or made once discovery lists the network.
    let mut wait = SEND_CONNECT_WAIT;
    let discovery = &config.distributed.discovery;
    if !discovery.endpoints.is_empty() {
        wait += discovery.refresh_interval;
    }
    let mut last_errors = LastErrors::default();
    let mut failed = 0;
    for send in sends {
        // Each --send stands alone: one that is refused (too large, say)
        // is reported and does not cancel the ones after it.
        match send_one(peer, config, send, &events, signals, wait, &mut last_errors) {
            Ok(Outcome::Done) => {}
            Ok(Outcome::Stopped) => return Ok(Outcome::Stopped),
            Err(e) => {
                log::error!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} --send message(s) not sent", sends.len()));
    }
    Ok(Outcome::Done)
}

/// The latest dial error per target name (network id, or endpoint while
/// the network there is unknown).
#[derive(Default)]
struct LastErrors(std::collections::HashMap<String, String>);

impl LastErrors {
    fn note(&mut self, event: &BridgeEvent) {
        if let BridgeEvent::ReconnectFailed {
            network_id, reason, ..
        } = event
        {
            self.0.insert(network_id.clone(), reason.clone());
        }
    }

    /// Why `network` is not linked, as far as this peer can tell.
    fn explain(&self, network: &str, config: &PeerConfig) -> String {
        if let Some(reason) = self.0.get(network) {
            return format!("last dial error: {reason}");
        }
        let unnamed: Vec<&str> = config
            .connect
            .iter()
            .filter(|t| t.options.network_id.is_none())
            .map(|t| t.endpoint.as_str())
            .collect();
        if let Some(reason) = unnamed.iter().find_map(|e| self.0.get(*e)) {
            return format!("last dial error: {reason}");
        }
        let named = config
            .connect
            .iter()
            .any(|t| t.options.network_id.as_deref() == Some(network));
        if !named && unnamed.is_empty() && config.distributed.discovery.endpoints.is_empty() {
            return format!(
                "no [[connect]] entry and no discovery_endpoints for network {network}, and it did not dial this peer"
            );
        }
        "no dial has reached it yet".to_string()
    }
}

fn send_one(
    peer: &DistributedNetwork,
    config: &PeerConfig,
    send: &SendSpec,
    events: &Receiver<BridgeEvent>,
    signals: &Receiver<i32>,
    wait: Duration,
    last_errors: &mut LastErrors,
) -> Result<Outcome, String> {
    let target = format!("{}/{}.{}", send.network_id, send.actor_id, send.port);
    let payload = send.payload.as_str();
    let result = if send.network_id == peer.network_id() {
        peer.send_to_actor(&send.actor_id, &send.port, payload)
    } else {
        match wait_for_connection(peer, &send.network_id, events, signals, wait, last_errors) {
            Waited::Linked => {}
            Waited::Stopped => return Ok(Outcome::Stopped),
            Waited::TimedOut => {
                return Err(format!(
                    "could not send to {target}: no connection to network {} after {} s ({})",
                    send.network_id,
                    wait.as_secs(),
                    last_errors.explain(&send.network_id, config)
                ));
            }
        }
        peer.send_to_remote_actor(&send.network_id, &send.actor_id, &send.port, payload)
    };
    match result {
        Ok(()) => {
            log::info!("sent test message to {target}: {payload:?}");
            Ok(Outcome::Done)
        }
        Err(e) => Err(format!("could not send to {target}: {e}")),
    }
}

enum Waited {
    Linked,
    Stopped,
    TimedOut,
}

/// Waits for a link to `network`, woken by bridge events and signals rather
/// than polling.
fn wait_for_connection(
    peer: &DistributedNetwork,
    network: &str,
    events: &Receiver<BridgeEvent>,
    signals: &Receiver<i32>,
    wait: Duration,
    last_errors: &mut LastErrors,
) -> Waited {
    let deadline = Instant::now() + wait;
    loop {
        if peer.is_connected_to(network) {
            return Waited::Linked;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Waited::TimedOut;
        };
        crossbeam_channel::select! {
            recv(signals) -> _ => return Waited::Stopped,
            recv(events) -> event => match event {
                Ok(event) => last_errors.note(&event),
                Err(_) => return Waited::TimedOut,
            },
            default(left) => {}
        }
    }
}
