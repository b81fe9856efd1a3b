//! A peer embedded in your own program.
//!
//! `reflow-peer` is one way to run a peer; this program is the other: it reads
//! the same TOML file, but builds the `DistributedNetwork` itself and adds its
//! own actor next to the peer's infrastructure. Its graph is
//!
//! ```text
//!   send_to_actor ──▶ greeter ──out──▶ recorder@alpha ══ bridge ══▶ alpha's recorder.in
//! ```
//!
//! `greeter` turns a name into `"hello, NAME"`; `recorder@alpha` is a proxy
//! node that forwards whatever reaches it to the `recorder` actor of network
//! `alpha`. Start alpha first, then run this program instead of beta:
//!
//! ```text
//! cargo run --bin reflow-peer -- --config examples/configs/alpha.toml
//! cargo run --example embedded_peer -- examples/configs/beta.toml ada grace
//! ```
//!
//! Alpha logs `recorder.in: String("hello, ada")` and `... "hello, grace"`.
//! Usage: `embedded_peer [CONFIG [NAME...]]`; the config defaults to
//! `examples/configs/beta.toml` and the names to `ada`, `grace` and `linus`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use reflow_distributed::bridge::BridgeEvent;
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::peer_config::PeerConfig;
use reflow_distributed::runtime::FnActor;
use serde_json::json;

/// The network that hosts the recorder we send to.
const REMOTE_NETWORK: &str = "alpha";

/// How long to wait for the link to alpha, and then for the messages to be
/// written to it, before giving up.
const WAIT: Duration = Duration::from_secs(10);

#[allow(dead_code)] // The end-to-end test includes this file and calls `run` only.
fn main() -> ExitCode {
    // Log lines (connections, the greeter's work) go to stderr. RUST_LOG=debug
    // shows every message crossing the bridge.
    // tungstenite's trace lines print whole frames: keep it at debug at most.
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Info)
        .env()
        .with_module_level("tungstenite", log::LevelFilter::Debug)
        .init();

    let mut args = std::env::args().skip(1);
    let config = args
        .next()
        .unwrap_or_else(|| "examples/configs/beta.toml".to_string());
    let mut names: Vec<String> = args.collect();
    if names.is_empty() {
        names = ["ada", "grace", "linus"].map(String::from).to_vec();
    }
    match run(&config, &names) {
        Ok(sent) => {
            println!("sent {sent} greetings to recorder@{REMOTE_NETWORK}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("embedded_peer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the whole flow: load `config_path`, start the peer, greet every name
/// through alpha's recorder, shut down. Returns how many messages the bridge
/// wrote to alpha.
pub fn run(config_path: &str, names: &[String]) -> Result<u64, String> {
    // 1. The peer's settings: identity, bridge, token, endpoints to dial.
    //    (REFLOW_AUTH_TOKEN in the environment replaces the file's token.)
    let config = PeerConfig::from_path(config_path).map_err(|e| e.to_string())?;
    let peer = DistributedNetwork::new(config.to_distributed_config()).map_err(|e| e.to_string())?;

    // 2. Our own actor. It runs on the peer's worker pool, one message per tick,
    //    and emits its greeting on `out`.
    let greeter = FnActor::new(&["in"], &["out"], |ctx| {
        let name = ctx
            .input("in")
            .and_then(|m| m.as_str())
            .ok_or("greeter expects a String")?
            .to_string();
        log::info!("greeter: greeting {name}");
        ctx.emit("out", format!("hello, {name}"))
    });
    peer.register_local_actor("greeter", Box::new(greeter), json!({}))
        .map_err(|e| e.to_string())?;

    // 3. Remote actors become local proxy nodes named `actor@network`. The file's
    //    `[[remote_actor]]` tables list some; registering one twice is harmless,
    //    so we also ask for the one this program needs by name.
    for remote in &config.remote_actors {
        peer.register_remote_actor(&remote.actor_id, &remote.network_id)
            .map_err(|e| e.to_string())?;
    }
    let recorder = peer
        .register_remote_actor("recorder", REMOTE_NETWORK)
        .map_err(|e| e.to_string())?; // "recorder@alpha"

    // 4. Wire the greeter to the proxy like any other node: what it emits on
    //    `out` is forwarded to alpha's `recorder.in`.
    peer.get_local_network()
        .connect("greeter", "out", &recorder, "in")
        .map_err(|e| e.to_string())?;

    // 5. Start: the local network, the bridge listener, discovery if configured.
    peer.start().map_err(|e| format!("cannot start the peer: {e}"))?;
    // Subscribe before dialing, so no connection event is missed.
    let events = peer.bridge_events().map_err(|e| e.to_string())?;
    let outcome = greet(&peer, &config, &recorder, names, &events);

    // 7. Shutdown sends a Close frame after what is still queued, and returns
    //    once every thread of the peer is joined.
    peer.shutdown();
    outcome
}

fn greet(
    peer: &DistributedNetwork,
    config: &PeerConfig,
    recorder: &str,
    names: &[String],
    events: &crossbeam_channel::Receiver<BridgeEvent>,
) -> Result<u64, String> {
    // 6. Dial the `[[connect]]` endpoints. A failed dial is reported, not fatal:
    //    alpha may also dial us, or be found through discovery.
    for target in &config.connect {
        match peer.connect_to_network(&target.endpoint) {
            Ok(network) => log::info!("connected to {} (network {network})", target.endpoint),
            Err(e) => log::warn!("could not connect to {}: {e}", target.endpoint),
        }
    }
    // A proxy forwards only while its network is connected (otherwise the
    // message is dropped and the proxy reports `No connection to network:
    // alpha`), so wait for the link first. Bridge events wake us up.
    let deadline = Instant::now() + WAIT;
    while !peer.is_connected_to(REMOTE_NETWORK) {
        let left = deadline
            .checked_duration_since(Instant::now())
            .ok_or_else(|| format!("no connection to network {REMOTE_NETWORK} after {WAIT:?}"))?;
        let _ = events.recv_timeout(left.min(Duration::from_millis(200)));
    }

    // Into the greeter through the local network, as any application thread
    // would. `send_to_actor` waits (up to the network's send_timeout) when the
    // greeter's inbox is full: that is the runtime's backpressure.
    let sent_before = peer.bridge_stats().map_or(0, |s| s.messages_sent);
    for name in names {
        peer.send_to_actor("greeter", "in", name.as_str())
            .map_err(|e| format!("cannot send {name:?} to the greeter: {e}"))?;
    }

    // Delivery is at most once and unacknowledged; the most a sender can know
    // is that the bridge wrote the messages to the socket. Wait for that.
    let expected = names.len() as u64;
    let written = || peer.bridge_stats().map_or(0, |s| s.messages_sent) - sent_before;
    let deadline = Instant::now() + WAIT;
    while written() < expected {
        if Instant::now() >= deadline {
            return Err(format!(
                "only {} of {expected} greetings reached {recorder} within {WAIT:?}",
                written()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(written())
}
