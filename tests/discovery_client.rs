//! `DiscoveryService` against the real `reflow-discovery` binary: events for
//! joins, moves and departures, several endpoints of which some fail, and
//! prompt stopping.

mod discovery_support;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use reflow_distributed::discovery::{
    DiscoveryClientConfig, DiscoveryEvent, DiscoveryService, RegistrationInfo,
};

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
