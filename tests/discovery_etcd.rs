//! Discovery through a real etcd: `reflow-peer` processes (and
//! `DiscoveryService` where only discovery is under test) given
//! `etcd://` endpoints, against etcd started on ephemeral ports. Peers
//! find each other and exchange messages, a three-member cluster loses its
//! leader or a follower, a killed peer's entry expires with its lease, a
//! clean stop revokes it at once, etcd auth is used (and never logged), a
//! peer whose etcd is gone keeps its links, a wildcard endpoint is written
//! as an address others can dial, an impostor entry is refused at the
//! handshake, and prefixes keep deployments apart.
//!
//! Where etcd is not installed every test says so and passes, unless
//! `REFLOW_ETCD_REQUIRED` is set.

mod common;
mod etcd_support;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::harness::{self, Echo, Proc, TempDir};
use etcd_support::Etcd;
use reflow_distributed::discovery::{DiscoveryClientConfig, DiscoveryService, RegistrationInfo};
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::runtime::Recorder;
use reflow_distributed::{DistributedConfig, Message};

/// Deadline for what should happen soon on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);
/// Slack on top of a computed bound, for a loaded machine.
const MARGIN: Duration = Duration::from_secs(3);
/// The default key prefix.
const PREFIX: &str = "/reflow/networks/";

fn peer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-peer"))
}

/// A peer config: bridge on a free loopback port, a steady 1 s heartbeat (a
/// stall of a loaded machine must not look like a dead link), discovery
/// through `endpoints` (a TOML array) every `refresh_ms`; `extra` goes
/// after the top-level keys (more keys, then tables).
fn config(network: &str, endpoints: &str, refresh_ms: u64, extra: &str) -> String {
    format!(
        "network_id = \"{network}\"\ninstance_id = \"{network}-1\"\nbind_address = \"127.0.0.1\"\n\
         heartbeat_interval_ms = 1000\ndiscovery_endpoints = {endpoints}\n\
         discovery_refresh_ms = {refresh_ms}\n{extra}\n"
    )
}

fn start_peer(dir: &TempDir, name: &str, toml: &str, args: &[&str]) -> Proc {
    harness::start_peer(peer_bin(), dir, name, toml, args)
}

