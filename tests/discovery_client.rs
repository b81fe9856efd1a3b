//! `DiscoveryService` against the real `reflow-discovery` binary: events for
//! joins, moves and departures, several endpoints of which some fail, and
//! prompt stopping.

mod discovery_support;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use reflow_distributed::DistributedConfig;
use reflow_distributed::discovery::{
    DiscoveryClientConfig, DiscoveryEvent, DiscoveryService, RegistrationInfo,
};
use reflow_distributed::distributed_network::DistributedNetwork;

use discovery_support::*;

fn config(endpoints: Vec<String>, refresh: Duration) -> DiscoveryClientConfig {
    let mut config = DiscoveryClientConfig::default();
    config.endpoints = endpoints;
    config.refresh_interval = refresh;
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(5);
    config
}

fn me(network: &str, port: u16) -> RegistrationInfo {
    RegistrationInfo {
        network_id: network.into(),
        instance_id: format!("{network}-1"),
        endpoint: format!("127.0.0.1:{port}"),
        capabilities: vec!["actor_messaging".into()],
    }
}

fn next_event(rx: &Receiver<DiscoveryEvent>) -> DiscoveryEvent {
    rx.recv_timeout(PATIENCE).expect("an event in time")
}

#[test]
fn a_peer_that_joins_moves_and_leaves_makes_added_updated_removed() {
    let server = ServerProcess::start(&["--entry-ttl-secs", "3", "--prune-interval-secs", "1"]);
    let alpha = DiscoveryService::start(
        config(vec![server.url()], Duration::from_millis(100)),
        me("alpha", 9100),
    )
    .expect("start alpha");
    let events = alpha.subscribe();
    wait_until("alpha to register", || !networks(server.addr).is_empty());

    register(server.addr, "beta", "beta-1", "127.0.0.1:9200");
    let DiscoveryEvent::Added(added) = next_event(&events) else {
        panic!("expected Added first");
    };
    assert_eq!(
        (added.network_id.as_str(), added.endpoint.as_str()),
        ("beta", "127.0.0.1:9200")
    );

    // Re-registrations only move last_seen: alpha sees fresher rosters but
    // publishes nothing for them.
    let first_seen = added.last_seen.clone();
    wait_until("a roster with a fresher last_seen", || {
        register(server.addr, "beta", "beta-1", "127.0.0.1:9200");
        alpha
            .known_networks()
            .first()
            .is_some_and(|n| n.last_seen != first_seen)
    });

    register(server.addr, "beta", "beta-2", "127.0.0.1:9201");
    let DiscoveryEvent::Updated(updated) = next_event(&events) else {
        panic!("expected Updated after the move");
    };
    assert_eq!(
        (updated.instance_id.as_str(), updated.endpoint.as_str()),
        ("beta-2", "127.0.0.1:9201")
    );

    // beta stops registering: its entry expires and alpha hears of it.
    assert_eq!(next_event(&events), DiscoveryEvent::Removed("beta".into()));
    assert!(alpha.known_networks().is_empty());
    // Nothing else was published, and alpha never reported itself.
    assert!(events.try_recv().is_err());
    alpha.stop();
}

#[test]
fn two_services_see_each_other_and_stop_promptly() {
    let server = ServerProcess::start(&["--entry-ttl-secs", "2", "--prune-interval-secs", "1"]);
    let refresh = Duration::from_millis(200);
    let alpha =
        DiscoveryService::start(config(vec![server.url()], refresh), me("alpha", 9100)).expect("alpha");
    let alpha_events = alpha.subscribe();
    let beta = DiscoveryService::start(config(vec![server.url()], refresh), me("beta", 9200)).expect("beta");
    let beta_events = beta.subscribe();

    let DiscoveryEvent::Added(seen_by_alpha) = next_event(&alpha_events) else {
        panic!("alpha: Added")
    };
    assert_eq!(seen_by_alpha.network_id, "beta");
    let DiscoveryEvent::Added(seen_by_beta) = next_event(&beta_events) else {
        panic!("beta: Added")
    };
    assert_eq!(seen_by_beta.network_id, "alpha");

    let started = Instant::now();
    beta.stop();
    assert!(!beta.is_running());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
    assert_eq!(next_event(&alpha_events), DiscoveryEvent::Removed("beta".into()));
}

