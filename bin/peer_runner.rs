//! What `reflow-peer` does once its arguments are parsed: load the config,
//! start a peer hosting a `recorder` node, dial, send, and run until a signal.
//! The binary only sets up logging and maps the outcome to an exit code.

use crossbeam_channel::Receiver;
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::time::{Duration, Instant};

use reflow_distributed::runtime::Recorder;
use reflow_distributed::{DistributedNetwork, PeerConfig};

use crate::cli::usage_error;
use crate::peer_cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, PeerArgs, SendSpec};
use crate::peer_sends::{Lost, Outcome, Pacing, Sender};
use crate::send_file;

/// Name of the built-in recorder node every peer hosts.
pub const RECORDER_NODE: &str = "recorder";

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
    // Every line is checked before the peer starts, so a bad one sends nothing.
    let mut specs = args.sends.clone();
    if let Some(path) = &args.send_file {
        match send_file::read(path) {
            Ok(lines) => specs.extend(lines),
            Err(e) => {
                eprintln!("{}", usage_error("reflow-peer", &e.to_string()));
                return EXIT_USAGE;
            }
        }
    }
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
    let (outcome, lost) = hold_and_send(&peer, &config, args, &specs, &signals.received);
    match outcome {
        Ok(Outcome::Done) => {}
        Ok(Outcome::Stopped) => code = EXIT_FAILURE,
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
    if let Some(lost) = lost {
        lost.report_more(&peer);
    }
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
/// the life of the peer), then sends each `--send` and each line of
/// `--send-file` once its network is linked.
fn hold_and_send(
    peer: &DistributedNetwork,
    config: &PeerConfig,
    args: &PeerArgs,
    specs: &[SendSpec],
    signals: &Receiver<i32>,
) -> (Result<Outcome, String>, Option<Lost>) {
    let events = match peer.bridge_events() {
        Ok(events) => events,
        Err(e) => return (Err(e.to_string()), None),
    };
    for target in &config.connect {
        if let Err(e) = peer.hold_connection(&target.endpoint, target.options.clone()) {
            return (
                Err(format!("cannot hold a link to {}: {e}", target.endpoint)),
                None,
            );
        }
    }
    let sender = Sender {
        peer,
        config,
        events: &events,
        signals,
    };
    let pacing = Pacing {
        rate: args.send_rate,
        ack_timeout: args.ack_timeout,
    };
    sender.send_all(specs, args.sends.len(), &pacing)
}
