//! Signed registrations against the real binaries: `reflow-discovery
//! --auth-token-file` refuses unsigned, badly signed and stale requests
//! with 401 (logged at warn, escaped), also when they would take over a
//! listed network, reads stay open unless `--auth-reads`, and `reflow-peer`
//! signs with its `auth_token`.

mod common;
mod discovery_support;

use std::path::Path;
use std::process::Command;

use common::harness::{self, TempDir};
use discovery_support::*;
use reflow_distributed::discovery::auth::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};

const TOKEN: &str = "a-long-random-federation-token";

fn token_file(dir: &TempDir) -> String {
    dir.write("token", &format!("{TOKEN}\n"))
        .to_string_lossy()
        .into_owned()
}

/// A request signed with `token` at Unix time `at`.
fn signed(method: &str, target: &str, body: &str, token: &str, at: u64) -> Vec<u8> {
    let timestamp = at.to_string();
    let signature = auth::sign(token.as_bytes(), method, target, &timestamp, body.as_bytes());
    format!(
        "{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{TIMESTAMP_HEADER}: {timestamp}\r\n\
         {SIGNATURE_HEADER}: {signature}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
fn unsigned_bad_and_stale_registrations_get_401_and_signed_ones_pass() {
    let dir = TempDir::new("discovery-auth");
    let mut server = ServerProcess::start(&["--auth-token-file", &token_file(&dir)]);
    server.wait_for_log("signed requests required for registrations and deregistrations");
    let body = registration("alpha", "alpha-1", "127.0.0.1:9100");

    let answer = http(server.addr, "POST", "/register", Some(&body));
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(
        answer.error().contains("missing X-Reflow-Timestamp"),
        "{answer:?}"
    );
    assert!(
        answer.head.contains("WWW-Authenticate: Reflow-Signature"),
        "{answer:?}"
    );
    let line = server.wait_for_log("Refused request from 127.0.0.1");
    assert!(
        line.contains("WARN") && line.contains("401 POST /register"),
        "{line}"
    );

    let answer = raw(
        server.addr,
        &signed("POST", "/register", &body, "wrong-token", now()),
    );
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(answer.error().contains("bad signature"), "{answer:?}");

    let answer = raw(
        server.addr,
        &signed("POST", "/register", &body, TOKEN, now() - 120),
    );
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(answer.error().contains("120 s behind"), "{answer:?}");

    // A signature over another body does not carry over.
    let mut forged = signed("POST", "/register", &body, TOKEN, now());
    let at = forged.len() - body.len();
    forged[at + body.find("9100").expect("port")] = b'8';
    assert_eq!(raw(server.addr, &forged).status, 401);

    assert!(
        networks(server.addr).is_empty(),
        "reads stay open, nothing listed"
    );
    let answer = raw(server.addr, &signed("POST", "/register", &body, TOKEN, now()));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(networks(server.addr).len(), 1);

    // Deregistration too: unsigned refused, signed accepted.
    let target = "/networks/alpha?instance_id=alpha-1";
    assert_eq!(http(server.addr, "DELETE", target, None).status, 401);
    assert_eq!(networks(server.addr).len(), 1, "still listed");
    assert_eq!(
        raw(server.addr, &signed("DELETE", target, "", TOKEN, now())).status,
        200
    );
    assert!(networks(server.addr).is_empty());

    let metrics = http(server.addr, "GET", "/metrics", None).body;
    assert!(
        metrics.contains("reflow_discovery_auth_refused_total 5"),
        "{metrics}"
    );
}

/// A forged registration for a network that is listed would send its
/// dialers elsewhere: refused, and the real entry stays as it was.
#[test]
fn a_forged_registration_cannot_take_over_a_listed_network() {
    let dir = TempDir::new("discovery-auth-takeover");
    let server = ServerProcess::start(&["--auth-token-file", &token_file(&dir)]);
    let real = registration("alpha", "alpha-1", "127.0.0.1:9100");
    let answer = raw(server.addr, &signed("POST", "/register", &real, TOKEN, now()));
    assert_eq!(answer.status, 200, "{answer:?}");
    let listed = networks(server.addr);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (&listed[0]["instance_id"], &listed[0]["endpoint"]),
        (
            &serde_json::json!("alpha-1"),
            &serde_json::json!("127.0.0.1:9100")
        )
    );

    let forged = registration("alpha", "alpha-evil", "127.0.0.1:6666");
    let answer = http(server.addr, "POST", "/register", Some(&forged));
    assert_eq!(answer.status, 401, "unsigned: {answer:?}");
    let answer = raw(
        server.addr,
        &signed("POST", "/register", &forged, "wrong-token", now()),
    );
    assert_eq!(answer.status, 401, "signed with a wrong token: {answer:?}");
    assert!(answer.error().contains("bad signature"), "{answer:?}");

    // Not replaced, not even refreshed: the same entry, last_seen (to the
    // millisecond) included.
    assert_eq!(networks(server.addr), listed);
    let metrics = http(server.addr, "GET", "/metrics", None).body;
    assert!(
        metrics.contains("reflow_discovery_auth_refused_total 2"),
        "{metrics}"
    );
}

#[test]
fn a_hostile_path_in_a_refused_request_is_logged_escaped() {
    let dir = TempDir::new("discovery-auth-log");
    let mut server = ServerProcess::start(&["--auth-token-file", &token_file(&dir)]);
    let request = "DELETE /networks/x\u{202e}\u{1b}[31mfake?instance_id=x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let answer = raw(server.addr, request.as_bytes());
    assert_eq!(answer.status, 401, "{answer:?}");
    let line = server.wait_for_log("401 DELETE /networks/x");
    assert!(line.contains("\\u{202e}\\u{1b}[31mfake"), "{line}");
    assert!(!line.contains(['\u{202e}', '\u{1b}']), "{line}");
}

#[test]
fn auth_reads_makes_the_roster_private_but_not_health_or_metrics() {
    let dir = TempDir::new("discovery-auth-reads");
    let server = ServerProcess::start(&["--auth-token-file", &token_file(&dir), "--auth-reads"]);
    let answer = http(server.addr, "GET", "/networks", None);
    assert_eq!(answer.status, 401, "{answer:?}");
    let answer = raw(server.addr, &signed("GET", "/networks", "", TOKEN, now()));
    assert_eq!((answer.status, answer.body.as_str()), (200, "[]"));
    assert_eq!(http(server.addr, "GET", "/healthz", None).status, 200);
    assert_eq!(http(server.addr, "GET", "/metrics", None).status, 200);
}

#[test]
fn the_token_can_come_from_the_environment_but_not_both_ways() {
    let bin = env!("CARGO_BIN_EXE_reflow-discovery");
    let mut command = Command::new(bin);
    command.env("REFLOW_DISCOVERY_TOKEN", TOKEN);
    let server = ServerProcess::start_with(command, &[]);
    let body = registration("alpha", "alpha-1", "127.0.0.1:9100");
    assert_eq!(http(server.addr, "POST", "/register", Some(&body)).status, 401);
    assert_eq!(
        raw(server.addr, &signed("POST", "/register", &body, TOKEN, now())).status,
        200
    );

    let dir = TempDir::new("discovery-auth-both");
    let out = Command::new(bin)
        .args(["--bind", "127.0.0.1:0", "--auth-token-file", &token_file(&dir)])
        .env("REFLOW_DISCOVERY_TOKEN", TOKEN)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("both set"));
    let empty = dir.write("empty", "\n").to_string_lossy().into_owned();
    let out = Command::new(bin)
        .args(["--bind", "127.0.0.1:0", "--auth-token-file", &empty])
        .env_remove("REFLOW_DISCOVERY_TOKEN")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--auth-token-file") && stderr.contains("is empty"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN));
}