#[test]
fn stop_does_not_wait_for_the_refresh_interval() {
    let server = ServerProcess::start(&[]);
    let alpha = DiscoveryService::start(
        config(vec![server.url()], Duration::from_secs(3600)),
        me("alpha", 9100),
    )
    .expect("start");
    wait_until("alpha to register", || !networks(server.addr).is_empty());
    let started = Instant::now();
    drop(alpha);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        started.elapsed()
    );
}

#[test]
fn refresh_now_ticks_without_waiting_for_the_interval() {
    let server = ServerProcess::start(&[]);
    let alpha = DiscoveryService::start(
        config(vec![server.url()], Duration::from_secs(3600)),
        me("alpha", 9100),
    )
    .expect("start");
    let events = alpha.subscribe();
    wait_until("alpha to register", || !networks(server.addr).is_empty());
    register(server.addr, "beta", "beta-1", "127.0.0.1:9200");
    // The next scheduled tick is an hour away; only refresh_now can bring this.
    alpha.refresh_now();
    let DiscoveryEvent::Added(beta) = next_event(&events) else {
        panic!("Added")
    };
    assert_eq!(beta.network_id, "beta");
}

/// A tiny_http server that answers every request with 200 and a body that is
/// not a roster.
struct GarbageServer {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl GarbageServer {
    fn start() -> GarbageServer {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", server.server_addr().to_ip().expect("ip"));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                if let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) {
                    let _ = request.respond(tiny_http::Response::from_string("<html>not a roster</html>"));
                }
            }
        });
        GarbageServer {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for GarbageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

#[test]
fn a_dead_or_garbage_endpoint_does_not_stop_the_others() {
    let server = ServerProcess::start(&[]);
    let garbage = GarbageServer::start();
    let endpoints = vec![closed_port_url(), garbage.url.clone(), server.url()];
    let alpha = DiscoveryService::start(config(endpoints, Duration::from_millis(100)), me("alpha", 9100))
        .expect("start");
    let events = alpha.subscribe();
    wait_until("alpha to register with the live server", || {
        networks(server.addr).iter().any(|n| n["network_id"] == "alpha")
    });
    register(server.addr, "beta", "beta-1", "127.0.0.1:9200");
    let DiscoveryEvent::Added(beta) = next_event(&events) else {
        panic!("Added")
    };
    assert_eq!(beta.network_id, "beta");
    assert!(alpha.is_running());
}

#[test]
fn an_endpoint_outage_keeps_the_known_roster() {
    let mut server = ServerProcess::start(&[]);
    let alpha = DiscoveryService::start(
        config(vec![server.url()], Duration::from_millis(100)),
        me("alpha", 9100),
    )
    .expect("start");
    let events = alpha.subscribe();
    register(server.addr, "beta", "beta-1", "127.0.0.1:9200");
    assert!(matches!(next_event(&events), DiscoveryEvent::Added(_)));
    server.signal("TERM");
    server.wait_exit();
    // Ticks keep failing now; none of them may empty the roster.
    for _ in 0..5 {
        alpha.refresh_now();
        assert!(
            events.recv_timeout(Duration::from_millis(200)).is_err(),
            "no event during an outage"
        );
    }
    assert_eq!(alpha.known_networks().len(), 1);
}

#[test]
fn a_slow_subscriber_misses_events_but_never_blocks_the_others() {
    let server = ServerProcess::start(&[]);
    let mut cfg = config(vec![server.url()], Duration::from_millis(100));
    cfg.subscriber_capacity = 2;
    let alpha = DiscoveryService::start(cfg, me("alpha", 9100)).expect("start");
    let slow = alpha.subscribe();
    let fast = alpha.subscribe();
    // One network at a time, so the fast subscriber, which keeps up, never
    // has more than one event waiting.
    for i in 0..6 {
        let network = format!("net{i}");
        register(server.addr, &network, "x-1", &format!("127.0.0.1:{}", 9300 + i));
        let DiscoveryEvent::Added(n) = next_event(&fast) else {
            panic!("Added")
        };
        assert_eq!(n.network_id, network);
    }
    assert_eq!(slow.len(), 2, "the slow subscriber holds only its capacity");
}

fn distributed(network: &str, discovery: &str, refresh: Duration) -> DistributedNetwork {
    let mut config = DistributedConfig::new(network);
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.bind_port = 0;
    config.auto_connect = false;
    config.discovery = self::config(vec![discovery.to_string()], refresh);
    config.network.workers = 1;
    let net = DistributedNetwork::new(config).expect("valid config");
    net.start().expect("peer starts");
    net
}

#[test]
fn a_clean_shutdown_deregisters_and_the_other_peer_sees_it_leave_at_once() {
    // The default 60 s TTL: anything faster than that is the deregistration.
    let server = ServerProcess::start(&[]);
    let refresh = Duration::from_millis(300);
    let alpha = distributed("alpha", &server.url(), refresh);
    let beta = distributed("beta", &server.url(), refresh);
    let beta_discovery = beta.discovery().expect("discovery runs");
    wait_until("beta to know alpha", || {
        beta_discovery
            .known_networks()
            .iter()
            .any(|n| n.network_id == "alpha")
    });
    let events = beta_discovery.subscribe();

    alpha.shutdown();
    let list = networks(server.addr);
    assert!(
        list.iter().all(|n| n["network_id"] != "alpha"),
        "alpha is gone as soon as its shutdown returns: {list:?}"
    );
    assert_eq!(list.len(), 1, "{list:?}");
    let left = Instant::now();
    let event = events.recv_timeout(PATIENCE).expect("an event for alpha");
    assert_eq!(event, DiscoveryEvent::Removed("alpha".into()));
    // One refresh on an idle machine; a loaded one gets a margin, still far
    // below the TTL.
    assert!(left.elapsed() < Duration::from_secs(10), "{:?}", left.elapsed());
    beta.shutdown();
    assert!(networks(server.addr).is_empty(), "beta deregistered too");
}

#[test]
fn stop_deregisters_without_waiting_for_a_dead_endpoint() {
    let server = ServerProcess::start(&[]);
    let mut cfg = config(vec![server.url()], Duration::from_secs(60));
    cfg.request_timeout = Duration::from_secs(2);
    let alpha = DiscoveryService::start(cfg, me("alpha", 9100)).expect("start alpha");
    wait_until("alpha to register", || !networks(server.addr).is_empty());
    // The entry of a newer instance of alpha is not alpha-1's to remove.
    register(server.addr, "alpha", "alpha-2", "127.0.0.1:9101");
    let started = Instant::now();
    alpha.stop();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let list = networks(server.addr);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["instance_id"], "alpha-2");
}

