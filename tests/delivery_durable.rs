//! The durable outbox (`outbox_dir`): a sending peer killed with SIGKILL at
//! a random point loses nothing that `send` accepted.
//!
//! The sending peer is a child process: this test binary run again with
//! `DURABLE_CHILD` set, so the kill is a real `kill -9` of a whole process.
//! The child holds a link to alpha through a relay that alpha never answers
//! behind (so every message stays in the outbox), sends numbered messages in
//! acknowledged mode and prints `accepted N` after each `send` returned `Ok`.
//! The parent kills it mid-stream, then starts a second child on the same
//! `outbox_dir` that only holds a link to the real alpha: alpha's recorder
//! must get every number the first child printed, in order, once.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use reflow_distributed::DistributedConfig;
use reflow_distributed::bridge::{DeliveryMode, HoldOptions, SendOptions};
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::runtime::{Recorder, RecorderLog};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(30);
const CHILD: &str = "DURABLE_CHILD";

fn config(network: &str) -> DistributedConfig {
    let mut config = DistributedConfig::new(network);
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.bind_port = 0;
    config.bridge.heartbeat_interval = Duration::from_millis(100);
    config.bridge.reconnect.initial_delay = Duration::from_millis(20);
    config.bridge.reconnect.max_delay = Duration::from_millis(200);
    config.network.workers = 2;
    config
}

/// The child: `DURABLE_CHILD=send:<dir>:<endpoint>` sends until killed;
/// `DURABLE_CHILD=replay:<dir>:<endpoint>` waits until its outbox is empty.
fn child(spec: &str) {
    let mut parts = spec.splitn(3, ':');
    let (mode, dir, endpoint) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut config = config("beta");
    config.bridge.delivery.outbox_dir = Some(dir.into());
    config.bridge.delivery.mode = DeliveryMode::Acknowledged;
    let beta = DistributedNetwork::new(config).unwrap();
    beta.start().unwrap();
    beta.hold_connection(endpoint, HoldOptions::expecting("alpha"))
        .unwrap();
    if mode == "send" {
        let options = SendOptions::new(DeliveryMode::Acknowledged, PATIENCE);
        for n in 1.. {
            beta.send_to_remote_actor_with("alpha", "recorder", "in", n as i64, options)
                .unwrap();
            println!("accepted {n}");
        }
    }
    let left = beta.wait_acknowledged("alpha", PATIENCE);
    println!("unacknowledged {left}");
    beta.shutdown();
}

fn spawn_child(spec: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_sender_loses_nothing_it_accepted",
            "--nocapture",
        ])
        .env(CHILD, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child")
}

/// A listener that accepts and never answers: a dial through it hangs in
/// its handshake, so the child's link stays down and its outbox fills.
fn black_hole() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    (listener, endpoint)
}

fn alpha() -> (DistributedNetwork, Arc<RecorderLog>) {
    let alpha = DistributedNetwork::new(config("alpha")).unwrap();
    let recorder = Recorder::new(100_000);
    let log = recorder.log();
    alpha
        .register_local_actor("recorder", Box::new(recorder), json!({}))
        .unwrap();
    alpha.start().unwrap();
    (alpha, log)
}

#[test]
fn a_killed_sender_loses_nothing_it_accepted() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let (alpha, log) = alpha();
    let alpha_endpoint = alpha.local_addr().unwrap().to_string();
    // Kill points: early, mid, later (the child sends as fast as it can,
    // so each is a different count of messages).
    for (round, after) in [7usize, 250, 1200].into_iter().enumerate() {
        let dir = std::env::temp_dir().join(format!("reflow-durable-{}-{round}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (_hole, hole) = black_hole();
        let dir_text = dir.display().to_string();
        let mut sender = spawn_child(&format!("send:{dir_text}:{hole}"));
        let mut lines = BufReader::new(sender.stdout.take().unwrap()).lines();
        let mut accepted = 0usize;
        while accepted < after {
            let line = lines.next().expect("the child stopped early").unwrap();
            if let Some(n) = line.strip_prefix("accepted ") {
                accepted = n.parse().unwrap();
            }
        }
        // SIGKILL: no destructor, no flush, no goodbye.
        sender.kill().unwrap();
        let _ = sender.wait();
        // Whatever it printed after our count was accepted too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("accepted ") {
                accepted = n.parse().unwrap();
            }
        }
        let before = log.records().len();
        let replayer = spawn_child(&format!("replay:{dir_text}:{alpha_endpoint}"));
        let output = replayer.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("unacknowledged 0"), "round {round}: {text}");
        let got: Vec<i64> = log.records()[before..]
            .iter()
            .map(|r| r.message.as_i64().unwrap())
            .collect();
        // Every accepted number, in order, once; a message appended but
        // killed before its `accepted` line may follow.
        assert!(
            got.len() >= accepted,
            "round {round}: {} of {accepted} arrived",
            got.len()
        );
        assert_eq!(
            got[..accepted],
            (1..=accepted as i64).collect::<Vec<_>>()[..],
            "round {round}"
        );
        assert!(got.len() <= accepted + 1, "round {round}: {} arrived", got.len());
        let _ = std::fs::remove_dir_all(&dir);
        println!("round {round}: killed after {accepted} accepted; all replayed");
    }
    alpha.shutdown();
}
