//! End-to-end faults: the real binaries as processes, with peers frozen
//! (SIGSTOP), killed and restarted, the discovery server killed and restarted,
//! and a peer at its connection limit. Every wait is on a log line or a
//! condition, with a deadline; intervals are shortened through the config.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::harness::{self, Echo, Proc, TempDir, address_in, free_port, http_get, wait_until};

/// Deadline for things that should happen soon (a start, a handshake).
const WAIT: Duration = Duration::from_secs(20);
/// Heartbeat interval where eviction timing is measured.
const INTERVAL: Duration = Duration::from_millis(200);
/// Heartbeat interval where an eviction would be an accident: a stall of a
/// loaded machine must not look like a dead peer (3 s of silence to evict).
const STEADY: Duration = Duration::from_millis(1000);
/// Slack for a loaded machine on top of a computed bound.
const MARGIN: Duration = Duration::from_secs(2);

fn peer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-peer"))
}

fn discovery_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-discovery"))
}

/// The discovery server on `bind` (`127.0.0.1:0` for any port) and its URL.
fn start_discovery(bind: &str) -> (Proc, String) {
    let discovery = Proc::spawn("discovery", discovery_bin(), &["--bind", bind], &[], Echo::Quiet);
    let line = discovery.wait_for("listening on", WAIT).unwrap();
    let url = format!("http://{}", address_in(&line, "listening on "));
    (discovery, url)
}

/// A peer config: `port` 0 for any port, `discovery` with a 200 ms refresh.
fn config(network: &str, port: u16, heartbeat: Duration, discovery: Option<&str>, extra: &str) -> String {
    let discovery = discovery
        .map(|url| format!("discovery_endpoints = [\"{url}\"]\ndiscovery_refresh_ms = 200\n"))
        .unwrap_or_default();
    format!(
        "network_id = \"{network}\"\nbind_address = \"127.0.0.1\"\nbind_port = {port}\n\
         heartbeat_interval_ms = {}\n{discovery}{extra}\n",
        heartbeat.as_millis()
    )
}

fn connect_to(endpoint: &str) -> String {
    format!("[[connect]]\nendpoint = \"{endpoint}\"\n")
}

fn start_peer(dir: &TempDir, name: &str, toml: &str, args: &[&str]) -> Proc {
    harness::start_peer(peer_bin(), dir, name, toml, args)
}

fn bridge_address(peer: &Proc) -> String {
    harness::bridge_address(peer, WAIT)
}

fn established(peer: &Proc, mark: usize, other: &str) {
    peer.wait_for_after(
        mark,
        &format!("Established connection with network: {other}"),
        WAIT,
    )
    .unwrap();
}

/// The lines that say a connection to `other` went away.
fn dropped(other: &str) -> [String; 2] {
    [
        format!("Lost connection to network: {other}"),
        format!("Evicted connection to network: {other}"),
    ]
}

/// Fails if, after the marks and for `window` more, either side logged that
/// the connection between `a` and `b` went away; shows both outputs.
fn assert_link_held(a: &Proc, a_mark: usize, b: &Proc, b_mark: usize, window: Duration) {
    let [lost, evicted] = dropped(&b.name);
    let a_side = a.expect_none_after(a_mark, &[&lost, &evicted], window);
    let [lost, evicted] = dropped(&a.name);
    let b_side = b.expect_none_after(b_mark, &[&lost, &evicted], Duration::ZERO);
    if let Err(e) = a_side.and(b_side) {
        panic!(
            "{e}\n--- {} was:\n{}\n--- {} was:\n{}",
            a.name,
            a.output(),
            b.name,
            b.output()
        );
    }
}

/// A one-shot peer that dials `endpoint`, sends `payload` to alpha's recorder
/// and exits; asserts alpha got it.
fn one_shot_send(dir: &TempDir, name: &str, alpha: &Proc, endpoint: &str, payload: &str) {
    let send = format!("alpha:recorder:in:{payload}");
    let mut sender = start_peer(
        dir,
        name,
        &config(name, 0, STEADY, None, &connect_to(endpoint)),
        &["--send", &send, "--once"],
    );
    alpha
        .wait_for(&format!("recorder.in: String(\"{payload}\")"), WAIT)
        .unwrap();
    let status = sender.wait_exit(WAIT).unwrap();
    assert!(status.success(), "{}", sender.output());
}

