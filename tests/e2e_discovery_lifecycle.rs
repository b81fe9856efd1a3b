//! The roster's lifecycle seen by real `reflow-peer` processes: a clean stop
//! removes a peer's entry at once and every other peer logs it leaving on
//! its next refresh; two live instances of one network are called out at
//! warn by the server and by a peer that sees the entry flip between them.

mod common;
mod discovery_support;

use std::path::Path;

use common::harness::{self, TempDir};
use discovery_support::*;

fn peer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-peer"))
}

fn toml(network: &str, instance: &str, url: &str, refresh_ms: u64) -> String {
    format!(
        "network_id = \"{network}\"\ninstance_id = \"{instance}\"\nauto_connect = false\n\
         discovery_endpoints = [\"{url}\"]\ndiscovery_refresh_ms = {refresh_ms}\n"
    )
}

#[test]
fn a_clean_stop_leaves_the_roster_at_once_and_peers_log_it() {
    // The default 60 s TTL: anything sooner is the deregistration.
    let server = ServerProcess::start(&[]);
    let dir = TempDir::new("lifecycle-stop");
    let mut alpha = harness::start_peer(
        peer_bin(),
        &dir,
        "alpha",
        &toml("alpha", "alpha-1", &server.url(), 300),
        &[],
    );
    let beta = harness::start_peer(
        peer_bin(),
        &dir,
        "beta",
        &toml("beta", "beta-1", &server.url(), 300),
        &[],
    );
    beta.wait_for("discovery roster: added alpha (instance alpha-1", PATIENCE)
        .unwrap_or_else(|e| panic!("{e}"));
    let mark = beta.mark();
    alpha.signal("TERM");
    let status = alpha.wait_exit(PATIENCE).expect("alpha exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        networks(server.addr).iter().all(|n| n["network_id"] != "alpha"),
        "gone as soon as alpha exited"
    );
    let line = beta
        .wait_for_after(mark, "discovery roster: removed alpha", PATIENCE)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(line.contains("INFO"), "{line}");
}

#[test]
fn two_live_instances_of_one_network_are_called_out_by_server_and_peers() {
    let mut server = ServerProcess::start(&[]);
    let dir = TempDir::new("lifecycle-rivals");
    // Two processes claim alpha; each re-registers every 300 ms, taking
    // the entry from the other. Beta polls faster and sees it flip.
    let _first = harness::start_peer(
        peer_bin(),
        &dir,
        "alpha1",
        &toml("alpha", "alpha-1", &server.url(), 300),
        &[],
    );
    let _second = harness::start_peer(
        peer_bin(),
        &dir,
        "alpha2",
        &toml("alpha", "alpha-2", &server.url(), 300),
        &[],
    );
    let beta = harness::start_peer(
        peer_bin(),
        &dir,
        "beta",
        &toml("beta", "beta-1", &server.url(), 50),
        &[],
    );
    let line = server.wait_for_log("two live instances claim network alpha");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("alpha-1") && line.contains("alpha-2"), "{line}");
    let line = beta
        .wait_for("two live instances seem to claim it", PATIENCE)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        line.contains("WARN") && line.contains("network alpha went back from instance"),
        "{line}"
    );
    assert!(
        line.contains("alpha-1 at 127.0.0.1:") && line.contains("alpha-2 at 127.0.0.1:"),
        "{line}"
    );
}
