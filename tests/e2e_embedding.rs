//! End-to-end: the embedding example's flow, run in this test process, talks
//! to a real `reflow-peer` alpha process over a loopback socket.

mod common;

#[path = "../examples/embedded_peer.rs"]
mod embedded_peer;

use std::path::Path;
use std::time::Duration;

use common::harness::{Echo, Proc, TempDir, address_in};

const WAIT: Duration = Duration::from_secs(30);

fn start_alpha(dir: &TempDir) -> (Proc, String) {
    let config = dir.write(
        "alpha.toml",
        "network_id = \"alpha\"\nbind_address = \"127.0.0.1\"\nbind_port = 0\n\
         auth_token = \"embed-secret\"\nheartbeat_interval_ms = 200\n",
    );
    let config = config.to_string_lossy().to_string();
    let alpha = Proc::spawn(
        "alpha",
        Path::new(env!("CARGO_BIN_EXE_reflow-peer")),
        &["--config", &config],
        &[],
        Echo::Quiet,
    );
    let line = alpha.wait_for("bridge listening on", WAIT).unwrap();
    let address = address_in(&line, "bridge listening on ");
    alpha.wait_for("peer ready, awaiting messages", WAIT).unwrap();
    (alpha, address)
}

fn embedded_config(dir: &TempDir, alpha: &str, token: &str) -> String {
    let text = format!(
        "network_id = \"beta\"\nbind_address = \"127.0.0.1\"\nbind_port = 0\n\
         auth_token = \"{token}\"\nheartbeat_interval_ms = 200\n\n\
         [[connect]]\nendpoint = \"{alpha}\"\n\n\
         [[remote_actor]]\nactor_id = \"recorder\"\nnetwork_id = \"alpha\"\n"
    );
    dir.write("beta.toml", &text).to_string_lossy().to_string()
}

#[test]
fn greetings_from_an_embedded_peer_reach_alphas_recorder_in_order() {
    let dir = TempDir::new("embedding");
    let (alpha, address) = start_alpha(&dir);
    let config = embedded_config(&dir, &address, "embed-secret");
    let names: Vec<String> = ["ada", "grace", "linus"].map(String::from).to_vec();

    let written = embedded_peer::run(&config, &names).expect("the embedding flow succeeds");
    assert_eq!(written, 3);

    alpha
        .wait_for("Established connection with network: beta", WAIT)
        .unwrap();
    let mut positions = Vec::new();
    for name in &names {
        let line = format!("recorder.in: String(\"hello, {name}\")");
        alpha.wait_for(&line, WAIT).unwrap();
        let output = alpha.output();
        positions.push(output.find(&line).expect("line seen"));
    }
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "greetings arrived out of order:\n{}",
        alpha.output()
    );
    // The embedded peer's shutdown closes the connection cleanly.
    alpha.wait_for("Lost connection to network: beta", WAIT).unwrap();
}

#[test]
fn an_embedded_peer_with_the_wrong_token_is_refused_and_reports_it() {
    let dir = TempDir::new("embedding-refused");
    let (alpha, address) = start_alpha(&dir);
    let config = embedded_config(&dir, &address, "not-the-secret");
    let names = vec!["mallory".to_string()];

    let error = embedded_peer::run(&config, &names).expect_err("no link to alpha");
    assert!(
        error.contains("no connection to network alpha"),
        "unexpected error: {error}"
    );
    alpha.wait_for("auth_token mismatch", WAIT).unwrap();
    assert_eq!(alpha.count("mallory"), 0, "{}", alpha.output());
}
