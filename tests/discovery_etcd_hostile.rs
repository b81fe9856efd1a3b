//! The etcd backend against members that answer what no etcd would: bodies
//! that are not JSON, rosters larger than the client reads, entries under
//! the wrong key, ids that could forge a log line. A member of this kind is
//! a real HTTP server on a real socket that answers each gateway path with
//! a scripted body. Every case ends with the bad part left out and the
//! service still running; the real-etcd behaviour is in `discovery_etcd.rs`.
//! A member that never answers stands for a follower whose write was lost
//! with a dying leader.

mod discovery_support;

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reflow_distributed::discovery::{
    DiscoveryClientConfig, DiscoveryEvent, DiscoveryService, RegistrationInfo,
};

use discovery_support::PATIENCE;

/// What a scripted member answers on `/v3/kv/range`.
#[derive(Clone, Copy)]
enum Roster {
    /// A range holding good and bad entries (see `hostile_range`).
    Mixed,
    /// 200 with a body that is not JSON.
    NotJson,
    /// 200 with a body larger than the client reads (32 MiB of JSON).
    Huge,
}

/// A member that speaks the gateway's paths with scripted answers.
struct ScriptedMember {
    url: String,
    ranges: Arc<AtomicUsize>,
    revokes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

fn kv(key: &str, value: &str) -> String {
    format!(
        r#"{{"key":"{}","value":"{}"}}"#,
        BASE64.encode(key),
        BASE64.encode(value)
    )
}

fn entry(network: &str, endpoint: &str) -> String {
    serde_json::json!({
        "network_id": network,
        "instance_id": format!("{network}-1"),
        "endpoint": endpoint,
        "last_seen": "2026-01-01T00:00:00.000Z",
    })
    .to_string()
}

/// One good entry (`beta`) among entries that must each be left out.
fn hostile_range() -> String {
    let kvs = [
        kv("/reflow/networks/beta", &entry("beta", "127.0.0.1:9200")),
        // Under another network's key: an entry cannot claim a name.
        kv("/reflow/networks/gamma", &entry("beta", "10.6.6.6:9200")),
        // An id that would forge a log line.
        kv(
            "/reflow/networks/x\n2026-01-01T00:00:00Z INFO fake",
            &entry("x\n2026-01-01T00:00:00Z INFO fake", "127.0.0.1:9300"),
        ),
        // The wildcard address nobody can dial.
        kv("/reflow/networks/delta", &entry("delta", "0.0.0.0:9400")),
        // Not an entry at all.
        kv("/reflow/networks/epsilon", "[1,2,3]"),
        r#"{"key":"%%%","value":"%%%"}"#.to_string(),
    ];
    format!(r#"{{"header":{{}},"kvs":[{}],"count":"6"}}"#, kvs.join(","))
}

impl ScriptedMember {
    fn start(roster: Roster) -> ScriptedMember {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
        let url = format!("etcd://{}", server.server_addr().to_ip().expect("ip"));
        let stop = Arc::new(AtomicBool::new(false));
        let ranges = Arc::new(AtomicUsize::new(0));
        let revokes = Arc::new(AtomicUsize::new(0));
        let (flag, range_count, revoke_count) = (stop.clone(), ranges.clone(), revokes.clone());
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let body = match request.url() {
                    "/v3/lease/grant" => r#"{"ID":"42","TTL":"60"}"#.to_string(),
                    "/v3/lease/keepalive" => r#"{"result":{"ID":"42","TTL":"60"}}"#.to_string(),
                    "/v3/kv/put" => r#"{"header":{}}"#.to_string(),
                    "/v3/lease/revoke" => {
                        revoke_count.fetch_add(1, Ordering::SeqCst);
                        r#"{"header":{}}"#.to_string()
                    }
                    "/v3/kv/range" => {
                        range_count.fetch_add(1, Ordering::SeqCst);
                        match roster {
                            Roster::Mixed => hostile_range(),
                            Roster::NotJson => "<html>not etcd</html>".to_string(),
                            Roster::Huge => {
                                let one = kv("/reflow/networks/n", &"x".repeat(1000));
                                format!(r#"{{"kvs":[{}]}}"#, vec![one; 24_000].join(","))
                            }
                        }
                    }
                    _ => "{}".to_string(),
                };
                let _ = request.respond(tiny_http::Response::from_string(body));
            }
        });
        ScriptedMember {
            url,
            ranges,
            revokes,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until the member has answered `n` range requests.
    fn wait_for_ranges(&self, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.ranges.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "only {} range requests",
                self.ranges.load(Ordering::SeqCst)
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ScriptedMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(endpoint: &str) -> DiscoveryService {
    let mut config = DiscoveryClientConfig::default();
    config.endpoints = vec![endpoint.to_string()];
    config.refresh_interval = Duration::from_millis(100);
    config.entry_ttl = Duration::from_secs(5);
    let me = RegistrationInfo {
        network_id: "alpha".into(),
        instance_id: "alpha-1".into(),
        endpoint: "127.0.0.1:9100".into(),
        capabilities: vec![],
    };
    DiscoveryService::start(config, me).expect("start")
}

#[test]
fn only_the_well_formed_entry_of_a_hostile_range_is_listed() {
    let member = ScriptedMember::start(Roster::Mixed);
    let service = start(&member.url);
    let events = service.subscribe();
    service.refresh_now();
    let event = events.recv_timeout(PATIENCE).expect("an event");
    match event {
        DiscoveryEvent::Added(info) => {
            assert_eq!(
                (info.network_id.as_str(), info.endpoint.as_str()),
                ("beta", "127.0.0.1:9200")
            );
        }
        other => panic!("{other:?}"),
    }
    // Later ticks read the same range and change nothing.
    member.wait_for_ranges(member.ranges.load(Ordering::SeqCst) + 3);
    assert!(events.try_recv().is_err());
    let known: Vec<String> = service
        .known_networks()
        .into_iter()
        .map(|n| n.network_id)
        .collect();
    assert_eq!(known, ["beta"]);
    assert!(service.is_registered());
    // A clean stop revokes the lease.
    service.stop();
    assert_eq!(member.revokes.load(Ordering::SeqCst), 1);
}

#[test]
fn a_roster_that_is_not_json_or_too_large_is_refused_and_the_known_roster_stands() {
    for roster in [Roster::NotJson, Roster::Huge] {
        let member = ScriptedMember::start(roster);
        let service = start(&member.url);
        let events = service.subscribe();
        member.wait_for_ranges(3);
        assert!(events.try_recv().is_err());
        assert!(service.known_networks().is_empty());
        // Registration went through: only the roster is refused.
        assert!(service.is_registered());
        assert!(service.is_running());
        service.stop();
        assert!(!service.is_running());
    }
}

/// A member that accepts connections and reads nothing, answering nothing:
/// what a client sees of a follower whose write went to a leader that died.
struct SilentMember {
    url: String,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SilentMember {
    fn start() -> SilentMember {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("etcd://{}", listener.local_addr().expect("address"));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (connections.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        held.push(stream);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SilentMember {
            url,
            connections,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_write_a_member_never_answers_goes_to_the_next_member_after_a_second() {
    let silent = SilentMember::start();
    let good = ScriptedMember::start(Roster::Mixed);
    let mut config = DiscoveryClientConfig::default();
    config.endpoints = vec![silent.url.clone(), good.url.clone()];
    config.refresh_interval = Duration::from_millis(100);
    config.entry_ttl = Duration::from_secs(5);
    assert_eq!(config.request_timeout, Duration::from_secs(5));
    let me = RegistrationInfo {
        network_id: "alpha".into(),
        instance_id: "alpha-1".into(),
        endpoint: "127.0.0.1:9100".into(),
        capabilities: vec![],
    };
    let started = Instant::now();
    let service = DiscoveryService::start(config, me).expect("start");
    while !service.is_registered() {
        assert!(started.elapsed() < PATIENCE, "never registered");
        thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    println!(
        "a lease grant the first member never answers: registered through the second after {} ms",
        took.as_millis()
    );
    // The grant waited one second at the silent member, not the 5 s
    // request timeout.
    assert!(
        took >= Duration::from_millis(900),
        "registered after {took:?}: the silent member was not tried first"
    );
    assert!(
        took < Duration::from_millis(2500),
        "registered only after {took:?}"
    );
    assert_eq!(silent.connections.load(Ordering::SeqCst), 1);
    // Later ticks stay with the member that answered.
    good.wait_for_ranges(good.ranges.load(Ordering::SeqCst) + 3);
    assert_eq!(silent.connections.load(Ordering::SeqCst), 1);
    service.stop();
    assert_eq!(good.revokes.load(Ordering::SeqCst), 1);
}
