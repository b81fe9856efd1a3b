//! The traffic source: a peer of its own (network `sender`) that sends
//! numbered messages to the `recorder` of every other peer and prints the
//! outcome of each send. It is this test binary run again inside a host's
//! namespace with [`FLAG`], on a peer config file like the other peers'.
//!
//! Arguments: `CONFIG PERIOD_MS TARGET[:PAD_BYTES]...`. Each target gets a
//! thread that sends the String `"<seq>"` (followed by `:` and `PAD_BYTES`
//! dots when asked) every `PERIOD_MS`. Commands on standard input: `go`
//! starts sending; `pause` stops it, prints the peer's own loss counters,
//! then `paused`; `stop` (or the end of standard input) stops sending,
//! shuts the peer down, prints the counters again and exits.
//!
//! Standard output, one line per event:
//!
//! ```text
//! tx beta 17 ok 1796083077684          (send returned Ok at that ms: queued, not delivered)
//! tx beta 18 refused 1796083077704 No connection to network: beta
//! lost beta 3                          (the peer's lost_messages counter)
//! paused
//! shutdown took 12 ms
//! ```

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::peer_config::PeerConfig;

use super::procs::now_ms;

/// The first argument that makes this binary the traffic source.
pub const FLAG: &str = "--multihost-role-sender";

/// How long a send may wait for room in a full connection queue before it
/// is refused (the peer's `send_timeout`).
const SEND_TIMEOUT: Duration = Duration::from_millis(100);

struct Target {
    network: String,
    pad: usize,
    next_seq: u64,
}

pub fn main(args: &[String]) -> ExitCode {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Info)
        .with_module_level("tungstenite", log::LevelFilter::Warn)
        .with_utc_timestamps()
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("sender: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let [config, period, targets @ ..] = args else {
        return Err("usage: CONFIG PERIOD_MS TARGET[:PAD_BYTES]...".into());
    };
    let period = Duration::from_millis(period.parse().map_err(|e| format!("period {period:?}: {e}"))?);
    let mut targets = targets
        .iter()
        .map(|t| {
            let (network, pad) = t.split_once(':').unwrap_or((t, "0"));
            let pad = pad.parse().map_err(|e| format!("target {t:?}: {e}"))?;
            Ok(Target {
                network: network.to_string(),
                pad,
                next_seq: 0,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut config = PeerConfig::from_path(config)
        .map_err(|e| e.to_string())?
        .to_distributed_config();
    config.network.send_timeout = SEND_TIMEOUT;
    let peer = Arc::new(DistributedNetwork::new(config).map_err(|e| e.to_string())?);
    peer.start().map_err(|e| e.to_string())?;
    log::info!("sender ready");

    let stop = Arc::new(AtomicBool::new(false));
    let mut running: Vec<JoinHandle<u64>> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        match line.map_err(|e| e.to_string())?.trim() {
            "go" if running.is_empty() => {
                stop.store(false, Ordering::Release);
                running = targets
                    .iter()
                    .map(|t| spawn_sender(&peer, t, period, &stop))
                    .collect::<Result<_, _>>()?;
            }
            "pause" => {
                pause(&stop, &mut running, &mut targets);
                say_lost(&peer, &targets);
                say("paused");
            }
            "stop" => break,
            other => log::warn!("sender: unknown command {other:?}"),
        }
    }
    pause(&stop, &mut running, &mut targets);
    let started = Instant::now();
    peer.shutdown();
    say(&format!("shutdown took {} ms", started.elapsed().as_millis()));
    say_lost(&peer, &targets);
    Ok(())
}

/// The peer's own loss counter for each target (`Bridge::lost_messages`).
fn say_lost(peer: &DistributedNetwork, targets: &[Target]) {
    for t in targets {
        say(&format!("lost {} {}", t.network, peer.lost_messages(&t.network)));
    }
}

/// Stops the send threads; each hands back the next sequence number of its target.
fn pause(stop: &AtomicBool, running: &mut Vec<JoinHandle<u64>>, targets: &mut [Target]) {
    stop.store(true, Ordering::Release);
    for (thread, target) in running.drain(..).zip(targets.iter_mut()) {
        if let Ok(next) = thread.join() {
            target.next_seq = next;
        }
    }
}

fn spawn_sender(
    peer: &Arc<DistributedNetwork>,
    target: &Target,
    period: Duration,
    stop: &Arc<AtomicBool>,
) -> Result<JoinHandle<u64>, String> {
    let (peer, stop) = (peer.clone(), stop.clone());
    let network = target.network.clone();
    let padding = if target.pad > 0 {
        format!(":{}", ".".repeat(target.pad))
    } else {
        String::new()
    };
    let mut seq = target.next_seq;
    std::thread::Builder::new()
        .name(format!("send-{network}"))
        .spawn(move || {
            let mut due = Instant::now();
            while !stop.load(Ordering::Acquire) {
                let at = now_ms();
                let payload = format!("{seq}{padding}");
                match peer.send_to_remote_actor(&network, "recorder", "in", payload) {
                    Ok(()) => say(&format!("tx {network} {seq} ok {at}")),
                    Err(e) => say(&format!("tx {network} {seq} refused {at} {e}")),
                }
                seq += 1;
                // Pacing is this thread's job: no catching up after a slow send.
                due = (due + period).max(Instant::now());
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            seq
        })
        .map_err(|e| format!("cannot start a send thread: {e}"))
}

/// One line on standard output, whole.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
