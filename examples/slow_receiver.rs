//! A peer with a slow actor beside a fast one, to watch per-target credits
//! at work: senders to the slow actor are held back, everything else on the
//! same connection flows.
//!
//! ```text
//! cargo run --example slow_receiver -- examples/configs/alpha.toml 100
//! cargo run --bin reflow-peer -- --config examples/configs/beta.toml \
//!     --send-file numbers.txt        # lines for alpha:slow:in and alpha:recorder:in
//! ```
//!
//! It reads a peer file like `reflow-peer` does and hosts two actors:
//!
//! - `recorder`, the same recorder `reflow-peer` hosts: it logs every
//!   message (`recorder.in: Integer(7)`) as soon as it arrives;
//! - `slow`, which takes `DELAY_MS` (default 100, so 10 messages a second)
//!   over each message and then logs it (`slow.in: Integer(7)`). It runs on
//!   a thread of its own, so its sleeping never takes a worker from others.
//!
//! Between peers of this project the receiver grants each sender a window of
//! `target_window` credits per target actor and connection (`[delivery]`,
//! default 4096). A message costs one credit plus one per whole
//! `credit_bytes` (default 512 bytes) of its frame, so one for any message
//! under 512 bytes, and its credits come back once the actor has consumed
//! it: a sender
//! that floods `slow` waits for credit, while messages for `recorder` keep
//! crossing the same connection at full speed, and nothing is dropped
//! (docs/delivery.md, "Backpressure across the bridge"). Without credits (a
//! protocol 1.0 peer) the connection's reader would wait on `slow`'s full
//! inbox and hold up `recorder`'s messages behind it.
//!
//! Usage: `slow_receiver CONFIG [DELAY_MS]`. It runs until it is killed
//! (Ctrl-C). `cargo test --test e2e_delivery` runs it as the receiving peer
//! of the head-of-line test.

use std::process::ExitCode;
use std::time::Duration;

use reflow_distributed::DistributedNetwork;
use reflow_distributed::peer_config::PeerConfig;
use reflow_distributed::runtime::{FnActor, Recorder, Threading};
use serde_json::json;

fn main() -> ExitCode {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Info)
        .env()
        .with_module_level("tungstenite", log::LevelFilter::Debug)
        .init();
    let mut args = std::env::args().skip(1);
    let Some(config) = args.next() else {
        eprintln!("usage: slow_receiver CONFIG [DELAY_MS]");
        return ExitCode::from(2);
    };
    let delay = match args.next().map(|text| text.parse::<u64>()) {
        None => Duration::from_millis(100),
        Some(Ok(ms)) => Duration::from_millis(ms),
        Some(Err(_)) => {
            eprintln!("usage: slow_receiver CONFIG [DELAY_MS]: DELAY_MS is a whole number of milliseconds");
            return ExitCode::from(2);
        }
    };
    match run(&config, delay) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slow_receiver: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &str, delay: Duration) -> Result<(), String> {
    let config = PeerConfig::from_path(config).map_err(|e| e.to_string())?;
    let peer = DistributedNetwork::new(config.to_distributed_config()).map_err(|e| e.to_string())?;
    let recorder = Recorder::new(Recorder::DEFAULT_HISTORY);
    peer.register_local_actor("recorder", Box::new(recorder), json!({}))
        .map_err(|e| e.to_string())?;
    let slow = FnActor::new(&["in"], &[], move |ctx| {
        if let Some(message) = ctx.take_input("in") {
            std::thread::sleep(delay);
            log::info!("slow.in: {message:?}");
        }
        Ok(())
    })
    .with_threading(Threading::Dedicated);
    peer.register_local_actor("slow", Box::new(slow), json!({}))
        .map_err(|e| e.to_string())?;
    peer.start().map_err(|e| e.to_string())?;
    for target in &config.connect {
        peer.hold_connection(&target.endpoint, target.options.clone())
            .map_err(|e| e.to_string())?;
    }
    if let Some(address) = peer.local_addr() {
        log::info!(
            "bridge listening on {address} (slow takes {} ms a message)",
            delay.as_millis()
        );
    }
    // Until killed: the actors and the bridge run on their own threads.
    loop {
        std::thread::park();
    }
}
