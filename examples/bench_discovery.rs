//! Benchmark: `GET /networks` throughput of the discovery server with 1,000
//! registered networks, beside two baselines measured in the same run:
//!
//! - `GET /healthz` on the same server (same connection handling, tiny body):
//!   the ratio shows what building and encoding the roster costs;
//! - a bare `tiny_http` server returning a fixed, pre-encoded 1,000-entry
//!   roster: the ratio shows the server against the simplest thing that could
//!   send the same bytes.
//!
//! Run with `cargo run --release --example bench_discovery`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use reflow_distributed::discovery::{DiscoveryServer, ServerConfig};

const NETWORKS: usize = 1_000;
const CLIENT_THREADS: usize = 4;
const REQUESTS_PER_THREAD: usize = 1_000;
const WARMUP_PER_THREAD: usize = 50;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .proxy(None)
        .max_idle_connections_per_host(CLIENT_THREADS)
        .build()
        .into()
}

/// Requests per second for `url`, over `CLIENT_THREADS` keep-alive clients;
/// also returns the size of one body.
fn measure(agent: &ureq::Agent, url: &str) -> (f64, usize) {
    let run = |per_thread: usize| -> usize {
        let handles: Vec<_> = (0..CLIENT_THREADS)
            .map(|_| {
                let (agent, url) = (agent.clone(), url.to_string());
                thread::spawn(move || {
                    let mut size = 0;
                    for _ in 0..per_thread {
                        let mut response = agent.get(&url).call().expect("request");
                        size = response
                            .body_mut()
                            .with_config()
                            .limit(64 * 1024 * 1024)
                            .read_to_vec()
                            .expect("body")
                            .len();
                    }
                    size
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .max()
            .unwrap_or(0)
    };
    run(WARMUP_PER_THREAD);
    let started = Instant::now();
    let size = run(REQUESTS_PER_THREAD);
    let secs = started.elapsed().as_secs_f64();
    ((CLIENT_THREADS * REQUESTS_PER_THREAD) as f64 / secs, size)
}

/// A bare tiny_http server answering every request with `body`.
fn fixed_body_server(body: Vec<u8>) -> (String, Arc<AtomicBool>, Vec<thread::JoinHandle<()>>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
    let url = format!("http://{}/networks", server.server_addr().to_ip().expect("ip"));
    let stop = Arc::new(AtomicBool::new(false));
    let body = Arc::new(body);
    let threads = (0..CLIENT_THREADS)
        .map(|_| {
            let (server, stop, body) = (Arc::clone(&server), Arc::clone(&stop), Arc::clone(&body));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) {
                        let response = tiny_http::Response::from_data(body.as_slice()).with_header(
                            tiny_http::Header::from_bytes("Content-Type", "application/json")
                                .expect("header"),
                        );
                        let _ = request.respond(response);
                    }
                }
            })
        })
        .collect();
    (url, stop, threads)
}

fn main() {
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.entry_ttl = Duration::from_secs(3600);
    // Every client of the benchmark is on 127.0.0.1: lift the per-address
    // request budget, which would otherwise answer most requests with 429.
    config.requests_per_sec_per_ip = u32::MAX;
    config.request_burst_per_ip = u32::MAX;
    let server = DiscoveryServer::start(config).expect("start the discovery server");
    let base = format!("http://{}", server.local_addr());
    let agent = agent();
    for i in 0..NETWORKS {
        let body = serde_json::json!({
            "network_id": format!("network-{i:04}"),
            "instance_id": format!("network-{i:04}-1"),
            "endpoint": format!("10.0.{}.{}:9100", i / 250, i % 250 + 1),
            "capabilities": ["actor_messaging"],
        })
        .to_string();
        let response = agent
            .post(&format!("{base}/register"))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .expect("register");
        assert_eq!(response.status().as_u16(), 200);
    }
    let roster = agent
        .get(&format!("{base}/networks"))
        .call()
        .expect("roster")
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .expect("roster body");

    println!(
        "bench_discovery: {NETWORKS} networks, {CLIENT_THREADS} keep-alive clients x {REQUESTS_PER_THREAD} requests"
    );
    let (networks_rps, networks_size) = measure(&agent, &format!("{base}/networks"));
    let (healthz_rps, healthz_size) = measure(&agent, &format!("{base}/healthz"));
    let (fixed_url, stop, threads) = fixed_body_server(roster);
    let (fixed_rps, fixed_size) = measure(&agent, &fixed_url);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    server.shutdown();

    println!(
        "  GET /networks (discovery server)      {networks_rps:>10.0} req/s  ({networks_size} byte body)"
    );
    println!(
        "  GET /healthz  (same server, baseline)  {healthz_rps:>10.0} req/s  ({healthz_size} byte body)"
    );
    println!("  fixed roster  (bare tiny_http, baseline){fixed_rps:>9.0} req/s  ({fixed_size} byte body)");
    println!(
        "  ratio /networks : /healthz        = {:.3}",
        networks_rps / healthz_rps
    );
    println!(
        "  ratio /networks : fixed tiny_http = {:.3}",
        networks_rps / fixed_rps
    );
}
