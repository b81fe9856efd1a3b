//! `reflow-peer --send-file` under acknowledged delivery when some
//! acknowledgements cannot come: beta sends to alpha, which never answers
//! (frozen with SIGSTOP, or nothing listening), to gamma, which answers,
//! and to itself. The closing line must count exactly alpha's messages as
//! not acknowledged, out of those sent to other networks; the run ends at
//! `--ack-timeout`, or at once on SIGINT/SIGTERM, with exit 1.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::harness::{self, Proc, TempDir, free_port, http_get, wait_until};

const WAIT: Duration = Duration::from_secs(30);
/// Messages for each network in the send file.
const TO_ALPHA: usize = 30;
const TO_GAMMA: usize = 20;
const TO_SELF: usize = 5;
const REMOTE: usize = TO_ALPHA + TO_GAMMA;

fn peer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-peer"))
}

/// A receiving peer: its recorder logs what arrives.
fn receiver(dir: &TempDir, network: &str) -> (Proc, String) {
    let toml = format!(
        "network_id = \"{network}\"\nbind_address = \"127.0.0.1\"\nheartbeat_interval_ms = 200\n\
         auto_connect = false\n"
    );
    let peer = harness::start_peer(peer_bin(), dir, network, &toml, &[]);
    let endpoint = harness::bridge_address(&peer, WAIT);
    (peer, endpoint)
}

fn beta_toml(alpha: &str, gamma: &str) -> String {
    format!(
        "network_id = \"beta\"\nbind_address = \"127.0.0.1\"\nheartbeat_interval_ms = 200\n\n\
         [reconnect]\ninitial_delay_ms = 20\nmax_delay_ms = 200\nmax_attempts = 1000\n\n\
         [delivery]\nmode = \"acknowledged\"\n\n\
         [[connect]]\nendpoint = \"{alpha}\"\nnetwork_id = \"alpha\"\n\n\
         [[connect]]\nendpoint = \"{gamma}\"\nnetwork_id = \"gamma\"\n"
    )
}

/// The send file: alpha's, gamma's and beta's own lines interleaved.
fn send_file(dir: &TempDir) -> String {
    let mut lines = String::from("# to a frozen alpha, a live gamma and this peer\n");
    for i in 1..=TO_ALPHA {
        lines += &format!("alpha:recorder:in:a{i}\n");
        if i <= TO_GAMMA {
            lines += &format!("gamma:recorder:in:g{i}\n");
        }
        if i <= TO_SELF {
            lines += &format!("beta:recorder:in:b{i}\n");
        }
    }
    dir.write("lines.txt", &lines).to_string_lossy().to_string()
}