/// A discovery endpoint that accepts registrations and rosters but never
/// answers a `DELETE`: the stop must not wait for it beyond the timeout.
fn start_silent_on_delete() -> (String, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let got_delete = Arc::new(AtomicBool::new(false));
    let posts = Arc::new(AtomicUsize::new(0));
    let flag = Arc::clone(&got_delete);
    let counter = Arc::clone(&posts);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let flag = Arc::clone(&flag);
            let counter = Arc::clone(&counter);
            thread::spawn(move || {
                use std::io::{BufRead, BufReader, Write};
                let _ = stream.set_read_timeout(Some(PATIENCE));
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                        return;
                    }
                    if line.starts_with("DELETE") {
                        flag.store(true, Ordering::SeqCst);
                        // Hold the connection open without answering.
                        thread::sleep(PATIENCE);
                        return;
                    }
                    if line.starts_with("POST") {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let answer = if line.starts_with("GET") { "[]" } else { "{}" };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, posts, got_delete)
}

#[test]
fn a_hanging_deregistration_holds_stop_up_for_at_most_the_request_timeout() {
    let (url, posts, got_delete) = start_silent_on_delete();
    let mut cfg = config(vec![url], Duration::from_millis(100));
    cfg.request_timeout = Duration::from_secs(1);
    let alpha = DiscoveryService::start(cfg, me("alpha", 9100)).expect("start alpha");
    // A second registration means the answer to the first was read.
    wait_until("two registrations", || posts.load(Ordering::SeqCst) >= 2);
    let started = Instant::now();
    alpha.stop();
    let took = started.elapsed();
    assert!(got_delete.load(Ordering::SeqCst), "the stop sent a DELETE");
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
}