/// Alpha, and beta dialing it, both with heartbeat `interval`, once both
/// sides report the connection.
fn linked_pair(dir: &TempDir, interval: Duration) -> (Proc, Proc, String) {
    let alpha = start_peer(dir, "alpha", &config("alpha", 0, interval, None, ""), &[]);
    let endpoint = bridge_address(&alpha);
    let beta_toml = config("beta", 0, interval, None, &connect_to(&endpoint));
    let beta = start_peer(dir, "beta", &beta_toml, &[]);
    established(&beta, 0, "alpha");
    established(&alpha, 0, "beta");
    (alpha, beta, endpoint)
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
fn frozen_peer_is_evicted_after_three_intervals_and_redialed_once_it_resumes() {
    let dir = TempDir::new("sigstop");
    let (alpha, beta, endpoint) = linked_pair(&dir, INTERVAL);

    let beta_mark = beta.mark();
    let stopped_at = Instant::now();
    alpha.signal("STOP");
    beta.wait_for_after(beta_mark, "Evicted connection to network: alpha", WAIT)
        .unwrap();
    let to_eviction = stopped_at.elapsed();
    // Alpha's last heartbeat left at most one interval before the stop, and
    // beta evicts after 3 silent intervals (checked 4 times per interval).
    assert!(
        to_eviction >= 2 * INTERVAL,
        "evicted {} ms after SIGSTOP: before 2 intervals of {} ms",
        ms(to_eviction),
        ms(INTERVAL)
    );
    assert!(
        to_eviction <= 3 * INTERVAL + MARGIN,
        "evicted {} ms after SIGSTOP: later than 3 intervals + {} ms",
        ms(to_eviction),
        ms(MARGIN)
    );
    println!(
        "SIGSTOP -> eviction: {} ms (heartbeat interval {} ms)",
        ms(to_eviction),
        ms(INTERVAL)
    );

    let alpha_mark = alpha.mark();
    let resumed_at = Instant::now();
    alpha.signal("CONT");
    // Beta's redial waits in alpha's accept backlog (or comes now).
    let reconnected = beta
        .wait_for_after(
            beta_mark,
            &format!("Reconnected to alpha (endpoint {endpoint}) on attempt"),
            WAIT,
        )
        .unwrap();
    established(&alpha, alpha_mark, "beta");
    println!(
        "SIGCONT -> reconnected: {} ms ({reconnected})",
        ms(resumed_at.elapsed())
    );

    // Alpha serves again, and the new link between alpha and beta holds.
    let (alpha_mark, beta_mark) = (alpha.mark(), beta.mark());
    one_shot_send(&dir, "gamma", &alpha, &endpoint, "after-cont");
    assert_link_held(&beta, beta_mark, &alpha, alpha_mark, 4 * INTERVAL);
    assert_eq!(beta.count("Evicted connection"), 1, "{}", beta.output());
}

#[test]
fn freeze_shorter_than_the_eviction_window_evicts_nobody() {
    // Longer intervals than where eviction is timed: a stall of a loaded
    // machine must not pass for the freeze.
    let interval = Duration::from_millis(500);
    let dir = TempDir::new("short-stop");
    let (alpha, beta, _) = linked_pair(&dir, interval);
    let (alpha_mark, beta_mark) = (alpha.mark(), beta.mark());

    let stopped_at = Instant::now();
    alpha.signal("STOP");
    // The sleep is the freeze itself: a third of an interval.
    std::thread::sleep(interval / 3);
    alpha.signal("CONT");
    let frozen = stopped_at.elapsed();
    // Past 2 intervals (a very loaded machine) a missed heartbeat could
    // rightly evict, and this check would prove nothing.
    assert!(
        frozen < 2 * interval,
        "the freeze lasted {} ms, too long for this check",
        ms(frozen)
    );
    println!(
        "freeze of {} ms (heartbeat interval {} ms)",
        ms(frozen),
        ms(interval)
    );

    // Neither side drops the connection within 3 more intervals and then some.
    assert_link_held(&beta, beta_mark, &alpha, alpha_mark, 4 * interval);
    assert!(
        beta.lines_after(beta_mark, "Reconnect").is_empty(),
        "{}",
        beta.output()
    );
}

#[test]
fn peer_restarted_during_backoff_is_redialed_on_a_later_attempt() {
    let dir = TempDir::new("restart");
    let port = free_port();
    let alpha_toml = config("alpha", port, STEADY, None, "");
    let mut alpha = start_peer(&dir, "alpha", &alpha_toml, &[]);
    let endpoint = bridge_address(&alpha);
    let policy =
        "[reconnect]\ninitial_delay_ms = 100\nmax_delay_ms = 400\nmultiplier = 2\nmax_attempts = 20\n";
    let beta_extra = format!("{}{policy}", connect_to(&endpoint));
    let beta = start_peer(&dir, "beta", &config("beta", 0, STEADY, None, &beta_extra), &[]);
    established(&beta, 0, "alpha");

    let beta_mark = beta.mark();
    let killed_at = Instant::now();
    alpha.kill();
    beta.wait_for_after(beta_mark, "Lost connection to network: alpha", WAIT)
        .unwrap();
    println!("SIGKILL -> loss reported: {} ms", ms(killed_at.elapsed()));
    beta.wait_for_after(beta_mark, "Reconnect attempt 1/20 for alpha failed", WAIT)
        .unwrap();

    let restarted_at = Instant::now();
    let alpha = start_peer(
        &dir,
        "alpha",
        &alpha_toml,
        &["--send", "beta:recorder:in:from-restarted-alpha"],
    );
    assert_eq!(bridge_address(&alpha), endpoint);
    let line = beta
        .wait_for_after(
            beta_mark,
            &format!("Reconnected to alpha (endpoint {endpoint}) on attempt "),
            WAIT,
        )
        .unwrap();
    let to_reconnect = restarted_at.elapsed();
    let attempt: u32 = line
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no attempt number in {line:?}"));
    assert!(attempt >= 2, "attempt 1 had already failed: {line}");
    // The restarted alpha's only way to beta is the connection beta redialed.
    beta.wait_for("recorder.in: String(\"from-restarted-alpha\")", WAIT)
        .unwrap();
    let to_delivery = restarted_at.elapsed();
    alpha
        .wait_for("sent test message to beta/recorder.in", WAIT)
        .unwrap();
    println!(
        "restart -> reconnected (attempt {attempt}): {} ms; restart -> first message delivered: {} ms",
        ms(to_reconnect),
        ms(to_delivery)
    );
}

#[test]
fn a_discovered_peer_is_redialed_past_the_loud_attempts_until_it_returns() {
    let (_discovery, url) = start_discovery("127.0.0.1:0");
    let dir = TempDir::new("never-give-up");
    let port = free_port();
    // Alpha never dials: whatever connects the two is beta's doing.
    let alpha_toml = config("alpha", port, STEADY, Some(&url), "auto_connect = false\n");
    let mut alpha = start_peer(&dir, "alpha", &alpha_toml, &[]);
    let endpoint = bridge_address(&alpha);
    let policy = "[reconnect]\ninitial_delay_ms = 50\nmultiplier = 2\nmax_attempts = 3\n";
    let beta = start_peer(&dir, "beta", &config("beta", 0, STEADY, Some(&url), policy), &[]);
    let found = format!("connected to alpha at {endpoint} (found through discovery)");
    beta.wait_for(&found, WAIT).unwrap();
    established(&beta, 0, "alpha");

    let beta_mark = beta.mark();
    alpha.kill();
    beta.wait_for_after(beta_mark, "Lost connection to network: alpha", WAIT)
        .unwrap();
    // The first three attempts are numbered; then redialing goes on, quieter.
    let still = format!("alpha (endpoint {endpoint}) still unreachable after 4 attempts");
    beta.wait_for_after(beta_mark, &still, WAIT).unwrap();
    for attempt in 1..=3 {
        let failed = format!("Reconnect attempt {attempt}/3 for alpha failed");
        assert_eq!(beta.lines_after(beta_mark, &failed).len(), 1, "{}", beta.output());
    }
    assert!(
        beta.lines_after(beta_mark, "Gave up").is_empty(),
        "{}",
        beta.output()
    );

    let beta_mark = beta.mark();
    let restarted_at = Instant::now();
    let alpha = start_peer(
        &dir,
        "alpha",
        &alpha_toml,
        &["--send", "beta:recorder:in:after-the-outage"],
    );
    beta.wait_for_after(
        beta_mark,
        &format!("Reconnected to alpha (endpoint {endpoint}) on attempt"),
        WAIT,
    )
    .unwrap();
    beta.wait_for("recorder.in: String(\"after-the-outage\")", WAIT)
        .unwrap();
    println!(
        "restart after a long outage -> first message delivered: {} ms (cap 3.2 s)",
        ms(restarted_at.elapsed())
    );
    established(&alpha, 0, "beta");
}

/// Network ids listed by the discovery server at `address`.
fn listed_networks(address: &str) -> Result<Vec<String>, String> {
    let (status, body) = http_get(address, "/networks", Duration::from_secs(2))?;
    if status != 200 {
        return Err(format!("GET /networks: {status} {body}"));
    }
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&body).map_err(|e| format!("GET /networks: {e}: {body}"))?;
    Ok(entries
        .iter()
        .filter_map(|e| e.get("network_id").and_then(|id| id.as_str()).map(str::to_string))
        .collect())
}

