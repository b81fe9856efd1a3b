//! The admin listener of real `reflow-peer` processes: `/metrics` read by an
//! independent Prometheus text-format parser moves with traffic between two
//! peers (under the default and under acknowledged delivery), with a link
//! redialed after its peer restarts and with a link evicted for silence;
//! `/readyz` turns ready when the configured link comes up and when the peer
//! has registered with discovery; `/links` and `/healthz` answer, also while
//! hundreds of slow clients hold connections.

mod common;
mod discovery_support;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::harness::{self, Echo, Proc, TempDir, address_in, free_port, http_get, task_count, wait_until};

const WAIT: Duration = Duration::from_secs(30);

fn peer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-peer"))
}

/// The admin address a peer logged at start.
fn admin_address(peer: &Proc) -> String {
    let line = peer
        .wait_for("admin listener on http://", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    address_in(&line, "admin listener on http://")
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn get(address: &str, path: &str) -> (u16, String) {
    http_get(address, path, WAIT).unwrap_or_else(|e| panic!("{e}"))
}

/// Parses `/metrics` and returns the value of `name` with `labels`.
fn sample(address: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (status, body) = get(address, "/metrics");
    assert_eq!(status, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("{name} is {other:?}"),
        })
}

fn config(network: &str, port: u16, extra: &str) -> String {
    format!("network_id = \"{network}\"\nbind_port = {port}\nheartbeat_interval_ms = 200\n{extra}\n")
}

#[test]
fn metrics_move_with_traffic_between_two_peers() {
    let dir = TempDir::new("admin-metrics");
    let alpha_port = free_port();
    let alpha = harness::start_peer(
        peer_bin(),
        &dir,
        "alpha",
        &config("alpha", alpha_port, ""),
        &["--admin", "127.0.0.1:0"],
    );
    let alpha_admin = admin_address(&alpha);
    assert_eq!(get(&alpha_admin, "/healthz").0, 200);
    assert_eq!(
        sample(
            &alpha_admin,
            "reflow_peer_messages_received_total",
            &[("network", "beta")]
        ),
        None,
        "no traffic yet"
    );
    assert_eq!(sample(&alpha_admin, "reflow_peer_ready", &[]), Some(1.0));

    let connect = format!("[[connect]]\nendpoint = \"127.0.0.1:{alpha_port}\"\nnetwork_id = \"alpha\"\n");
    let beta = harness::start_peer(
        peer_bin(),
        &dir,
        "beta",
        &config("beta", 0, &connect),
        &[
            "--admin",
            "127.0.0.1:0",
            "--send",
            "alpha:recorder:in:one",
            "--send",
            "alpha:recorder:in:two",
            "--send",
            "alpha:recorder:in:three",
        ],
    );
    let beta_admin = admin_address(&beta);
    alpha
        .wait_for_count("recorder.in", 3, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));

    let received = |name| sample(&alpha_admin, name, &[("network", "beta")]).unwrap_or(0.0);
    assert_eq!(received("reflow_peer_messages_received_total"), 3.0);
    assert!(received("reflow_peer_bytes_received_total") > 0.0);
    assert_eq!(
        sample(&alpha_admin, "reflow_peer_link_up", &[("network", "beta")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&alpha_admin, "reflow_peer_links", &[("state", "up")]),
        Some(1.0)
    );
    let sent = |name| sample(&beta_admin, name, &[("network", "alpha")]).unwrap_or(0.0);
    assert_eq!(sent("reflow_peer_messages_sent_total"), 3.0);
    assert!(sent("reflow_peer_bytes_sent_total") > 0.0);
    assert_eq!(
        sample(
            &beta_admin,
            "reflow_peer_queue_depth",
            &[("network", "alpha"), ("queue", "data")]
        ),
        Some(0.0)
    );
    for reason in ["unknown_target", "delivery_timeout", "lost_with_connection"] {
        assert_eq!(
            sample(
                &alpha_admin,
                "reflow_peer_dropped_messages_total",
                &[("reason", reason)]
            ),
            Some(0.0),
            "{reason}"
        );
    }
    assert_eq!(
        sample(
            &alpha_admin,
            "reflow_peer_refused_handshakes_total",
            &[("reason", "auth")]
        ),
        Some(0.0)
    );

    let (_, links) = get(&beta_admin, "/links");
    let links: serde_json::Value = serde_json::from_str(&links).expect("JSON");
    assert_eq!(links["network_id"], "beta");
    let link = &links["links"][0];
    assert_eq!(
        (
            &link["network_id"],
            &link["up"],
            &link["held"],
            &link["messages_out"]
        ),
        (
            &serde_json::json!("alpha"),
            &serde_json::json!(true),
            &serde_json::json!("configured"),
            &serde_json::json!(3)
        ),
        "{links}"
    );
    // A message for an actor alpha does not host is counted as a drop.
    let gamma = harness::start_peer(
        peer_bin(),
        &dir,
        "gamma",
        &config("gamma", 0, &connect),
        &["--send", "alpha:nobody:in:lost", "--once"],
    );
    wait_until(WAIT, Duration::from_millis(50), || {
        match sample(
            &alpha_admin,
            "reflow_peer_dropped_messages_total",
            &[("reason", "unknown_target")],
        ) {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    drop(gamma);
}

/// Under acknowledged delivery the receiver counts the messages of the
/// sender's network as under the default mode, and the sender's outbox
/// gauge and acknowledgement counter follow the receiver's acknowledgements.
#[test]
fn acknowledged_delivery_shows_in_the_counts_and_the_outbox() {
    let dir = TempDir::new("admin-acked");
    let alpha_port = free_port();
    let alpha = harness::start_peer(
        peer_bin(),
        &dir,
        "alpha",
        &config("alpha", alpha_port, ""),
        &["--admin", "127.0.0.1:0"],
    );
    let alpha_admin = admin_address(&alpha);
    let extra = format!(
        "[[connect]]\nendpoint = \"127.0.0.1:{alpha_port}\"\nnetwork_id = \"alpha\"\n\n\
         [delivery]\nmode = \"acknowledged\"\n"
    );
    let beta = harness::start_peer(
        peer_bin(),
        &dir,
        "beta",
        &config("beta", 0, &extra),
        &[
            "--admin",
            "127.0.0.1:0",
            "--send",
            "alpha:recorder:in:one",
            "--send",
            "alpha:recorder:in:two",
            "--send",
            "alpha:recorder:in:three",
        ],
    );
    let beta_admin = admin_address(&beta);
    alpha
        .wait_for_count("recorder.in", 3, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sample(
            &alpha_admin,
            "reflow_peer_messages_received_total",
            &[("network", "beta")]
        ),
        Some(3.0)
    );
    wait_until(WAIT, Duration::from_millis(50), || {
        match sample(&beta_admin, "reflow_peer_messages_acknowledged_total", &[]) {
            Some(n) if n >= 3.0 => Ok(()),
            other => Err(format!("acknowledged: {other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sample(
            &beta_admin,
            "reflow_peer_queue_depth",
            &[("network", "alpha"), ("queue", "outbox")]
        ),
        Some(0.0),
        "every message acknowledged, none left in the outbox"
    );
    assert_eq!(
        sample(&alpha_admin, "reflow_peer_duplicates_dropped_total", &[]),
        Some(0.0)
    );
}

#[test]
fn readyz_turns_ready_when_the_configured_link_comes_up() {
    let dir = TempDir::new("admin-ready");
    let beta_port = free_port();
    let connect = format!("[[connect]]\nendpoint = \"127.0.0.1:{beta_port}\"\nnetwork_id = \"beta\"\n");
    let alpha = harness::start_peer(
        peer_bin(),
        &dir,
        "alpha",
        &config("alpha", 0, &connect),
        &["--admin", "127.0.0.1:0"],
    );
    let admin = admin_address(&alpha);
    let (status, body) = get(&admin, "/readyz");
    assert_eq!(status, 503, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["ready"], false);
    assert_eq!(
        answer["waiting_for"][0],
        format!("link to beta at 127.0.0.1:{beta_port}"),
        "{body}"
    );
    assert_eq!(sample(&admin, "reflow_peer_ready", &[]), Some(0.0));
    assert_eq!(
        sample(&admin, "reflow_peer_link_up", &[("network", "beta")]),
        Some(0.0)
    );
    assert_eq!(get(&admin, "/healthz").0, 200, "alive though not ready");

    let _beta = harness::start_peer(peer_bin(), &dir, "beta", &config("beta", beta_port, ""), &[]);
    wait_until(WAIT, Duration::from_millis(50), || match get(&admin, "/readyz") {
        (200, body) if body.contains("\"ready\":true") => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sample(&admin, "reflow_peer_link_up", &[("network", "beta")]),
        Some(1.0)
    );
    assert_eq!(get(&admin, "/nope").0, 404);
}

/// `/readyz` of a peer whose discovery server is not up yet names the
/// registration as what it waits for, turns ready once the server comes up
/// on that address and the peer registers, and not ready again when the
/// server goes away.
#[test]
fn readyz_waits_for_the_registration_with_discovery() {
    let dir = TempDir::new("admin-ready-discovery");
    let discovery = format!("127.0.0.1:{}", free_port());
    let extra = format!(
        "discovery_endpoints = [\"http://{discovery}\"]\ndiscovery_refresh_ms = 200\nauto_connect = false\n"
    );
    let alpha = harness::start_peer(
        peer_bin(),
        &dir,
        "alpha",
        &config("alpha", 0, &extra),
        &["--admin", "127.0.0.1:0"],
    );
    let admin = admin_address(&alpha);
    // A registration was tried and failed: not ready for that reason, not
    // merely because none was tried yet.
    alpha
        .wait_for("registration failed", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = get(&admin, "/readyz");
    assert_eq!(status, 503, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        answer,
        serde_json::json!({ "ready": false, "waiting_for": ["registration with discovery"] }),
        "{body}"
    );
    assert_eq!(sample(&admin, "reflow_peer_ready", &[]), Some(0.0));
    assert_eq!(sample(&admin, "reflow_peer_discovery_registered", &[]), Some(0.0));
    assert_eq!(get(&admin, "/healthz").0, 200, "alive though not ready");

    let mut server = start_discovery(&discovery);
    wait_until(WAIT, Duration::from_millis(50), || match get(&admin, "/readyz") {
        (200, body) if body == r#"{"ready":true}"# => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    alpha
        .wait_for(
            &format!("Registered with discovery endpoint: http://{discovery}"),
            WAIT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sample(&admin, "reflow_peer_ready", &[]), Some(1.0));
    assert_eq!(sample(&admin, "reflow_peer_discovery_registered", &[]), Some(1.0));
    let (status, roster) = get(&discovery, "/networks");
    assert_eq!(status, 200, "{roster}");
    assert!(roster.contains(r#""network_id":"alpha""#), "{roster}");

    // Discovery gone: the next refresh fails and the peer is not ready again.
    server.kill();
    wait_until(WAIT, Duration::from_millis(50), || match get(&admin, "/readyz") {
        (503, body) if body.contains("registration with discovery") => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// `reflow-discovery` on `bind`, once it listens.
fn start_discovery(bind: &str) -> Proc {
    let server = Proc::spawn(
        "discovery",
        Path::new(env!("CARGO_BIN_EXE_reflow-discovery")),
        &["--bind", bind],
        &[],
        Echo::Quiet,
    );
    server
        .wait_for("reflow discovery server listening on", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    server
}

/// A counter of `/metrics` once it reaches `at_least`.
fn counter_reaches(address: &str, name: &str, at_least: f64) -> f64 {
    wait_until(WAIT, Duration::from_millis(50), || {
        match sample(address, name, &[]) {
            Some(n) if n >= at_least => Ok(n),
            other => Err(format!("{name}: {other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until `/metrics` of `address` shows the link to `network` up (or down).
fn link_becomes(address: &str, network: &str, up: bool) {
    let want = f64::from(u8::from(up));
    wait_until(WAIT, Duration::from_millis(50), || {
        match sample(address, "reflow_peer_link_up", &[("network", network)]) {
            Some(v) if v == want => Ok(()),
            other => Err(format!("link to {network} up: {other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Alpha on `alpha_port`, and beta holding a link to it with an admin
/// listener; returns them with beta's admin address once the link is up.
fn held_link(dir: &TempDir, alpha_port: u16) -> (Proc, Proc, String) {
    let alpha = harness::start_peer(peer_bin(), dir, "alpha", &config("alpha", alpha_port, ""), &[]);
    harness::bridge_address(&alpha, WAIT);
    let connect = format!("[[connect]]\nendpoint = \"127.0.0.1:{alpha_port}\"\nnetwork_id = \"alpha\"\n");
    let beta = harness::start_peer(
        peer_bin(),
        dir,
        "beta",
        &config("beta", 0, &connect),
        &["--admin", "127.0.0.1:0"],
    );
    let admin = admin_address(&beta);
    link_becomes(&admin, "alpha", true);
    (alpha, beta, admin)
}

#[test]
fn reconnects_total_counts_a_held_link_redialed_after_its_peer_restarts() {
    let dir = TempDir::new("admin-reconnects");
    let alpha_port = free_port();
    let (mut alpha, beta, admin) = held_link(&dir, alpha_port);
    // The first dial found alpha listening: no reconnect yet.
    assert_eq!(sample(&admin, "reflow_peer_reconnects_total", &[]), Some(0.0));

    alpha.kill();
    link_becomes(&admin, "alpha", false);
    let _alpha = harness::start_peer(peer_bin(), &dir, "alpha", &config("alpha", alpha_port, ""), &[]);
    let reconnects = counter_reaches(&admin, "reflow_peer_reconnects_total", 1.0);
    link_becomes(&admin, "alpha", true);
    assert_eq!(reconnects, 1.0, "one restart, one reconnect");
    assert_eq!(
        beta.count("Reconnected to alpha"),
        1,
        "the counter and the log agree:\n{}",
        beta.output()
    );
    // A killed peer closes its connection: that is no eviction for silence.
    assert_eq!(sample(&admin, "reflow_peer_evictions_total", &[]), Some(0.0));
}

#[test]
fn evictions_total_counts_a_link_silenced_by_a_frozen_peer() {
    let dir = TempDir::new("admin-evictions");
    let (alpha, beta, admin) = held_link(&dir, free_port());
    assert_eq!(sample(&admin, "reflow_peer_evictions_total", &[]), Some(0.0));

    // Frozen, alpha keeps its connection open but sends nothing, not even
    // heartbeats (every 200 ms): beta evicts it after three silent intervals.
    alpha.signal("STOP");
    let evictions = counter_reaches(&admin, "reflow_peer_evictions_total", 1.0);
    // While alpha is frozen no new session can start, so none else to evict.
    assert_eq!(evictions, 1.0);
    beta.wait_for("Evicted connection to network: alpha", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    link_becomes(&admin, "alpha", false);

    alpha.signal("CONT");
    counter_reaches(&admin, "reflow_peer_reconnects_total", 1.0);
    link_becomes(&admin, "alpha", true);
}

/// Half a request head: a slow client sends this and waits.
const HALF_HEAD: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ";
/// Under the admin listener's 5 s head deadline: a good request that took
/// this long waited for a slow client's deadline instead of being served
/// beside them, and threads gone only this late may have waited it out too.
const WAITED_FOR_A_DEADLINE: Duration = Duration::from_secs(4);

/// `GET /healthz` from the local address `from`: its status and how long it took.
fn timed_healthz(from: IpAddr, admin: SocketAddr) -> (u16, Duration) {
    let started = Instant::now();
    let answer = discovery_support::http_from(from, admin, "GET", "/healthz");
    (answer.status, started.elapsed())
}

#[test]
fn slow_clients_leave_the_admin_listener_serving_with_bounded_threads() {
    let dir = TempDir::new("admin-slowloris");
    let alpha = harness::start_peer(
        peer_bin(),
        &dir,
        "alpha",
        &config("alpha", 0, ""),
        &["--admin", "127.0.0.1:0"],
    );
    let admin: SocketAddr = admin_address(&alpha).parse().expect("admin address");
    assert_eq!(get(&admin.to_string(), "/healthz").0, 200);
    let pid = alpha.pid().to_string();
    let idle = task_count(&pid);

    // 300 connections from 127.0.0.1 that each send half a head and wait,
    // arriving in waves; the peer's threads are counted all along.
    let attacker = thread::spawn(move || {
        let mut held = Vec::with_capacity(300);
        while held.len() < 300 {
            for _ in 0..50 {
                let mut s = TcpStream::connect(admin).expect("connect a slow client");
                let _ = s.write_all(HALF_HEAD);
                held.push(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        held
    });
    let mut peak = idle;
    while !attacker.is_finished() {
        peak = peak.max(task_count(&pid));
        thread::sleep(Duration::from_millis(2));
    }
    let held = attacker.join().expect("slow clients");
    let arrived = Instant::now();
    peak = peak.max(task_count(&pid));

    // While they are held (the survivors until their 5 s head deadline),
    // the threads of those that gave way end, leaving one per connection
    // the caps let stay open: 8 per address, 16 in all. Without the caps
    // all 300 would wait out their deadline.
    let settled = wait_until(
        WAITED_FOR_A_DEADLINE.saturating_sub(arrived.elapsed()),
        Duration::from_millis(5),
        || match task_count(&pid) {
            n if n <= idle + 16 => Ok(n),
            n => Err(format!("peer threads: {idle} idle, {n} now")),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let settled_in = arrived.elapsed();

    // And a whole request is served at once, from the slow clients' own
    // address (one of them gives way) and from another.
    let same = timed_healthz(IpAddr::V4(Ipv4Addr::LOCALHOST), admin);
    let other = timed_healthz(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), admin);
    eprintln!(
        "300 slow clients on the admin listener: GET /healthz from 127.0.0.1 {} in {:?}, \
         from 127.0.0.2 {} in {:?}; peer threads {idle} idle, {peak} at most while they \
         arrived, {settled} {settled_in:?} after the last",
        same.0, same.1, other.0, other.1
    );
    assert_eq!(same.0, 200, "from the slow clients' address");
    assert_eq!(other.0, 200, "from another address");
    assert!(
        same.1 < WAITED_FOR_A_DEADLINE && other.1 < WAITED_FOR_A_DEADLINE,
        "/healthz took {:?} and {:?}",
        same.1,
        other.1
    );
    alpha
        .wait_for("to make room for new ones", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    drop(held);
}