/// Waits for `peer` to log that `other` joined its roster (after `mark`).
fn sees(peer: &Proc, mark: usize, other: &str) -> String {
    peer.wait_for_after(mark, &format!("discovery roster: added {other} "), WAIT)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn removed(other: &str) -> String {
    format!("discovery roster: removed {other}")
}

/// Fails if `peer` logged, after `mark`, that anything left its roster or
/// that a link went away.
fn assert_nothing_lost(peer: &Proc, mark: usize) {
    let needles = [
        "discovery roster: removed",
        "Lost connection to network",
        "Evicted connection to network",
    ];
    peer.expect_none_after(mark, &needles, Duration::ZERO)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The log lines (info and above) of what runs inside this test process,
/// for a peer that is not a child process.
struct Captured(Mutex<Vec<String>>);

static CAPTURED: Captured = Captured(Mutex::new(Vec::new()));

impl log::Log for Captured {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    }

    fn flush(&self) {}
}

/// The lines logged in this process since the first call.
fn captured_logs() -> MutexGuard<'static, Vec<String>> {
    if log::set_logger(&CAPTURED).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    CAPTURED.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// The captured lines that hold `needle`.
fn captured(needle: &str) -> Vec<String> {
    captured_logs()
        .iter()
        .filter(|line| line.contains(needle))
        .cloned()
        .collect()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Waits until etcd holds `key` (through its gateway) and returns its value
/// and lease.
fn wait_key(etcd: &Etcd, key: &str) -> (String, i64) {
    harness::wait_until(WAIT, Duration::from_millis(50), || {
        etcd.get(key).ok_or(format!("no key {key}"))
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn two_peers_find_each_other_through_etcd_and_exchange_a_message() {
    let Some(etcd) = Etcd::single("two_peers_find_each_other_through_etcd") else {
        return;
    };
    let dir = TempDir::new("etcd-pair");
    let endpoints = etcd.endpoints_toml("");
    let alpha = start_peer(&dir, "alpha", &config("alpha", &endpoints, 300, ""), &[]);
    let alpha_endpoint = harness::bridge_address(&alpha, WAIT);
    let beta = start_peer(
        &dir,
        "beta",
        &config("beta", &endpoints, 300, ""),
        &["--send", "alpha:recorder:in:found-through-etcd"],
    );
    alpha
        .wait_for("recorder.in: String(\"found-through-etcd\")", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    sees(&beta, 0, "alpha");
    sees(&alpha, 0, "beta");

    // The key is PREFIX + network_id and holds the registration, as a
    // discovery server's roster lists it, on a lease of the entry TTL (60 s).
    let (value, lease) = wait_key(&etcd, &format!("{PREFIX}alpha"));
    let entry: serde_json::Value =
        serde_json::from_str(&value).unwrap_or_else(|e| panic!("not JSON ({e}): {value}"));
    assert_eq!(entry["network_id"], "alpha", "{entry}");
    assert_eq!(entry["instance_id"], "alpha-1", "{entry}");
    assert_eq!(entry["endpoint"], alpha_endpoint.as_str(), "{entry}");
    assert_eq!(
        entry["capabilities"],
        serde_json::json!(["actor_messaging"]),
        "{entry}"
    );
    let last_seen = entry["last_seen"].as_str().unwrap_or_default();
    assert!(
        last_seen.len() == "2026-04-28T22:48:32.123Z".len() && last_seen.ends_with('Z'),
        "last_seen is not RFC 3339 UTC with milliseconds: {entry}"
    );
    assert_ne!(lease, 0, "the entry must be attached to a lease");
    assert_eq!(etcd.lease_granted_ttl(lease), Some(60), "the default entry TTL");
    assert_eq!(
        etcd.keys(PREFIX),
        [format!("{PREFIX}alpha"), format!("{PREFIX}beta")]
    );
}

/// Alpha (in this process) listens on every interface and advertises the
/// wildcard; etcd sees no source address to put in its place, so alpha
/// writes the address its host uses toward the member, which beta (a
/// `reflow-peer`) dials to reach it. An entry put by hand with the wildcard
/// is still left out.
#[test]
fn a_peer_advertising_the_wildcard_is_listed_at_its_address_toward_etcd_and_reached() {
    let Some(etcd) = Etcd::single("a_peer_advertising_the_wildcard") else {
        return;
    };
    // Alpha's lines are captured from here on.
    drop(captured_logs());
    let mut settings = DistributedConfig::new("alpha");
    settings.advertise_address = Some("0.0.0.0".into());
    settings.bridge.bind_address = "0.0.0.0".into();
    settings.bridge.bind_port = 0;
    settings.bridge.heartbeat_interval = Duration::from_secs(1);
    settings.discovery.endpoints = etcd.endpoints("");
    settings.discovery.refresh_interval = Duration::from_millis(200);
    let alpha = DistributedNetwork::new(settings).expect("alpha's config");
    let recorder = Recorder::new(Recorder::DEFAULT_HISTORY);
    let received = recorder.log();
    alpha
        .register_local_actor("recorder", Box::new(recorder), serde_json::json!({}))
        .expect("recorder");
    alpha.start().expect("alpha starts");
    let port = alpha.local_addr().expect("bound").port();
    let wildcard = format!("0.0.0.0:{port}");
    assert_eq!(alpha.advertised_endpoint(), Some(wildcard.as_str()));

    // etcd is on loopback: the route to it leaves from 127.0.0.1.
    let toward_etcd = format!("127.0.0.1:{port}");
    let (value, _) = wait_key(&etcd, &format!("{PREFIX}alpha"));
    let entry: serde_json::Value = serde_json::from_str(&value).expect("JSON");
    assert_eq!(entry["endpoint"], toward_etcd.as_str(), "{entry}");
    let said = format!("the wildcard endpoint {wildcard} is written as {toward_etcd}");
    let lines = captured(&said);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("INFO") && lines[0].contains("toward etcd member"),
        "{}",
        lines[0]
    );
    println!("wildcard: {}", lines[0]);

    let raw = serde_json::json!({
        "network_id": "raw",
        "instance_id": "raw-1",
        "endpoint": "0.0.0.0:7123",
        "capabilities": ["actor_messaging"],
        "last_seen": "2026-01-01T00:00:00.000Z",
    });
    etcd.put(&format!("{PREFIX}raw"), &raw.to_string());
    let dir = TempDir::new("etcd-wildcard");
    let beta = start_peer(
        &dir,
        "beta",
        &config("beta", &etcd.endpoints_toml(""), 200, ""),
        &["--send", "alpha:recorder:in:through-the-wildcard"],
    );
    let line = sees(&beta, 0, "alpha");
    assert!(line.contains(&format!("at {toward_etcd})")), "{line}");
    let arrived = received.wait_until(WAIT, |records| {
        records
            .iter()
            .any(|r| r.port == "in" && r.message == Message::string("through-the-wildcard"))
    });
    assert!(arrived, "alpha's recorder got {:?}", received.records());
    let line = beta
        .wait_for("roster entries that break the registration rules", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        line.contains("WARN") && line.contains("0.0.0.0:7123") && line.contains("is the wildcard address"),
        "{line}"
    );
    assert_eq!(beta.count("discovery roster: added raw"), 0, "{}", beta.output());
    // Refreshes do not write the entry again, nor say it again.
    beta.wait_for_count("roster entries that break the registration rules", 3, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(captured(&said).len(), 1);
    assert_eq!(etcd.version(&format!("{PREFIX}alpha")), Some(1));
    alpha.shutdown();
    assert_eq!(
        etcd.keys(PREFIX),
        [format!("{PREFIX}beta"), format!("{PREFIX}raw")]
    );
}

/// An entry put straight into etcd claims network alpha but points at
/// mallory's bridge, and mallory knows the token. Beta holds a link to
/// every network listed, so it dials mallory expecting alpha: the
/// handshake's identity check refuses her and beta sends her nothing. Once
/// the real alpha writes its entry over the impostor's, beta links to alpha
/// and its message arrives there.
#[test]
fn an_impostor_entry_in_etcd_is_refused_at_the_handshake_and_the_real_alpha_is_reached() {
    let Some(etcd) = Etcd::single("an_impostor_entry_in_etcd") else {
        return;
    };
    let dir = TempDir::new("etcd-impostor");
    let token = "auth_token = \"impostor-test-5d1e07c3\"\n";
    let endpoints = etcd.endpoints_toml("");
    // Mallory only listens: no discovery, nobody to dial.
    let mallory = start_peer(
        &dir,
        "mallory",
        &format!(
            "network_id = \"mallory\"\nbind_address = \"127.0.0.1\"\n\
             heartbeat_interval_ms = 1000\n{token}"
        ),
        &[],
    );
    let mallory_at = harness::bridge_address(&mallory, WAIT);
    mallory
        .wait_for("peer ready", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let impostor = serde_json::json!({
        "network_id": "alpha",
        "instance_id": "alpha-1",
        "endpoint": mallory_at,
        "capabilities": ["actor_messaging"],
        "last_seen": "2026-01-01T00:00:00.000Z",
    });
    etcd.put(&format!("{PREFIX}alpha"), &impostor.to_string());

    let payload = "meant-for-alpha-through-etcd";
    let beta = start_peer(
        &dir,
        "beta",
        &config("beta", &endpoints, 200, token),
        &["--send", &format!("alpha:recorder:in:{payload}")],
    );
    let line = sees(&beta, 0, "alpha");
    assert!(line.contains(&format!("at {mallory_at})")), "{line}");
    let line = beta
        .wait_for("expected network alpha", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        line.contains("handshake refused by this dialer")
            && line.contains("the endpoint answered as mallory"),
        "{line}"
    );
    println!("impostor: {line}");

    let alpha = start_peer(&dir, "alpha", &config("alpha", &endpoints, 200, token), &[]);
    let alpha_at = harness::bridge_address(&alpha, WAIT);
    let line = beta
        .wait_for("discovery roster: updated alpha", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(line.contains(&format!("at {alpha_at})")), "{line}");
    alpha
        .wait_for(&format!("recorder.in: String(\"{payload}\")"), WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let (value, lease) = wait_key(&etcd, &format!("{PREFIX}alpha"));
    assert!(value.contains(&alpha_at) && lease != 0, "{value}");
    // Mallory was dialed (beta left in the handshake) and got nothing.
    mallory
        .wait_for("Refused handshake from network beta", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mallory.count(payload), 0, "{}", mallory.output());
    assert_eq!(mallory.count("Established connection"), 0, "{}", mallory.output());
    assert_eq!(
        beta.count("Established connection with network: mallory"),
        0,
        "{}",
        beta.output()
    );
}

/// A newcomer started as a member dies must be seen this soon after the
/// kill: an election (about 0.7 s with these members' timeouts), the
/// newcomer's start, a write cut short after 1 s if it went to a follower
/// still forwarding to the dead leader, and a refresh, on a loaded machine.
/// Without the short first try it was 5.2-5.4 s (one request timeout).
const SEEN_AFTER_MEMBER_LOSS: Duration = Duration::from_secs(3);

/// Which member of three dies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lost {
    Leader,
    Follower,
}

/// Kills one member of a three-member cluster, the one every peer lists
/// first, then starts a newcomer at once: it must be seen by the two peers
/// already there within [`SEEN_AFTER_MEMBER_LOSS`], see them, be reached,
/// and nothing may leave a roster or lose a link.
fn newcomer_seen_after_losing(test: &str, lost: Lost) {
    let Some(mut etcd) = Etcd::cluster(test) else {
        return;
    };
    let dir = TempDir::new("etcd-cluster");
    let leader = etcd.leader();
    let killed = match lost {
        Lost::Leader => leader,
        // Another member than the leader, so that the others keep it.
        Lost::Follower => (leader + 1) % 3,
    };
    let mut members = etcd.endpoints("");
    members.swap(0, killed);
    let endpoints = format!("[\"{}\"]", members.join("\", \""));
    let alpha = start_peer(&dir, "alpha", &config("alpha", &endpoints, 200, ""), &[]);
    let beta = start_peer(&dir, "beta", &config("beta", &endpoints, 200, ""), &[]);
    sees(&alpha, 0, "beta");
    sees(&beta, 0, "alpha");

    let (alpha_mark, beta_mark) = (alpha.mark(), beta.mark());
    let killed_at = Instant::now();
    etcd.kill(killed);
    // A newcomer after the loss is seen by both, and sees both.
    let gamma = start_peer(
        &dir,
        "gamma",
        &config("gamma", &endpoints, 200, ""),
        &["--send", "alpha:recorder:in:after-the-member-died"],
    );
    sees(&alpha, alpha_mark, "gamma");
    sees(&beta, beta_mark, "gamma");
    let to_seen = killed_at.elapsed();
    let what = match lost {
        Lost::Leader => "leader",
        Lost::Follower => "follower",
    };
    println!(
        "{what} (listed first) killed -> gamma (started after) seen by alpha and beta: {} ms",
        ms(to_seen)
    );
    sees(&gamma, 0, "alpha");
    sees(&gamma, 0, "beta");
    alpha
        .wait_for("recorder.in: String(\"after-the-member-died\")", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    // A write that a follower forwarded to the leader as it died is never
    // answered; gamma's registration moves on to the next member after 1 s
    // instead of after its 5 s request timeout.
    assert!(
        to_seen <= SEEN_AFTER_MEMBER_LOSS,
        "gamma seen {} ms after the {what} died; bound {} ms",
        ms(to_seen),
        ms(SEEN_AFTER_MEMBER_LOSS)
    );
    // Gamma's requests start at the dead member and go on to the next one
    // within the same request, which says so once.
    let failover = format!("etcd member {} failed", etcd.client_url(killed));
    let line = gamma.wait_for(&failover, WAIT).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        line.contains("WARN") && line.contains("carrying on with member"),
        "{line}"
    );
    println!("{what} lost: gamma: {line}");
    // Nothing left anybody's roster, now and for a few more refreshes.
    let window = Duration::from_secs(1);
    alpha
        .expect_none_after(alpha_mark, &["discovery roster: removed"], window)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_nothing_lost(&alpha, alpha_mark);
    assert_nothing_lost(&beta, beta_mark);
    assert_nothing_lost(&gamma, 0);
    assert_eq!(
        etcd.keys(PREFIX),
        [
            format!("{PREFIX}alpha"),
            format!("{PREFIX}beta"),
            format!("{PREFIX}gamma")
        ]
    );
}

#[test]
fn a_three_member_cluster_keeps_discovery_working_when_its_leader_listed_first_dies() {
    newcomer_seen_after_losing("a_three_member_cluster_loses_its_leader", Lost::Leader);
}

#[test]
fn a_three_member_cluster_keeps_discovery_working_when_a_follower_listed_first_dies() {
    newcomer_seen_after_losing("a_three_member_cluster_loses_a_follower", Lost::Follower);
}

#[test]
fn a_killed_peers_entry_expires_with_its_lease() {
    let Some(etcd) = Etcd::single("a_killed_peers_entry_expires_with_its_lease") else {
        return;
    };
    let dir = TempDir::new("etcd-expiry");
    let ttl = Duration::from_millis(3000);
    let refresh = Duration::from_millis(300);
    let extra = format!("discovery_entry_ttl_ms = {}\n", ms(ttl));
    let endpoints = etcd.endpoints_toml("");
    let mut alpha = start_peer(
        &dir,
        "alpha",
        &config("alpha", &endpoints, ms(refresh) as u64, &extra),
        &[],
    );
    let beta = start_peer(
        &dir,
        "beta",
        &config("beta", &endpoints, ms(refresh) as u64, &extra),
        &[],
    );
    sees(&beta, 0, "alpha");
    let key = format!("{PREFIX}alpha");
    let (_, lease) = wait_key(&etcd, &key);
    assert_eq!(
        etcd.lease_granted_ttl(lease),
        Some(3),
        "the lease has the entry TTL"
    );
    // Kept alive: the entry outlives its TTL while alpha runs.
    let started = Instant::now();
    while started.elapsed() < ttl + refresh {
        assert!(etcd.get(&key).is_some(), "alpha's entry lapsed while alpha ran");
        std::thread::sleep(Duration::from_millis(200));
    }

    let mark = beta.mark();
    let killed_at = Instant::now();
    alpha.kill();
    // Nobody revoked the lease: the entry is still there.
    assert!(etcd.get(&key).is_some(), "alpha's entry vanished at the SIGKILL");
    let line = beta
        .wait_for_after(mark, &removed("alpha"), ttl + refresh + MARGIN + WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let to_removed = killed_at.elapsed();
    assert!(line.contains("INFO"), "{line}");
    assert_eq!(etcd.get(&key), None, "the entry is gone from etcd");
    // Alpha's last keep-alive was at most one refresh before the kill, and
    // the lease runs a whole TTL from there: no removal before that.
    let earliest = ttl - refresh - Duration::from_millis(100);
    assert!(
        to_removed >= earliest,
        "beta saw alpha removed {} ms after the SIGKILL, before its lease could lapse ({} ms)",
        ms(to_removed),
        ms(earliest)
    );
    // etcd revokes expired leases every 500 ms; beta reads every refresh.
    let latest = ttl + Duration::from_millis(500) + refresh + MARGIN;
    assert!(
        to_removed <= latest,
        "beta saw alpha removed only {} ms after the SIGKILL (TTL {} ms, bound {} ms)",
        ms(to_removed),
        ms(ttl),
        ms(latest)
    );
    println!(
        "SIGKILL -> removed by the lease's expiry: {} ms (TTL {} ms, refresh {} ms)",
        ms(to_removed),
        ms(ttl),
        ms(refresh)
    );
}

#[test]
fn a_clean_stop_revokes_the_lease_and_peers_see_it_leave_at_once() {
    let Some(etcd) = Etcd::single("a_clean_stop_revokes_the_lease") else {
        return;
    };
    let dir = TempDir::new("etcd-clean-stop");
    let refresh = Duration::from_millis(300);
    // A TTL of a minute: anything sooner is the revocation.
    let extra = "discovery_entry_ttl_ms = 60000\n";
    let endpoints = etcd.endpoints_toml("");
    let mut alpha = start_peer(
        &dir,
        "alpha",
        &config("alpha", &endpoints, ms(refresh) as u64, extra),
        &[],
    );
    let beta = start_peer(
        &dir,
        "beta",
        &config("beta", &endpoints, ms(refresh) as u64, extra),
        &[],
    );
    sees(&beta, 0, "alpha");
    let key = format!("{PREFIX}alpha");
    let (_, lease) = wait_key(&etcd, &key);
    assert_eq!(etcd.lease_granted_ttl(lease), Some(60));

    let mark = beta.mark();
    let stopped_at = Instant::now();
    alpha.signal("TERM");
    let status = alpha.wait_exit(WAIT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(0), "{}", alpha.output());
    assert_eq!(etcd.get(&key), None, "alpha's entry outlived its clean exit");
    assert_eq!(
        etcd.lease_granted_ttl(lease),
        None,
        "alpha's lease outlived its clean exit"
    );
    let line = beta
        .wait_for_after(mark, &removed("alpha"), WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let to_removed = stopped_at.elapsed();
    assert!(line.contains("INFO"), "{line}");
    let latest = 3 * refresh + MARGIN;
    assert!(
        to_removed <= latest,
        "beta saw alpha leave {} ms after SIGTERM; a revoked lease should show within {} ms",
        ms(to_removed),
        ms(latest)
    );
    println!(
        "SIGTERM -> removed (lease revoked): {} ms (TTL 60000 ms, refresh {} ms)",
        ms(to_removed),
        ms(refresh)
    );
}

#[test]
fn etcd_auth_registers_with_the_right_password_and_names_etcds_refusal_of_a_wrong_one() {
    let Some(mut etcd) = Etcd::single("etcd_auth") else {
        return;
    };
    let root_password = "root-pw-7f3a9c";
    let password = "reflow-pw-2b8e41";
    let wrong = "wrong-pw-d05c77";
    etcd.enable_auth(root_password, "reflow", password, PREFIX);
    let dir = TempDir::new("etcd-auth");
    let good_file = dir.write("good.pw", &format!("{password}\n"));
    let wrong_file = dir.write("wrong.pw", wrong);
    let endpoints = etcd.endpoints_toml("");
    let table = |file: &Path| {
        format!(
            "[etcd]\nuser = \"reflow\"\npassword_file = \"{}\"\n",
            file.display()
        )
    };
    let alpha = start_peer(
        &dir,
        "alpha",
        &config("alpha", &endpoints, 300, &table(&good_file)),
        &[],
    );
    let beta = start_peer(
        &dir,
        "beta",
        &config("beta", &endpoints, 300, &table(&wrong_file)),
        &[],
    );
    // The password from the environment instead of a file.
    let gamma_config = dir.write(
        "gamma.toml",
        &config("gamma", &endpoints, 300, "[etcd]\nuser = \"reflow\"\n"),
    );
    let gamma_config = gamma_config.to_string_lossy().to_string();
    let gamma = Proc::spawn(
        "gamma",
        peer_bin(),
        &["--config", &gamma_config],
        &[("REFLOW_ETCD_PASSWORD", password)],
        Echo::Quiet,
    );

    wait_key(&etcd, &format!("{PREFIX}alpha"));
    wait_key(&etcd, &format!("{PREFIX}gamma"));
    sees(&alpha, 0, "gamma");
    sees(&gamma, 0, "alpha");
    let line = beta
        .wait_for("etcdserver: authentication failed", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let member = format!("etcd member {}", etcd.client_url(0));
    assert!(line.contains("WARN") && line.contains(&member), "{line}");
    println!("a wrong password: {line}");
    assert_eq!(
        etcd.keys(PREFIX),
        [format!("{PREFIX}alpha"), format!("{PREFIX}gamma")],
        "beta, with the wrong password, is not registered"
    );
    for peer in [&alpha, &beta, &gamma] {
        let output = peer.output();
        for secret in [root_password, password, wrong] {
            assert!(
                !output.contains(secret),
                "{} logged a password:\n{output}",
                peer.name
            );
        }
    }
}

#[test]
fn a_peer_whose_etcd_is_gone_keeps_its_links_and_warns() {
    let Some(mut etcd) = Etcd::single("a_peer_whose_etcd_is_gone_keeps_its_links") else {
        return;
    };
    let dir = TempDir::new("etcd-outage");
    let endpoints = etcd.endpoints_toml("");
    let alpha = start_peer(&dir, "alpha", &config("alpha", &endpoints, 200, ""), &[]);
    // Beta keeps sending to alpha, five messages a second, for a minute.
    let lines: String = (0..300)
        .map(|i| format!("alpha:recorder:in:tick-{i}\n"))
        .collect();
    let ticks = dir.write("ticks.txt", &lines);
    let ticks = ticks.to_string_lossy().to_string();
    let beta = start_peer(
        &dir,
        "beta",
        &config("beta", &endpoints, 200, ""),
        &["--send-file", &ticks, "--send-rate", "5"],
    );
    alpha
        .wait_for("recorder.in: String(\"tick-", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    sees(&alpha, 0, "beta");
    sees(&beta, 0, "alpha");

    let (alpha_mark, beta_mark) = (alpha.mark(), beta.mark());
    etcd.kill_all();
    let member = format!("etcd member {}", etcd.client_url(0));
    for (peer, mark) in [(&alpha, alpha_mark), (&beta, beta_mark)] {
        let line = peer
            .wait_for_after(mark, &member, WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(line.contains("WARN"), "{line}");
        println!("etcd gone: {}: {line}", peer.name);
    }
    // Once per outage, each says what it keeps.
    for (peer, mark) in [(&alpha, alpha_mark), (&beta, beta_mark)] {
        let line = peer
            .wait_for_after(
                mark,
                "no discovery endpoint answered; keeping the 1 known networks",
                WAIT,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(line.contains("WARN"), "{line}");
    }
    // Messages still flow over the link discovery made.
    let after = alpha.mark();
    alpha
        .wait_for_after(after, "recorder.in: String(\"tick-", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    // And for a few more refreshes nothing is forgotten.
    alpha
        .expect_none_after(alpha_mark, &["discovery roster: removed"], Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("{e}"));

    // etcd comes back with its data: both carry on with their leases.
    etcd.restart(0, false);
    for (peer, mark) in [(&alpha, alpha_mark), (&beta, beta_mark)] {
        peer.wait_for_after(mark, "discovery answers again", WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        etcd.keys(PREFIX),
        [format!("{PREFIX}alpha"), format!("{PREFIX}beta")]
    );
    assert_nothing_lost(&alpha, alpha_mark);
    assert_nothing_lost(&beta, beta_mark);
}

#[test]
fn peers_register_anew_when_etcd_comes_back_without_its_data() {
    let Some(mut etcd) = Etcd::single("peers_register_anew_when_etcd_comes_back_without_its_data") else {
        return;
    };
    let dir = TempDir::new("etcd-data-lost");
    let endpoints = etcd.endpoints_toml("");
    let alpha = start_peer(&dir, "alpha", &config("alpha", &endpoints, 200, ""), &[]);
    let beta = start_peer(&dir, "beta", &config("beta", &endpoints, 200, ""), &[]);
    sees(&alpha, 0, "beta");
    sees(&beta, 0, "alpha");
    let (_, old_lease) = wait_key(&etcd, &format!("{PREFIX}alpha"));

    let (alpha_mark, beta_mark) = (alpha.mark(), beta.mark());
    etcd.restart(0, true);
    // The new etcd knows neither entry nor lease: each peer takes a new
    // lease and writes its entry again.
    for (peer, mark) in [(&alpha, alpha_mark), (&beta, beta_mark)] {
        let line = peer
            .wait_for_after(mark, "of this peer lapsed; registering anew", WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(line.contains("INFO"), "{line}");
    }
    let (_, lease) = wait_key(&etcd, &format!("{PREFIX}alpha"));
    wait_key(&etcd, &format!("{PREFIX}beta"));
    assert_ne!(lease, old_lease);
    assert_eq!(etcd.lease_granted_ttl(lease), Some(60));
    // A newcomer is seen by both.
    let _gamma = start_peer(&dir, "gamma", &config("gamma", &endpoints, 200, ""), &[]);
    sees(&alpha, alpha_mark, "gamma");
    sees(&beta, beta_mark, "gamma");
}

/// A discovery client of `network` (bridge endpoint 127.0.0.1:`port`) on
/// the etcd `endpoints`, refreshing every 100 ms.
fn service(endpoints: Vec<String>, network: &str, port: u16) -> DiscoveryService {
    let mut config = DiscoveryClientConfig::default();
    config.endpoints = endpoints;
    config.refresh_interval = Duration::from_millis(100);
    let me = RegistrationInfo {
        network_id: network.into(),
        instance_id: format!("{network}-1"),
        endpoint: format!("127.0.0.1:{port}"),
        capabilities: vec!["actor_messaging".into()],
    };
    DiscoveryService::start(config, me).unwrap_or_else(|e| panic!("start {network}: {e}"))
}

/// `network` -> `endpoint` of every network `service` knows, sorted.
fn known(service: &DiscoveryService) -> Vec<(String, String)> {
    let mut known: Vec<(String, String)> = service
        .known_networks()
        .into_iter()
        .map(|n| (n.network_id, n.endpoint))
        .collect();
    known.sort();
    known
}

#[test]
fn a_custom_prefix_keeps_two_deployments_apart_in_one_etcd() {
    let Some(etcd) = Etcd::single("a_custom_prefix_keeps_two_deployments_apart") else {
        return;
    };
    let other = "/other/prefix/";
    // Both deployments have an alpha; each sees only its own.
    let one_alpha = service(etcd.endpoints(""), "alpha", 9101);
    let one_beta = service(etcd.endpoints(""), "beta", 9102);
    let two_alpha = service(etcd.endpoints(other), "alpha", 9201);
    let two_gamma = service(etcd.endpoints(other), "gamma", 9203);
    for key in ["alpha", "beta"].map(|n| format!("{PREFIX}{n}")) {
        wait_key(&etcd, &key);
    }
    for key in ["alpha", "gamma"].map(|n| format!("{other}{n}")) {
        wait_key(&etcd, &key);
    }
    let (value, _) = wait_key(&etcd, &format!("{other}alpha"));
    assert!(value.contains("127.0.0.1:9201"), "{value}");

    // Every entry is in etcd now. A probe put in each prefix afterwards
    // marks a roster read that came later: one that would also have
    // returned the other deployment's entries if the prefixes leaked.
    let probe = |prefix: &str, port: u16| {
        let entry = serde_json::json!({
            "network_id": "probe",
            "instance_id": "probe-1",
            "endpoint": format!("127.0.0.1:{port}"),
            "capabilities": ["actor_messaging"],
            "last_seen": "2026-01-01T00:00:00.000Z",
        });
        etcd.put(&format!("{prefix}probe"), &entry.to_string());
    };
    probe(PREFIX, 9109);
    probe(other, 9209);
    let pair = |n: &str, p: u16| (n.to_string(), format!("127.0.0.1:{p}"));
    let expected = [
        (&one_alpha, vec![pair("beta", 9102), pair("probe", 9109)]),
        (&one_beta, vec![pair("alpha", 9101), pair("probe", 9109)]),
        (&two_alpha, vec![pair("gamma", 9203), pair("probe", 9209)]),
        (&two_gamma, vec![pair("alpha", 9201), pair("probe", 9209)]),
    ];
    for (service, want) in expected {
        let name = &service.registration().network_id;
        harness::wait_until(WAIT, Duration::from_millis(25), || {
            let now = known(service);
            if now.iter().any(|(n, _)| n == "probe") {
                Ok(now)
            } else {
                Err(format!("{name} has not read the probe: knows {now:?}"))
            }
        })
        .map(|now| assert_eq!(now, want, "what {name} knows"))
        .unwrap_or_else(|e| panic!("{e}"));
    }
    for service in [one_alpha, one_beta, two_alpha, two_gamma] {
        service.stop();
    }
    // Each stop revoked its own entry only; the probes stay.
    assert_eq!(etcd.keys(PREFIX), [format!("{PREFIX}probe")]);
    assert_eq!(etcd.keys(other), [format!("{other}probe")]);
}

#[test]
fn entries_in_etcd_that_break_the_rules_are_left_out_with_one_escaped_line() {
    let Some(etcd) = Etcd::single("entries_in_etcd_that_break_the_rules") else {
        return;
    };
    // Anyone who may write the prefix can put anything there. A forged log
    // line would start with this timestamp.
    let forged = "\n2026-01-01T00:00:00.000Z ERROR [forged] line";
    let entry = |network: &str, endpoint: &str, capability: &str| {
        serde_json::json!({
            "network_id": network,
            "instance_id": format!("{network}-1"),
            "endpoint": endpoint,
            "capabilities": [capability],
            "last_seen": "2026-01-01T00:00:00.000Z",
        })
        .to_string()
    };
    etcd.put(
        &format!("{PREFIX}good"),
        &entry("good", "127.0.0.1:9", "actor_messaging"),
    );
    etcd.put(&format!("{PREFIX}garbage"), &format!("not json{forged}"));
    let bad_id = format!("bad{forged}");
    etcd.put(
        &format!("{PREFIX}{bad_id}"),
        &entry(&bad_id, "127.0.0.1:9", "actor_messaging"),
    );
    etcd.put(
        &format!("{PREFIX}wild"),
        &entry("wild", "0.0.0.0:7123", "actor_messaging"),
    );
    etcd.put(
        &format!("{PREFIX}elsewhere"),
        &entry("other", "127.0.0.1:9", "actor_messaging"),
    );
    let huge = "x".repeat(512 * 1024);
    etcd.put(&format!("{PREFIX}huge"), &entry("huge", "127.0.0.1:9", &huge));

    let dir = TempDir::new("etcd-hostile");
    let alpha = start_peer(
        &dir,
        "alpha",
        &config("alpha", &etcd.endpoints_toml(""), 200, "auto_connect = false\n"),
        &[],
    );
    sees(&alpha, 0, "good");
    let line = alpha
        .wait_for("roster entries that break the registration rules", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(line.contains("WARN") && line.contains("left out 5 of "), "{line}");
    assert!(line.len() < 1024, "a long line: {} bytes", line.len());
    println!("hostile entries: {line}");
    // Let a few more rosters be read, then look at everything alpha said.
    let mark = alpha.mark();
    alpha
        .wait_for_count("roster entries that break the registration rules", 3, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let output = alpha.output();
    for line in output.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00.000Z"),
            "a forged log line: {line:?}"
        );
        assert!(line.len() < 4096, "a line of {} bytes", line.len());
    }
    let added: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("discovery roster: added"))
        .collect();
    assert_eq!(added.len(), 1, "only good may join: {added:#?}");
    alpha
        .expect_none_after(mark, &["discovery roster: removed good"], Duration::ZERO)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_restarted_peer_takes_its_entry_over_and_the_old_lease_lapsing_leaves_it() {
    let Some(etcd) = Etcd::single("a_restarted_peer_takes_its_entry_over") else {
        return;
    };
    let dir = TempDir::new("etcd-restart");
    let extra = "discovery_entry_ttl_ms = 3000\n";
    let endpoints = etcd.endpoints_toml("");
    let alpha_config = |instance: &str| {
        config("alpha", &endpoints, 200, extra).replace(
            "instance_id = \"alpha-1\"",
            &format!("instance_id = \"{instance}\""),
        )
    };
    let mut first = start_peer(&dir, "alpha-1", &alpha_config("alpha-1"), &[]);
    let beta = start_peer(&dir, "beta", &config("beta", &endpoints, 200, extra), &[]);
    sees(&beta, 0, "alpha");
    let key = format!("{PREFIX}alpha");
    let (_, old_lease) = wait_key(&etcd, &key);

    // Killed and restarted at once under a new instance id: its old lease
    // still runs when the new instance writes the key.
    let mark = beta.mark();
    first.kill();
    let second = start_peer(&dir, "alpha-2", &alpha_config("alpha-2"), &[]);
    let endpoint = harness::bridge_address(&second, WAIT);
    let line = beta
        .wait_for_after(mark, "discovery roster: updated alpha", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(line.contains(&format!("alpha-2 at {endpoint}")), "{line}");
    // The old lease lapses; the key is the new instance's and stays.
    harness::wait_until(WAIT, Duration::from_millis(100), || {
        match etcd.lease_granted_ttl(old_lease) {
            None => Ok(()),
            Some(_) => Err(format!("lease {old_lease} of alpha-1 still runs")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let (value, lease) = etcd.get(&key).expect("alpha-2's entry outlives alpha-1's lease");
    assert!(value.contains("\"instance_id\":\"alpha-2\""), "{value}");
    assert_ne!(lease, old_lease);
    beta.expect_none_after(mark, &[&removed("alpha")], Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_entry_is_written_once_and_again_only_when_it_goes_missing() {
    let Some(etcd) = Etcd::single("the_entry_is_written_once") else {
        return;
    };
    let alpha = service(etcd.endpoints(""), "alpha", 9101);
    let key = format!("{PREFIX}alpha");
    let (_, lease) = wait_key(&etcd, &key);
    // Ticks go by (alpha reads beta, then a probe put after beta): the
    // keep-alive alone keeps the entry, which is not written again.
    let beta = service(etcd.endpoints(""), "beta", 9102);
    let knows = |network: &str| {
        harness::wait_until(WAIT, Duration::from_millis(25), || {
            let now = known(&alpha);
            if now.iter().any(|(n, _)| n == network) {
                Ok(())
            } else {
                Err(format!("alpha knows {now:?}, not {network}"))
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    };
    knows("beta");
    let probe = serde_json::json!({
        "network_id": "probe",
        "instance_id": "probe-1",
        "endpoint": "127.0.0.1:9109",
        "capabilities": ["actor_messaging"],
        "last_seen": "2026-01-01T00:00:00.000Z",
    });
    etcd.put(&format!("{PREFIX}probe"), &probe.to_string());
    knows("probe");
    assert_eq!(etcd.version(&key), Some(1), "alpha rewrote its entry on a tick");

    // Deleted by hand while the lease runs: the next roster shows it
    // missing, and alpha writes it again under the same lease.
    etcd.delete(&key);
    let (value, again) = wait_key(&etcd, &key);
    assert_eq!(again, lease, "a running lease is kept");
    assert!(value.contains("\"endpoint\":\"127.0.0.1:9101\""), "{value}");
    alpha.stop();
    beta.stop();
    assert_eq!(etcd.keys(PREFIX), [format!("{PREFIX}probe")]);
}