/// Waits until the server at `address` lists exactly alpha and beta.
fn wait_listed(address: &str) {
    wait_until(WAIT, Duration::from_millis(50), || {
        let listed = listed_networks(address)?;
        (listed == ["alpha", "beta"])
            .then_some(())
            .ok_or(format!("listed {listed:?}"))
    })
    .unwrap();
}

#[test]
fn discovery_outage_keeps_connections_and_registrations_resume_after_restart() {
    let address = format!("127.0.0.1:{}", free_port());
    let (mut discovery, url) = start_discovery(&address);
    let dir = TempDir::new("discovery-restart");
    let alpha = start_peer(&dir, "alpha", &config("alpha", 0, STEADY, Some(&url), ""), &[]);
    let endpoint = bridge_address(&alpha);
    let beta = start_peer(&dir, "beta", &config("beta", 0, STEADY, Some(&url), ""), &[]);
    established(&alpha, 0, "beta");
    established(&beta, 0, "alpha");
    wait_listed(&address);

    let (alpha_mark, beta_mark) = (alpha.mark(), beta.mark());
    discovery.kill();
    alpha
        .wait_for_after(alpha_mark, "registration failed", WAIT)
        .unwrap();
    beta.wait_for_after(beta_mark, "registration failed", WAIT)
        .unwrap();
    // Alpha still serves; a newcomer reaches it by its endpoint.
    one_shot_send(&dir, "gamma", &alpha, &endpoint, "during-outage");

    let restarted_at = Instant::now();
    let (_discovery, _) = start_discovery(&address);
    wait_listed(&address);
    let to_listed = restarted_at.elapsed();
    // The peers register on their next refresh (200 ms).
    assert!(
        to_listed <= 3 * Duration::from_millis(200) + MARGIN,
        "alpha and beta listed only {} ms after the restart",
        ms(to_listed)
    );
    println!(
        "discovery restart -> alpha and beta listed again: {} ms (refresh 200 ms)",
        ms(to_listed)
    );
    alpha
        .wait_for_after(alpha_mark, "Registered with discovery endpoint", WAIT)
        .unwrap();
    beta.wait_for_after(beta_mark, "Registered with discovery endpoint", WAIT)
        .unwrap();

    // Through the outage and the restart, the link between alpha and beta held.
    assert_link_held(&alpha, alpha_mark, &beta, beta_mark, Duration::from_millis(500));
}