/// The strings `peer`'s recorder logged that start with `prefix`, in order.
fn recorded(peer: &Proc, prefix: &str) -> Vec<String> {
    let needle = "recorder.in: String(\"";
    peer.lines_after(0, needle)
        .iter()
        .filter_map(|l| l[l.find(needle)? + needle.len()..].split('"').next())
        .filter(|s| s.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

/// The count in `waiting up to S s for K acknowledgement(s)`.
fn waiting_for(line: &str) -> usize {
    line.rsplit(" for ")
        .next()
        .and_then(|rest| rest.split(' ').next())
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

#[test]
fn acknowledgements_that_cannot_come_end_the_run_at_the_ack_timeout_with_their_count() {
    const ACK_TIMEOUT: u64 = 5;
    let dir = TempDir::new("acks-timeout");
    let (alpha, alpha_endpoint) = receiver(&dir, "alpha");
    let (gamma, gamma_endpoint) = receiver(&dir, "gamma");
    // Frozen: its kernel accepts beta's connection, the handshake never ends.
    alpha.signal("STOP");
    let file = send_file(&dir);
    let timeout = ACK_TIMEOUT.to_string();
    let mut beta = harness::start_peer(
        peer_bin(),
        &dir,
        "beta",
        &beta_toml(&alpha_endpoint, &gamma_endpoint),
        &["--send-file", &file, "--ack-timeout", &timeout, "--once"],
    );
    let waiting = beta.wait_for("acknowledgement(s)", WAIT).unwrap();
    let seen_waiting = Instant::now();
    let status = beta.wait_exit(WAIT).unwrap();
    let to_exit = seen_waiting.elapsed();
    let output = beta.output();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        waiting.contains(&format!("waiting up to {ACK_TIMEOUT} s for ")),
        "{waiting}"
    );
    let pending = waiting_for(&waiting);
    assert!(
        (TO_ALPHA..=REMOTE).contains(&pending),
        "waited for {pending}: {waiting}"
    );
    let summary = format!(
        "{TO_ALPHA} of {REMOTE} message(s) sent to other networks not acknowledged after {ACK_TIMEOUT} s (acknowledged delivery)"
    );
    let line = beta.wait_for(&summary, WAIT).unwrap();
    assert!(line.contains(" ERROR "), "{line}");
    assert_eq!(beta.count("not sent"), 0, "every line was sent:\n{output}");
    // It waited the timeout, not much less nor much more.
    assert!(
        to_exit >= Duration::from_millis(ACK_TIMEOUT * 1000 - 500)
            && to_exit <= Duration::from_secs(ACK_TIMEOUT + 3),
        "exit {} ms after the wait began:\n{output}",
        to_exit.as_millis()
    );
    // What could be acknowledged was delivered, once and in order.
    assert_eq!(recorded(&gamma, "g"), numbered("g", TO_GAMMA));
    assert_eq!(recorded(&beta, "b"), numbered("b", TO_SELF));
    assert!(recorded(&alpha, "a").is_empty());
    println!(
        "alpha frozen: exit 1 {} ms after 'waiting up to {ACK_TIMEOUT} s for {pending} acknowledgement(s)': {summary}",
        to_exit.as_millis()
    );
}

/// The value of `reflow_peer_queue_depth{network=..., queue="outbox"}`.
fn outbox_depth(admin: &str, network: &str) -> Result<u64, String> {
    let (status, body) = http_get(admin, "/metrics", Duration::from_secs(5))?;
    if status != 200 {
        return Err(format!("/metrics answered {status}"));
    }
    body.lines()
        .find(|l| {
            l.starts_with("reflow_peer_queue_depth{")
                && l.contains(&format!("network=\"{network}\""))
                && l.contains("queue=\"outbox\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| format!("no outbox depth for {network} yet"))
}

#[test]
fn a_signal_during_the_acknowledgement_wait_ends_the_run_at_once_with_the_count() {
    for signal in ["INT", "TERM"] {
        let dir = TempDir::new("acks-signal");
        // Nothing listens where alpha should be: the link never comes.
        let alpha_endpoint = format!("127.0.0.1:{}", free_port());
        let (gamma, gamma_endpoint) = receiver(&dir, "gamma");
        let file = send_file(&dir);
        let mut beta = harness::start_peer(
            peer_bin(),
            &dir,
            "beta",
            &beta_toml(&alpha_endpoint, &gamma_endpoint),
            &["--send-file", &file, "--admin", "127.0.0.1:0", "--once"],
        );
        let line = beta
            .wait_for("admin listener on http://", WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        let admin = harness::address_in(&line, "admin listener on http://");
        let waiting = beta.wait_for("waiting up to 60 s for ", WAIT).unwrap();
        // Gamma's acknowledgements are in: what is left is alpha's.
        wait_until(WAIT, Duration::from_millis(20), || {
            match outbox_depth(&admin, "gamma")? {
                0 => Ok(()),
                n => Err(format!("{n} to gamma not acknowledged yet")),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let signalled = Instant::now();
        beta.signal(signal);
        let status = beta.wait_exit(WAIT).unwrap();
        let to_exit = signalled.elapsed();
        let output = beta.output();
        assert_eq!(status.code(), Some(1), "SIG{signal}:\n{output}");
        let expected = format!(
            "stopped by a signal with {TO_ALPHA} of {REMOTE} message(s) sent to other networks not acknowledged"
        );
        beta.wait_for(&expected, WAIT).unwrap();
        assert!(
            to_exit <= Duration::from_millis(1500),
            "SIG{signal}: exit took {} ms:\n{output}",
            to_exit.as_millis()
        );
        assert_eq!(recorded(&gamma, "g"), numbered("g", TO_GAMMA));
        println!(
            "SIG{signal} during the acknowledgement wait ({}): exit 1 after {} ms: {expected}",
            waiting.split("] ").last().unwrap_or(&waiting),
            to_exit.as_millis()
        );
    }
}
