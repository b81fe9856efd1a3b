//! Benchmark: how long a new peer takes to be seen by many others, through
//! `reflow-discovery` and through etcd, in the same run.
//!
//!     cargo run --release --example discovery_fanout [-- --quick]
//!         [--watchers N] [--rounds N] [--refresh-ms MS] [--window-secs S]
//!         [--only reflow-discovery|etcd] [--etcd PATH]
//!
//! For each backend: start it as a child process (`reflow-discovery` is a
//! `DiscoveryServer` in a child of this program; etcd is the `etcd` binary on
//! free ports with a temporary data directory), start `--watchers`
//! `DiscoveryService`s (default 50) refreshing every `--refresh-ms` (default
//! 1000), their starts spread over one interval as a real fleet's are, and
//! wait until every one is registered and knows all the others. Then:
//!
//! - **Steady state**, over `--window-secs`: requests per second the backend
//!   served (its own counters: `reflow_discovery_http_responses_total`, etcd's
//!   `grpc_server_started_total`), and the CPU time per watcher tick, of the
//!   backend process and of the watchers (`/proc/PID/stat`).
//! - **Rounds** (`--rounds`, default 10, 3 with `--quick`): start one new
//!   service and time, from just before its start, each watcher's `Added`
//!   event for it; then stop it cleanly and time each watcher's `Removed`.
//!
//! It prints a table and, as its last line, one JSON object with every
//! figure (`| tail -1 | jq .`). Without an `etcd` binary (on `PATH` or
//! `--etcd`) it says so and measures `reflow-discovery` alone. Children are
//! killed on every exit path; all traffic stays on 127.0.0.1.

use std::collections::HashSet;
use std::error::Error;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use reflow_distributed::discovery::{
    DiscoveryClientConfig, DiscoveryEvent, DiscoveryServer, DiscoveryService, RegistrationInfo, ServerConfig,
};
use serde_json::{Value, json};

type BoxError = Box<dyn Error + Send + Sync>;

/// How long a backend may take to start and answer.
const START_WAIT: Duration = Duration::from_secs(30);

struct Options {
    watchers: usize,
    rounds: usize,
    refresh: Duration,
    window: Duration,
    only: Option<String>,
    etcd: Option<PathBuf>,
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-discovery") {
        return discovery_child();
    }
    let options = parse_options(&args)?;
    println!(
        "discovery_fanout: {} watchers, refresh every {} ms, {} rounds, steady window {} s, {} CPUs",
        options.watchers,
        options.refresh.as_millis(),
        options.rounds,
        options.window.as_secs(),
        thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let wanted = |name: &str| options.only.as_deref().is_none_or(|only| only == name);
    let mut results = Vec::new();
    if wanted("reflow-discovery") {
        let mut backend = Backend::reflow_discovery()?;
        results.push(measure(&mut backend, &options)?);
    }
    let mut etcd_missing = Value::Null;
    if wanted("etcd") {
        match options.etcd.clone().or_else(|| find_on_path("etcd")) {
            Some(program) => {
                let mut backend = Backend::etcd(&program)?;
                results.push(measure(&mut backend, &options)?);
            }
            None => {
                let why = "no etcd binary on PATH (Debian: apt-get install etcd-server) and no --etcd PATH";
                println!("\netcd: not measured: {why}");
                etcd_missing = Value::String(why.into());
            }
        }
    }
    print_table(&results);
    let backends: serde_json::Map<String, Value> =
        results.iter().map(|r| (r.backend.clone(), r.to_json())).collect();
    println!(
        "{}",
        json!({
            "bench": "discovery_fanout",
            "watchers": options.watchers,
            "refresh_ms": options.refresh.as_millis() as u64,
            "rounds": options.rounds,
            "window_s": options.window.as_secs(),
            "backends": backends,
            "etcd_missing": etcd_missing,
        })
    );
    Ok(())
}

