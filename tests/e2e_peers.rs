//! End-to-end: the real `reflow-discovery` and `reflow-peer` binaries as
//! separate processes, talking over loopback sockets.

mod common;

use std::path::Path;
use std::time::Duration;

use common::harness::{self, Echo, Proc, TempDir, address_in};

const WAIT: Duration = Duration::from_secs(30);

fn peer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-peer"))
}

fn start_discovery() -> (Proc, String) {
    let discovery = Proc::spawn(
        "discovery",
        Path::new(env!("CARGO_BIN_EXE_reflow-discovery")),
        &["--bind", "127.0.0.1:0"],
        &[],
        Echo::Quiet,
    );
    let line = discovery.wait_for("listening on", WAIT).unwrap();
    let url = format!("http://{}", address_in(&line, "listening on "));
    (discovery, url)
}

/// A peer config with short intervals, so tests wait little.
fn config(network: &str, bind: &str, discovery: Option<&str>, extra: &str) -> String {
    let discovery = discovery
        .map(|url| format!("discovery_endpoints = [\"{url}\"]\ndiscovery_refresh_ms = 300\n"))
        .unwrap_or_default();
    format!(
        "network_id = \"{network}\"\nbind_address = \"{bind}\"\nheartbeat_interval_ms = 200\n{discovery}{extra}\n"
    )
}

fn start_peer(dir: &TempDir, name: &str, toml: &str, args: &[&str]) -> Proc {
    harness::start_peer(peer_bin(), dir, name, toml, args)
}

fn bridge_address(peer: &Proc) -> String {
    harness::bridge_address(peer, WAIT)
}

#[test]
fn walkthrough_completes_every_step() {
    common::walkthrough::walk(Path::new(env!("CARGO_BIN_EXE_reflow-discovery")), peer_bin()).unwrap();
}

#[test]
fn three_peers_exchange_messages_between_every_pair() {
    let (_discovery, url) = start_discovery();
    let dir = TempDir::new("three");
    let names = ["alpha", "beta", "gamma"];
    let mut peers = Vec::new();
    for name in names {
        let sends: Vec<String> = names
            .iter()
            .filter(|other| **other != name)
            .map(|other| format!("{other}:recorder:in:from-{name}"))
            .collect();
        let mut args = Vec::new();
        for send in &sends {
            args.push("--send");
            args.push(send.as_str());
        }
        let args: Vec<&str> = args.to_vec();
        peers.push(start_peer(
            &dir,
            name,
            &config(name, "127.0.0.1", Some(&url), ""),
            &args,
        ));
    }
    for (i, peer) in peers.iter().enumerate() {
        for (j, sender) in names.iter().enumerate() {
            if i != j {
                peer.wait_for(&format!("recorder.in: String(\"from-{sender}\")"), WAIT)
                    .unwrap();
            }
        }
    }
    for peer in &peers {
        assert_eq!(
            peer.count("recorder.in: String("),
            2,
            "{}:\n{}",
            peer.name,
            peer.output()
        );
    }
}

#[test]
fn peers_find_each_other_through_discovery_alone() {
    let (_discovery, url) = start_discovery();
    let dir = TempDir::new("discovery-only");
    let alpha = start_peer(&dir, "alpha", &config("alpha", "127.0.0.1", Some(&url), ""), &[]);
    alpha.wait_for("peer ready", WAIT).unwrap();
    let beta = start_peer(
        &dir,
        "beta",
        &config("beta", "127.0.0.1", Some(&url), ""),
        &["--send", "alpha:recorder:in:found-you"],
    );
    alpha
        .wait_for("recorder.in: String(\"found-you\")", WAIT)
        .unwrap();
    beta.wait_for("sent test message to alpha/recorder.in", WAIT)
        .unwrap();
}

#[test]
fn peer_bound_to_all_interfaces_advertises_a_dialable_address() {
    let (_discovery, url) = start_discovery();
    let dir = TempDir::new("wildcard");
    let alpha = start_peer(&dir, "alpha", &config("alpha", "0.0.0.0", Some(&url), ""), &[]);
    let line = alpha.wait_for("bridge listening on", WAIT).unwrap();
    let advertised = address_in(&line, "advertised as ");
    assert!(!advertised.starts_with("0.0.0.0"), "advertised {advertised}");
    let _beta = start_peer(
        &dir,
        "beta",
        &config("beta", "127.0.0.1", Some(&url), ""),
        &["--send", "alpha:recorder:in:via-wildcard"],
    );
    alpha
        .wait_for("recorder.in: String(\"via-wildcard\")", WAIT)
        .unwrap();
}

