//! Credits are granted back in batches (a CREDIT frame per eighth of the
//! window rather than per message), and the batching never stalls a sender:
//! two peers in one process over loopback, with a long heartbeat so that the
//! writer's own tick (1 s) would show if a sender had to wait for it.

use std::time::{Duration, Instant};

use reflow_distributed::DistributedConfig;
use reflow_distributed::Message;
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::runtime::{Recorder, RecorderLog};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(30);

fn config(network: &str, window: u32) -> DistributedConfig {
    let mut config = DistributedConfig::new(network);
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.bind_port = 0;
    // Writer tick of 1 s: a credit left for the tick would cost a second.
    config.bridge.heartbeat_interval = Duration::from_secs(30);
    config.bridge.delivery.target_window = window;
    config.network.workers = 2;
    config.network.send_timeout = PATIENCE;
    config
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn numbers(log: &RecorderLog) -> Vec<i64> {
    log.records()
        .iter()
        .map(|r| r.message.as_i64().expect("numbered messages"))
        .collect()
}

/// 4,000 messages through a window of 16 (batches of 2) and of 64 (batches
/// of 8): were the sender to wait for the writer's tick once per window, this
/// would take 250 s and 62 s; it takes well under a second.
#[test]
fn a_sender_streaming_to_one_actor_never_waits_for_batched_credits() {
    const N: i64 = 4000;
    for window in [16, 64] {
        let alpha = DistributedNetwork::new(config("alpha", window)).unwrap();
        let recorder = Recorder::new(N as usize + 10);
        let log = recorder.log();
        alpha
            .register_local_actor("recorder", Box::new(recorder), json!({}))
            .unwrap();
        alpha.start().unwrap();
        let beta = DistributedNetwork::new(config("beta", window)).unwrap();
        beta.start().unwrap();
        beta.connect_to_network(&alpha.local_addr().unwrap().to_string())
            .unwrap();

        let started = Instant::now();
        for n in 0..N {
            beta.send_to_remote_actor("alpha", "recorder", "in", Message::Integer(n))
                .unwrap_or_else(|e| panic!("message {n}: {e}"));
        }
        wait_until("every message at the recorder", || {
            log.records().len() >= N as usize
        });
        let took = started.elapsed();
        assert_eq!(numbers(&log), (0..N).collect::<Vec<_>>(), "all, in order");
        assert!(
            took < Duration::from_secs(15),
            "window {window}: {N} messages took {took:?}: a sender waited for credits left to the tick"
        );
        beta.shutdown();
        alpha.shutdown();
    }
}