#[test]
fn peers_sign_with_their_auth_token_and_a_wrong_token_stays_out() {
    let dir = TempDir::new("discovery-auth-peers");
    let server = ServerProcess::start(&["--auth-token-file", &token_file(&dir)]);
    let peer_bin = Path::new(env!("CARGO_BIN_EXE_reflow-peer"));
    let toml = |network: &str, token: &str| {
        format!(
            "network_id = \"{network}\"\nauth_token = \"{token}\"\n\
             discovery_endpoints = [\"{}\"]\ndiscovery_refresh_ms = 200\nauto_connect = false\n",
            server.url()
        )
    };
    let mut alpha = harness::start_peer(peer_bin, &dir, "alpha", &toml("alpha", TOKEN), &[]);
    let intruder = harness::start_peer(peer_bin, &dir, "intruder", &toml("intruder", "guessed"), &[]);
    wait_until("alpha to be listed", || {
        networks(server.addr).iter().any(|n| n["network_id"] == "alpha")
    });
    let line = intruder
        .wait_for("registration failed", PATIENCE)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(line.contains("401") && line.contains("bad signature"), "{line}");
    assert!(!line.contains("guessed"), "no token in logs: {line}");
    assert!(
        networks(server.addr)
            .iter()
            .all(|n| n["network_id"] != "intruder")
    );

    // A clean stop deregisters with a signed DELETE: gone at once.
    alpha.signal("TERM");
    alpha.wait_exit(PATIENCE).expect("alpha exits");
    assert!(
        networks(server.addr).iter().all(|n| n["network_id"] != "alpha"),
        "alpha deregistered on stop"
    );
    drop(intruder);
}