#[test]
fn peer_at_max_connections_refuses_the_next_dialer_and_keeps_the_first() {
    let interval = Duration::from_millis(500);
    let dir = TempDir::new("max-connections");
    let alpha_toml = config("alpha", 0, interval, None, "max_connections = 1\n");
    let alpha = start_peer(&dir, "alpha", &alpha_toml, &[]);
    let endpoint = bridge_address(&alpha);
    let beta = start_peer(
        &dir,
        "beta",
        &config("beta", 0, interval, None, &connect_to(&endpoint)),
        &["--send", "alpha:recorder:in:from-beta"],
    );
    alpha
        .wait_for("recorder.in: String(\"from-beta\")", WAIT)
        .unwrap();
    let (alpha_mark, beta_mark) = (alpha.mark(), beta.mark());

    let mut gamma = start_peer(
        &dir,
        "gamma",
        &config("gamma", 0, interval, None, &connect_to(&endpoint)),
        &["--send", "alpha:recorder:in:from-gamma", "--once"],
    );
    let status = gamma.wait_exit(WAIT).unwrap();
    assert_eq!(status.code(), Some(1), "{}", gamma.output());
    let refused =
        format!("could not connect to peer at {endpoint}: handshake refused: max_connections reached");
    gamma.wait_for(&refused, WAIT).unwrap();
    let refused = alpha
        .wait_for_after(alpha_mark, "Refused handshake from network gamma (", WAIT)
        .unwrap();
    assert!(refused.ends_with("): max_connections reached"), "{refused}");
    assert_eq!(alpha.count("from-gamma"), 0, "{}", alpha.output());

    // The first connection is untouched: heartbeats keep it alive both ways
    // for longer than the eviction window.
    assert_link_held(&beta, beta_mark, &alpha, alpha_mark, 4 * interval);

    // Once beta leaves, its slot is free for the next dialer.
    beta.signal("TERM");
    alpha
        .wait_for_after(alpha_mark, "Lost connection to network: beta", WAIT)
        .unwrap();
    one_shot_send(&dir, "delta", &alpha, &endpoint, "after-beta-left");
}