fn parse_options(args: &[String]) -> Result<Options, BoxError> {
    let known = [
        "--quick",
        "--watchers",
        "--rounds",
        "--refresh-ms",
        "--window-secs",
        "--only",
        "--etcd",
    ];
    let takes_value = |a: &str| a != "--quick";
    let mut i = 1;
    while i < args.len() {
        if !known.contains(&args[i].as_str()) {
            return Err(format!("unknown argument {:?}; flags: {}", args[i], known.join(" ")).into());
        }
        i += if takes_value(&args[i]) { 2 } else { 1 };
    }
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let number = |flag: &str, default: u64| -> Result<u64, BoxError> {
        match value(flag) {
            None => Ok(default),
            Some(s) => match s.parse() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{flag} takes a whole number above zero, got {s:?}").into()),
            },
        }
    };
    let only = value("--only").cloned();
    if let Some(only) = &only
        && only != "reflow-discovery"
        && only != "etcd"
    {
        return Err(format!("--only takes reflow-discovery or etcd, got {only:?}").into());
    }
    let watchers = number("--watchers", 50)? as usize;
    if watchers < 2 {
        return Err("--watchers must be at least 2".into());
    }
    Ok(Options {
        watchers,
        rounds: number("--rounds", if quick { 3 } else { 10 })? as usize,
        refresh: Duration::from_millis(number("--refresh-ms", 1000)?),
        window: Duration::from_secs(number("--window-secs", if quick { 3 } else { 10 })?),
        only,
        etcd: value("--etcd").map(PathBuf::from),
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

// ---------- the backends ----------

/// A backend running as a child process.
struct Backend {
    name: &'static str,
    /// What the watchers put in `DiscoveryClientConfig::endpoints`.
    endpoint: String,
    /// Where the backend's Prometheus text is served.
    metrics_url: String,
    /// Names the metric whose sum over its series counts requests served.
    request_metric: &'static str,
    version: String,
    child: ChildGuard,
    _data: Option<TempDir>,
}

impl Backend {
    /// `DiscoveryServer` in a child of this program, with the per-address
    /// limits lifted: every watcher here shares 127.0.0.1, which the
    /// defaults (100 requests/s, 32 connections per address) are meant to
    /// stop. A fleet of real hosts comes from many addresses.
    fn reflow_discovery() -> Result<Backend, BoxError> {
        let me = std::env::current_exe()?;
        let mut child = Command::new(me)
            .arg("--child-discovery")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let guard = ChildGuard { child };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("discovery child said {line:?}"))?
            .to_string();
        Ok(Backend {
            name: "reflow-discovery",
            endpoint: format!("http://{addr}"),
            metrics_url: format!("http://{addr}/metrics"),
            request_metric: "reflow_discovery_http_responses_total",
            version: format!("reflow_distributed {}", env!("CARGO_PKG_VERSION")),
            child: guard,
            _data: None,
        })
    }

    /// One etcd member on free ports with a fresh data directory; a port
    /// taken between choosing and binding makes etcd exit, and the start is
    /// tried again on other ports.
    fn etcd(program: &Path) -> Result<Backend, BoxError> {
        let version = Command::new(program)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(str::to_string))
            .unwrap_or_else(|| "etcd (version unknown)".into());
        let mut last_error = String::new();
        for _ in 0..3 {
            let data = TempDir::new("etcd")?;
            let [client, peer] = free_ports()?;
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = fs::File::create(data.path.join("etcd.log"))?;
            let child = Command::new(program)
                .args(["--name", "m0", "--data-dir"])
                .arg(data.path.join("data"))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("m0={peer_url}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            let mut guard = ChildGuard { child };
            match wait_healthy(&mut guard.child, &format!("{client_url}/health")) {
                Ok(()) => {
                    return Ok(Backend {
                        name: "etcd",
                        endpoint: format!("etcd://127.0.0.1:{client}"),
                        metrics_url: format!("{client_url}/metrics"),
                        request_metric: "grpc_server_started_total",
                        version,
                        child: guard,
                        _data: Some(data),
                    });
                }
                Err(e) => {
                    let log = fs::read_to_string(data.path.join("etcd.log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    last_error = format!("{e}; last log lines: {tail:?}");
                }
            }
        }
        Err(format!("etcd did not start: {last_error}").into())
    }

    fn pid(&self) -> u32 {
        self.child.child.id()
    }

    /// Requests served so far, from the backend's own counters.
    fn requests_served(&mut self) -> Result<f64, BoxError> {
        match http_get(&self.metrics_url) {
            Ok(text) => Ok(sum_metric(&text, self.request_metric)),
            Err(e) => Err(self.failed(&format!("{}: {e}", self.metrics_url))),
        }
    }

    /// An error about the backend, saying whether it still runs and, for
    /// etcd, the end of its log.
    fn failed(&mut self, what: &str) -> BoxError {
        let state = match self.child.child.try_wait() {
            Ok(Some(status)) => format!("it exited with {status}"),
            _ => "it still runs".to_string(),
        };
        let log = self
            ._data
            .as_ref()
            .and_then(|d| fs::read_to_string(d.path.join("etcd.log")).ok())
            .map(|log| {
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                format!("; last log lines, newest first: {tail:#?}")
            })
            .unwrap_or_default();
        format!("{}: {what}; {state}{log}", self.name).into()
    }
}

/// Kills and reaps its child when dropped, on every exit path.
struct ChildGuard {
    child: Child,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's side of [`Backend::reflow_discovery`]: serve until standard
/// input closes (the parent exited or dropped it).
fn discovery_child() -> Result<(), BoxError> {
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.requests_per_sec_per_ip = u32::MAX;
    config.request_burst_per_ip = u32::MAX;
    config.max_connections = 1024;
    config.max_connections_per_ip = 1024;
    let server = DiscoveryServer::start(config)?;
    println!("listening on {}", server.local_addr());
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    server.shutdown();
    Ok(())
}

/// Two distinct free ports: both are held until both are chosen.
fn free_ports() -> Result<[u16; 2], BoxError> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok([a.local_addr()?.port(), b.local_addr()?.port()])
}

fn wait_healthy(child: &mut Child, url: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(format!("etcd exited with {status}").into());
        }
        if http_get(url).is_ok_and(|body| body.contains(r#""health":"true""#)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{url} not healthy within {START_WAIT:?}").into());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn http_get(url: &str) -> Result<String, BoxError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .proxy(None)
        .build()
        .into();
    Ok(agent
        .get(url)
        .call()?
        .body_mut()
        .with_config()
        .limit(16 * 1024 * 1024)
        .read_to_string()?)
}

/// The sum of every series of `name` in Prometheus text.
fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---------- the measurement ----------

/// What one backend measured.
struct Outcome {
    backend: String,
    version: String,
    /// From the first watcher's start to all knowing each other.
    converged: Duration,
    requests_per_sec: f64,
    requests_per_tick: f64,
    backend_cpu_us_per_tick: f64,
    watchers_cpu_us_per_tick: f64,
    backend_rss_kib: u64,
    /// Per round: until the last watcher saw the newcomer `Added`.
    seen_by_all: Vec<Duration>,
    /// Every watcher's `Added`, over all rounds.
    seen_each: Vec<Duration>,
    /// Per round: from the newcomer's clean stop until the last `Removed`.
    removed_by_all: Vec<Duration>,
}

fn watcher_config(backend: &Backend, options: &Options) -> DiscoveryClientConfig {
    let mut config = DiscoveryClientConfig::default();
    config.endpoints = vec![backend.endpoint.clone()];
    config.refresh_interval = options.refresh;
    config
}

fn registration(network: &str, port: usize) -> RegistrationInfo {
    RegistrationInfo {
        network_id: network.into(),
        instance_id: format!("{network}-1"),
        // Never dialled: discovery only carries it.
        endpoint: format!("127.0.0.1:{}", 20_000 + port),
        capabilities: vec!["actor_messaging".into()],
    }
}

fn measure(backend: &mut Backend, options: &Options) -> Result<Outcome, BoxError> {
    println!(
        "\n## {} ({}), endpoint {}",
        backend.name, backend.version, backend.endpoint
    );
    let n = options.watchers;
    let (events_tx, events) = mpsc::channel::<(usize, DiscoveryEvent, Instant)>();
    let mut watchers = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let name = format!("watcher-{i:03}");
        let service = DiscoveryService::start(watcher_config(backend, options), registration(&name, i))?;
        // One forwarding thread per watcher stamps each event as it arrives;
        // it ends when the service stops and drops its sender.
        let receiver = service.subscribe();
        let tx = events_tx.clone();
        thread::spawn(move || {
            for event in receiver {
                if tx.send((i, event, Instant::now())).is_err() {
                    break;
                }
            }
        });
        watchers.push(service);
        // Spread the starts over one interval so the ticks are spread too.
        thread::sleep(options.refresh / n as u32);
    }
    drop(events_tx);
    let deadline = started + START_WAIT + options.refresh * 5;
    loop {
        let ready = watchers
            .iter()
            .filter(|w| w.is_registered() && w.known_networks().len() == n - 1)
            .count();
        if ready == n {
            break;
        }
        if Instant::now() > deadline {
            return Err(backend.failed(&format!(
                "only {ready} of {n} watchers registered and saw every other within {:?}",
                deadline - started
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
    let converged = started.elapsed();
    println!(
        "  {n} watchers registered and see each other after {} ms",
        converged.as_millis()
    );

    // Steady state.
    let me = std::process::id();
    let (requests0, backend0, self0) = (
        backend.requests_served()?,
        cpu_ticks(backend.pid())?,
        cpu_ticks(me)?,
    );
    let window_start = Instant::now();
    thread::sleep(options.window);
    let (requests1, backend1, self1) = (
        backend.requests_served()?,
        cpu_ticks(backend.pid())?,
        cpu_ticks(me)?,
    );
    let window = window_start.elapsed().as_secs_f64();
    let ticks = n as f64 * window / options.refresh.as_secs_f64();
    let per_tick_us = |ticks_used: u64| ticks_used as f64 * 1e6 / clock_ticks() as f64 / ticks;
    let requests = requests1 - requests0;
    let backend_rss_kib = rss_kib(backend.pid())?;
    let outcome_steady = (
        requests / window,
        requests / ticks,
        per_tick_us(backend1 - backend0),
        per_tick_us(self1 - self0),
    );
    println!(
        "  steady state over {window:.1} s: {:.0} requests/s served ({:.2} per watcher tick), backend CPU {:.0} µs and watchers' CPU {:.0} µs per watcher tick, backend VmRSS {backend_rss_kib} KiB",
        outcome_steady.0, outcome_steady.1, outcome_steady.2, outcome_steady.3
    );

    // Rounds.
    let mut seen_by_all = Vec::new();
    let mut seen_each = Vec::new();
    let mut removed_by_all = Vec::new();
    let round_wait = START_WAIT + options.refresh * 5;
    for round in 0..options.rounds {
        while events.try_recv().is_ok() {}
        let name = format!("newcomer-{round:02}");
        let t0 = Instant::now();
        let newcomer =
            DiscoveryService::start(watcher_config(backend, options), registration(&name, n + round))?;
        let added = wait_for_all(
            &events,
            n,
            round_wait,
            |e| matches!(e, DiscoveryEvent::Added(info) if info.network_id == name),
        )
        .map_err(|missing| {
            backend.failed(&format!(
                "round {round}: {missing} watchers never saw {name} added"
            ))
        })?;
        let latencies: Vec<Duration> = added.iter().map(|at| *at - t0).collect();
        let t1 = Instant::now();
        newcomer.stop();
        let stop_took = t1.elapsed();
        let removed = wait_for_all(
            &events,
            n,
            round_wait,
            |e| matches!(e, DiscoveryEvent::Removed(id) if *id == name),
        )
        .map_err(|missing| {
            backend.failed(&format!(
                "round {round}: {missing} watchers never saw {name} removed"
            ))
        })?;
        let last_added = latencies.iter().max().copied().unwrap_or_default();
        let last_removed = removed.iter().max().map(|at| *at - t1).unwrap_or_default();
        println!(
            "  round {round}: seen by all {n} after {:>5} ms (first {:>4} ms, median {:>4} ms); clean stop took {:>5.1} ms, removed by all after {:>5} ms",
            last_added.as_millis(),
            latencies.iter().min().copied().unwrap_or_default().as_millis(),
            median(&latencies).as_millis(),
            stop_took.as_secs_f64() * 1e3,
            last_removed.as_millis(),
        );
        seen_by_all.push(last_added);
        seen_each.extend(latencies);
        removed_by_all.push(last_removed);
    }
    for w in &watchers {
        w.stop();
    }
    Ok(Outcome {
        backend: backend.name.into(),
        version: backend.version.clone(),
        converged,
        requests_per_sec: outcome_steady.0,
        requests_per_tick: outcome_steady.1,
        backend_cpu_us_per_tick: outcome_steady.2,
        watchers_cpu_us_per_tick: outcome_steady.3,
        backend_rss_kib,
        seen_by_all,
        seen_each,
        removed_by_all,
    })
}

/// When each of the `n` watchers first had an event matching `wanted`, or
/// how many never did within `timeout`.
fn wait_for_all(
    events: &mpsc::Receiver<(usize, DiscoveryEvent, Instant)>,
    n: usize,
    timeout: Duration,
    wanted: impl Fn(&DiscoveryEvent) -> bool,
) -> Result<Vec<Instant>, usize> {
    let deadline = Instant::now() + timeout;
    let mut seen = HashSet::new();
    let mut at = Vec::with_capacity(n);
    while seen.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok((watcher, event, when)) => {
                if wanted(&event) && seen.insert(watcher) {
                    at.push(when);
                }
            }
            Err(_) => return Err(n - seen.len()),
        }
    }
    Ok(at)
}

// ---------- the report ----------

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// `{"min": …, "median": …, "max": …}` in milliseconds.
fn spread(values: &[Duration]) -> Value {
    json!({
        "min": ms(values.iter().min().copied().unwrap_or_default()),
        "median": ms(median(values)),
        "max": ms(values.iter().max().copied().unwrap_or_default()),
    })
}

fn spread_text(values: &[Duration]) -> String {
    format!(
        "{} / {} / {}",
        ms(values.iter().min().copied().unwrap_or_default()),
        ms(median(values)),
        ms(values.iter().max().copied().unwrap_or_default())
    )
}

impl Outcome {
    fn to_json(&self) -> Value {
        json!({
            "version": self.version,
            "converged_ms": ms(self.converged),
            "seen_by_all_ms": spread(&self.seen_by_all),
            "seen_by_each_ms": spread(&self.seen_each),
            "removed_by_all_ms": spread(&self.removed_by_all),
            "requests_per_sec": self.requests_per_sec.round(),
            "requests_per_tick": (self.requests_per_tick * 100.0).round() / 100.0,
            "backend_cpu_us_per_tick": self.backend_cpu_us_per_tick.round(),
            "watchers_cpu_us_per_tick": self.watchers_cpu_us_per_tick.round(),
            "backend_rss_kib": self.backend_rss_kib,
        })
    }
}

fn print_table(results: &[Outcome]) {
    println!("\n## summary (ms: min / median / max over rounds; each watcher pooled over rounds)\n");
    println!(
        "| backend | new peer seen by all | seen by each watcher | clean stop: removed by all | requests/s | requests per tick | backend CPU per tick | watchers' CPU per tick | backend VmRSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in results {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.0} µs | {:.0} µs | {} KiB |",
            r.backend,
            spread_text(&r.seen_by_all),
            spread_text(&r.seen_each),
            spread_text(&r.removed_by_all),
            r.requests_per_sec,
            r.requests_per_tick,
            r.backend_cpu_us_per_tick,
            r.watchers_cpu_us_per_tick,
            r.backend_rss_kib,
        );
    }
    println!();
}

// ---------- /proc and files ----------

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, BoxError> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (in parentheses) start at field 3;
    // utime is field 14 and stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(field(14) + field(15))
}

fn rss_kib(pid: u32) -> Result<u64, BoxError> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(what: &str) -> Result<TempDir, BoxError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("reflow-fanout-{what}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