#[test]
fn payloads_keep_colons_and_unicode() {
    let dir = TempDir::new("payloads");
    let alpha = start_peer(&dir, "alpha", &config("alpha", "127.0.0.1", None, ""), &[]);
    let endpoint = bridge_address(&alpha);
    let payload = "alpha:recorder:in:time=12:30:05 ünïcødé ✓ 日本";
    let extra = format!("[[connect]]\nendpoint = \"{endpoint}\"\n");
    let mut beta = start_peer(
        &dir,
        "beta",
        &config("beta", "127.0.0.1", None, &extra),
        &["--send", payload, "--once"],
    );
    alpha
        .wait_for("recorder.in: String(\"time=12:30:05 ünïcødé ✓ 日本\")", WAIT)
        .unwrap();
    let status = beta.wait_exit(WAIT).unwrap();
    assert!(status.success(), "{}", beta.output());
}

#[test]
fn send_to_an_unreachable_network_fails_with_exit_code_1() {
    let dir = TempDir::new("unreachable");
    let toml = config("beta", "127.0.0.1", None, "");
    let path = dir.write("beta.toml", &toml);
    // No discovery and no connection: the send waits its bound, then fails.
    let mut beta = Proc::spawn(
        "beta",
        peer_bin(),
        &[
            "--config",
            &path.to_string_lossy(),
            "--send",
            "nowhere:recorder:in:x",
            "--once",
        ],
        &[],
        Echo::Quiet,
    );
    let status = beta.wait_exit(Duration::from_secs(60)).unwrap();
    assert_eq!(status.code(), Some(1), "{}", beta.output());
    beta.wait_for("no connection to network nowhere", WAIT).unwrap();
}

#[test]
fn local_send_reaches_the_peers_own_recorder() {
    let dir = TempDir::new("local");
    let mut alpha = start_peer(
        &dir,
        "alpha",
        &config("alpha", "127.0.0.1", None, ""),
        &["--send", "alpha:recorder:in:to-myself", "--once"],
    );
    let status = alpha.wait_exit(WAIT).unwrap();
    assert!(status.success(), "{}", alpha.output());
    alpha
        .wait_for("recorder.in: String(\"to-myself\")", WAIT)
        .unwrap();
}

#[test]
fn sigterm_and_sigint_shut_the_peer_down_with_exit_code_0() {
    let dir = TempDir::new("signals");
    for signal in ["TERM", "INT"] {
        let mut peer = start_peer(&dir, "alpha", &config("alpha", "127.0.0.1", None, ""), &[]);
        peer.wait_for("peer ready", WAIT).unwrap();
        peer.signal(signal);
        let status = peer.wait_exit(WAIT).unwrap();
        assert!(status.success(), "SIG{signal}: {status}\n{}", peer.output());
        peer.wait_for("shutting down", WAIT).unwrap();
    }
}

#[test]
fn config_errors_name_the_file_and_line_and_exit_with_code_2() {
    let dir = TempDir::new("config-errors");
    let cases = [
        (
            "typo.toml",
            "network_id = \"alpha\"\nheartbeat_intervl_ms = 5\n",
            "typo.toml:2: unknown key",
        ),
        (
            "missing.toml",
            "bind_port = 9100\n",
            "missing required key `network_id`",
        ),
        (
            "type.toml",
            "network_id = \"alpha\"\nbind_port = \"abc\"\n",
            "type.toml:2:",
        ),
        ("syntax.toml", "network_id = \n", "syntax.toml:1"),
        (
            "endpoint.toml",
            "network_id = \"alpha\"\n\n[[connect]]\nendpoint = \"nohost\"\n",
            "endpoint.toml:4:",
        ),
    ];
    for (file, text, expected) in cases {
        let path = dir.write(file, text);
        let mut peer = Proc::spawn(
            "peer",
            peer_bin(),
            &["--config", &path.to_string_lossy()],
            &[],
            Echo::Quiet,
        );
        let status = peer.wait_exit(WAIT).unwrap();
        assert_eq!(status.code(), Some(2), "{file}: {}", peer.output());
        assert!(
            peer.output().contains(expected),
            "{file}: expected {expected:?} in:\n{}",
            peer.output()
        );
    }
    let mut missing = Proc::spawn(
        "peer",
        peer_bin(),
        &["--config", "/nonexistent/peer.toml"],
        &[],
        Echo::Quiet,
    );
    assert_eq!(missing.wait_exit(WAIT).unwrap().code(), Some(2));
    assert!(
        missing.output().contains("/nonexistent/peer.toml"),
        "{}",
        missing.output()
    );
}

#[test]
fn usage_errors_exit_with_code_2_and_help_exits_0() {
    for (args, expected) in [
        (vec!["--bogus"], "--bogus"),
        (vec![], "--config"),
        (vec!["--config", "x.toml", "--send"], "--send"),
        (
            vec!["--config", "x.toml", "--send", "alpha:recorder"],
            "network:actor:port:payload",
        ),
    ] {
        let mut peer = Proc::spawn("peer", peer_bin(), &args, &[], Echo::Quiet);
        let status = peer.wait_exit(WAIT).unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {}", peer.output());
        assert!(peer.output().contains(expected), "{args:?}: {}", peer.output());
    }
    let mut help = Proc::spawn("peer", peer_bin(), &["--help"], &[], Echo::Quiet);
    assert!(help.wait_exit(WAIT).unwrap().success());
    assert!(help.output().contains("Exit codes"));
}
