//! Benchmark: what the binaries cost to keep around. Sizes on disk, idle
//! memory, threads and CPU, the cost of a hub with many connections, a
//! discovery server holding many networks, and how long a failure takes to be
//! noticed and repaired at the default heartbeat and backoff.
//!
//!     cargo build --release --bins --examples
//!     target/release/examples/bench_footprint [--only sizes|idle|hub|discovery|failure]
//!         [--window SECS] [--peers N] [--hub-queue N] [--networks N] [--requests N]
//!
//! Every process is measured from outside through `/proc/PID/status` (VmRSS,
//! VmHWM, Threads) and `/proc/PID/stat` (utime + stime). The binaries under
//! test are the release builds next to this program (`target/release/`).
//! Children are killed on every exit path; all traffic stays on 127.0.0.1.

use std::error::Error;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reflow_distributed::DistributedConfig;
use reflow_distributed::distributed_network::DistributedNetwork;

type BoxError = Box<dyn Error + Send + Sync>;

const WAIT: Duration = Duration::from_secs(20);
/// Time given to a process to finish starting before it is measured.
const SETTLE: Duration = Duration::from_secs(1);

struct Options {
    only: Option<String>,
    window: Duration,
    peers: usize,
    networks: usize,
    requests: usize,
    hub_queue: Option<usize>,
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-hub") {
        let arg = |i: usize| args.get(i).and_then(|n| n.parse().ok());
        return hub_child(arg(2).unwrap_or(100), arg(3));
    }
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let number = |flag: &str, default: usize| -> Result<usize, BoxError> {
        value(flag).map_or(Ok(default), |s| {
            s.parse()
                .map_err(|_| format!("{flag} takes a whole number, got {s:?}").into())
        })
    };
    let options = Options {
        only: value("--only").cloned(),
        window: Duration::from_secs(number("--window", 10)? as u64),
        peers: number("--peers", 100)?,
        networks: number("--networks", 10_000)?,
        requests: number("--requests", 200)?,
        hub_queue: value("--hub-queue")
            .map(|_| number("--hub-queue", 0))
            .transpose()?,
    };
    let bins = Bins::locate()?;
    let dir = TempDir::new()?;
    println!(
        "bench_footprint: {} CPUs, clock tick {} Hz, binaries in {}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        clock_ticks(),
        bins.dir.display()
    );
    let run = |name: &str| options.only.as_deref().is_none_or(|only| only == name);
    if run("sizes") {
        sizes(&bins)?;
    }
    if run("idle") {
        idle(&bins, &dir, &options)?;
    }
    if run("hub") {
        hub(&options)?;
    }
    if run("discovery") {
        discovery(&bins, &options)?;
    }
    if run("failure") {
        failure(&bins, &dir)?;
    }
    Ok(())
}

// ---------- sizes ----------

fn sizes(bins: &Bins) -> Result<(), BoxError> {
    println!("\n## sizes   (ls -l target/release/reflow-*; the release profile strips)");
    for path in [&bins.peer, &bins.discovery] {
        let bytes = fs::metadata(path)?.len();
        println!(
            "  {:<18} {:>10} bytes  ({:.2} MiB)",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            bytes,
            bytes as f64 / 1048576.0
        );
    }
    Ok(())
}

// ---------- idle ----------

fn idle(bins: &Bins, dir: &TempDir, options: &Options) -> Result<(), BoxError> {
    println!(
        "\n## idle   (reflow-discovery --bind 127.0.0.1:0; reflow-peer alpha; reflow-peer beta dialing alpha; default config otherwise)"
    );
    let discovery = Proc::spawn("reflow-discovery", &bins.discovery, &["--bind", "127.0.0.1:0"])?;
    discovery.wait_for("listening on", WAIT)?;
    let alpha = start_peer(bins, dir, "alpha", &peer_toml("alpha", 0, ""))?;
    let endpoint = bridge_address(&alpha)?;
    let beta = start_peer(bins, dir, "beta", &peer_toml("beta", 0, &connect_to(&endpoint)))?;
    beta.wait_for("Established connection with network: alpha", WAIT)?;
    alpha.wait_for("Established connection with network: beta", WAIT)?;
    thread::sleep(SETTLE);
    let procs = [&discovery, &alpha, &beta];
    let before: Vec<Sample> = procs
        .iter()
        .map(|p| Sample::of(p.pid()))
        .collect::<Result<_, _>>()?;
    thread::sleep(options.window);
    let after: Vec<Sample> = procs
        .iter()
        .map(|p| Sample::of(p.pid()))
        .collect::<Result<_, _>>()?;
    println!(
        "  {:<34} {:>9} {:>9} {:>9} {:>8} {:>14}",
        "process",
        "VmRSS",
        "RssAnon",
        "VmHWM",
        "threads",
        format!("CPU in {} s", options.window.as_secs())
    );
    for ((p, b), a) in procs.iter().zip(&before).zip(&after) {
        let label = match p.name.as_str() {
            "alpha" => "reflow-peer alpha (1 accepted conn)",
            "beta" => "reflow-peer beta (1 dialed conn)",
            other => other,
        };
        println!(
            "  {label:<34} {:>5} KiB {:>5} KiB {:>5} KiB {:>8} {:>11} ms",
            a.rss_kib,
            a.anon_kib,
            a.hwm_kib,
            a.threads,
            ticks_ms(a.cpu_ticks - b.cpu_ticks)
        );
    }
    Ok(())
}

// ---------- hub ----------

/// The hub: a `DistributedNetwork` with room for `peers` connections, default
/// heartbeat. Announces its bridge port, then lives until stdin closes.
fn hub_child(peers: usize, queue: Option<usize>) -> Result<(), BoxError> {
    let mut config = DistributedConfig::new("hub");
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.max_connections = peers + 16;
    if let Some(queue) = queue {
        config.bridge.outbound_queue_capacity = queue;
    }
    let hub = DistributedNetwork::new(config)?;
    hub.start()?;
    let port = hub.local_addr().ok_or("the hub has no bridge address")?.port();
    let mut out = std::io::stdout();
    writeln!(out, "PORT {port}")?;
    out.flush()?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    hub.shutdown();
    Ok(())
}

fn hub(options: &Options) -> Result<(), BoxError> {
    let peers = options.peers;
    let queue = options.hub_queue.map_or("default".to_string(), |q| q.to_string());
    println!(
        "\n## hub   (this program --child-hub: one DistributedNetwork, default 1 s heartbeat, outbound_queue_capacity {queue}; {peers} peers dialing it from this process)"
    );
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child-hub", &peers.to_string(), &queue])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let hub = ChildGuard {
        child,
        stdin,
        _stderr: None,
    };
    let mut line = String::new();
    BufReader::new(stdout.ok_or("hub has no stdout")?).read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .ok_or_else(|| format!("the hub did not report a port (said {line:?})"))?
        .parse()?;
    let pid = hub.child.id();
    thread::sleep(SETTLE);
    let empty = Sample::of(pid)?;

    let started = Instant::now();
    let mut clients = Vec::with_capacity(peers);
    for i in 0..peers {
        let mut config = DistributedConfig::new(format!("p{i:03}"));
        config.bridge.bind_address = "127.0.0.1".into();
        config.network.workers = 1;
        let peer = DistributedNetwork::new(config)?;
        peer.start()?;
        peer.connect_to_network(&format!("127.0.0.1:{port}"))?;
        clients.push(peer);
    }
    let connect_time = started.elapsed();
    // The hub registers a connection once its handshake thread hands over.
    let deadline = Instant::now() + WAIT;
    while Sample::of(pid)?.threads < empty.threads + 2 * peers && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(SETTLE);
    let full = Sample::of(pid)?;
    let own_before = Sample::of(std::process::id())?;
    thread::sleep(options.window);
    let full_after = Sample::of(pid)?;
    let own_after = Sample::of(std::process::id())?;

    let per_conn = (full.rss_kib as f64 - empty.rss_kib as f64) / peers as f64;
    println!(
        "  connecting {peers} peers took {:.0} ms",
        connect_time.as_secs_f64() * 1e3
    );
    println!(
        "  hub before: {} KiB VmRSS, {} threads; after {peers} connections: {} KiB VmRSS, {} threads",
        empty.rss_kib, empty.threads, full.rss_kib, full.threads
    );
    println!(
        "  per connection: {per_conn:.1} KiB resident, {:.2} threads",
        (full.threads as f64 - empty.threads as f64) / peers as f64
    );
    println!(
        "  heartbeat CPU over {} s: hub {} ms ({peers} connections); the {peers} peers together {} ms",
        options.window.as_secs(),
        ticks_ms(full_after.cpu_ticks - full.cpu_ticks),
        ticks_ms(own_after.cpu_ticks - own_before.cpu_ticks)
    );
    println!(
        "  hub VmRSS after the window: {} KiB (VmHWM {} KiB)",
        full_after.rss_kib, full_after.hwm_kib
    );
    // Shut the peers down a few at a time, then let the hub go.
    let chunks: Vec<Vec<DistributedNetwork>> = {
        let mut chunks: Vec<Vec<DistributedNetwork>> = (0..10).map(|_| Vec::new()).collect();
        for (i, peer) in clients.into_iter().enumerate() {
            chunks[i % 10].push(peer);
        }
        chunks
    };
    let stoppers: Vec<_> = chunks
        .into_iter()
        .map(|chunk| thread::spawn(move || chunk.iter().for_each(DistributedNetwork::shutdown)))
        .collect();
    for s in stoppers {
        let _ = s.join();
    }
    drop(hub);
    Ok(())
}

// ---------- discovery ----------

fn discovery(bins: &Bins, options: &Options) -> Result<(), BoxError> {
    let networks = options.networks;
    println!(
        "\n## discovery   (reflow-discovery --bind 127.0.0.1:0 --entry-ttl-secs 3600 --max-entries {networks}; {networks} POST /register, then {} GET /networks one at a time)",
        options.requests
    );
    let max_entries = networks.max(1).to_string();
    let server = Proc::spawn(
        "reflow-discovery",
        &bins.discovery,
        &[
            "--bind",
            "127.0.0.1:0",
            "--entry-ttl-secs",
            "3600",
            "--max-entries",
            &max_entries,
        ],
    )?;
    let line = server.wait_for("listening on", WAIT)?;
    let base = format!("http://{}", address_after(&line, "listening on http://")?);
    thread::sleep(SETTLE);
    let empty = Sample::of(server.pid())?;

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .proxy(None)
        .max_idle_connections_per_host(4)
        .build()
        .into();
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (agent, base) = (agent.clone(), base.clone());
            thread::spawn(move || -> Result<(), String> {
                for i in (w..networks).step_by(4) {
                    let body = format!(
                        r#"{{"network_id":"network-{i:05}","instance_id":"network-{i:05}-1","endpoint":"10.{}.{}.{}:9100","capabilities":["actor_messaging"]}}"#,
                        i / 62500,
                        i / 250 % 250,
                        i % 250 + 1
                    );
                    let response = agent
                        .post(&format!("{base}/register"))
                        .header("Content-Type", "application/json")
                        .send(body.as_bytes())
                        .map_err(|e| e.to_string())?;
                    if response.status().as_u16() != 200 {
                        return Err(format!("register answered {}", response.status()));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "register thread panicked")??;
    }
    let register_time = started.elapsed();
    thread::sleep(SETTLE);
    let registered = Sample::of(server.pid())?;

    let mut latencies = Vec::with_capacity(options.requests);
    let mut body_len = 0;
    for _ in 0..options.requests + 10 {
        let started = Instant::now();
        let body = agent
            .get(&format!("{base}/networks"))
            .call()?
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()?;
        latencies.push(started.elapsed());
        body_len = body.len();
    }
    let latencies = &mut latencies[10..]; // the first ten warm up
    latencies.sort();
    let served = Sample::of(server.pid())?;
    println!(
        "  registering {networks} networks took {:.1} s ({:.0} registrations/s over 4 keep-alive clients)",
        register_time.as_secs_f64(),
        networks as f64 / register_time.as_secs_f64()
    );
    println!(
        "  VmRSS: empty {} KiB, with {networks} networks {} KiB ({:.0} bytes per network), after serving {} KiB (VmHWM {} KiB), {} threads",
        empty.rss_kib,
        registered.rss_kib,
        (registered.rss_kib as f64 - empty.rss_kib as f64) * 1024.0 / networks.max(1) as f64,
        served.rss_kib,
        served.hwm_kib,
        served.threads
    );
    println!(
        "  GET /networks ({body_len} byte body), {} requests: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(latencies, 0.50).as_secs_f64() * 1e3,
        percentile(latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    Ok(())
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

// ---------- failure ----------

/// Beta dials alpha (default 1 s heartbeat, default backoff 200 ms doubling to
/// 3.2 s, five attempts). Alpha is frozen with SIGSTOP until beta evicts it,
/// killed, and started again once beta's first redial has failed; the
/// restarted alpha's `--send` can only reach beta over beta's redial.
fn failure(bins: &Bins, dir: &TempDir) -> Result<(), BoxError> {
    println!(
        "\n## failure   (reflow-peer alpha on a fixed port; reflow-peer beta dialing it; default heartbeat 1 s and backoff)"
    );
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let alpha_toml = peer_toml("alpha", port, "");
    let alpha = start_peer(bins, dir, "alpha", &alpha_toml)?;
    let endpoint = bridge_address(&alpha)?;
    let beta = start_peer(bins, dir, "beta", &peer_toml("beta", 0, &connect_to(&endpoint)))?;
    beta.wait_for("Established connection with network: alpha", WAIT)?;
    thread::sleep(SETTLE);

    let mark = beta.mark();
    let stopped = Instant::now();
    signal(alpha.pid(), "STOP")?;
    beta.wait_for_after(mark, "Evicted connection to network: alpha", WAIT)?;
    let to_eviction = stopped.elapsed();
    drop(alpha); // SIGKILL, even while stopped
    beta.wait_for_after(mark, "Reconnect attempt 1/5 for alpha failed", WAIT)?;
    let restarted = Instant::now();
    let alpha = start_peer_with(
        bins,
        dir,
        "alpha",
        &alpha_toml,
        &["--send", "beta:recorder:in:after-restart"],
    )?;
    let reconnected = beta.wait_for_after(mark, "Reconnected to alpha", WAIT)?;
    let to_reconnect = restarted.elapsed();
    beta.wait_for_after(mark, "recorder.in: String(\"after-restart\")", WAIT)?;
    let to_delivery = restarted.elapsed();
    let attempt = reconnected.rsplit(' ').next().unwrap_or("?");
    println!(
        "  SIGSTOP -> evicted: {} ms (3 silent intervals of 1000 ms, checked every 250 ms)",
        to_eviction.as_millis()
    );
    println!(
        "  restart (after redial 1 failed) -> reconnected on attempt {attempt}: {} ms; -> first message delivered: {} ms",
        to_reconnect.as_millis(),
        to_delivery.as_millis()
    );
    drop(alpha);
    Ok(())
}

fn signal(pid: u32, name: &str) -> Result<(), BoxError> {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()?;
    if !status.success() {
        return Err(format!("kill -{name} {pid} failed").into());
    }
    Ok(())
}

// ---------- peers ----------

fn peer_toml(network: &str, port: u16, extra: &str) -> String {
    format!("network_id = \"{network}\"\nbind_address = \"127.0.0.1\"\nbind_port = {port}\n{extra}")
}

fn connect_to(endpoint: &str) -> String {
    format!("[[connect]]\nendpoint = \"{endpoint}\"\n")
}

fn start_peer(bins: &Bins, dir: &TempDir, name: &str, toml: &str) -> Result<Proc, BoxError> {
    start_peer_with(bins, dir, name, toml, &[])
}

fn start_peer_with(
    bins: &Bins,
    dir: &TempDir,
    name: &str,
    toml: &str,
    extra: &[&str],
) -> Result<Proc, BoxError> {
    let path = dir.path.join(format!("{name}.toml"));
    fs::write(&path, toml)?;
    let mut args = vec!["--config", path.to_str().ok_or("temp path is not UTF-8")?];
    args.extend_from_slice(extra);
    Proc::spawn(name, &bins.peer, &args)
}

fn bridge_address(peer: &Proc) -> Result<String, BoxError> {
    let line = peer.wait_for("bridge listening on", WAIT)?;
    address_after(&line, "bridge listening on ")
}

fn address_after(line: &str, marker: &str) -> Result<String, BoxError> {
    let rest = line
        .split_once(marker)
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("no address in {line:?}"))?;
    Ok(rest.split_whitespace().next().unwrap_or_default().to_string())
}

// ---------- processes ----------

struct Bins {
    dir: PathBuf,
    peer: PathBuf,
    discovery: PathBuf,
}

impl Bins {
    /// The release binaries beside `target/release/examples/bench_footprint`.
    fn locate() -> Result<Bins, BoxError> {
        let exe = std::env::current_exe()?;
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .ok_or("cannot find the target directory")?
            .to_path_buf();
        let bins = Bins {
            peer: dir.join("reflow-peer"),
            discovery: dir.join("reflow-discovery"),
            dir,
        };
        for path in [&bins.peer, &bins.discovery] {
            if !path.exists() {
                return Err(format!(
                    "{} is missing: build it first with `cargo build --release --bins`",
                    path.display()
                )
                .into());
            }
        }
        Ok(bins)
    }
}

/// A child process that is killed when this value is dropped, whatever the
/// exit path (error, panic unwinding, normal end).
struct ChildGuard {
    child: Child,
    stdin: Option<ChildStdin>,
    _stderr: Option<thread::JoinHandle<()>>,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A binary under test; its stderr (the log) is collected line by line.
struct Proc {
    name: String,
    guard: ChildGuard,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(name: &str, program: &Path, args: &[&str]) -> Result<Proc, BoxError> {
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut lines) = sink.lock() {
                    lines.push(line);
                }
            }
        });
        Ok(Proc {
            name: name.to_string(),
            guard: ChildGuard {
                child,
                stdin: None,
                _stderr: Some(reader),
            },
            lines,
        })
    }

    fn pid(&self) -> u32 {
        self.guard.child.id()
    }

    fn mark(&self) -> usize {
        self.lines.lock().map_or(0, |l| l.len())
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String, BoxError> {
        self.wait_for_after(0, needle, timeout)
    }

    /// The first log line after `mark` that contains `needle`.
    fn wait_for_after(&self, mark: usize, needle: &str, timeout: Duration) -> Result<String, BoxError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(lines) = self.lines.lock()
                && let Some(line) = lines.iter().skip(mark).find(|l| l.contains(needle))
            {
                return Ok(line.clone());
            }
            if Instant::now() > deadline {
                let log = self.lines.lock().map(|l| l.join("\n")).unwrap_or_default();
                return Err(format!("{}: no {needle:?} within {timeout:?}; log:\n{log}", self.name).into());
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<TempDir, BoxError> {
        let path = std::env::temp_dir().join(format!("reflow-footprint-{}", std::process::id()));
        fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------- /proc ----------

struct Sample {
    rss_kib: u64,
    /// Heap and stacks: VmRSS without the mapped files (code, libc).
    anon_kib: u64,
    hwm_kib: u64,
    threads: usize,
    cpu_ticks: u64,
}

impl Sample {
    fn of(pid: u32) -> Result<Sample, BoxError> {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name, which is in parentheses: state is
        // field 3, utime 14 and stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok(Sample {
            rss_kib: field("VmRSS:"),
            anon_kib: field("RssAnon:"),
            hwm_kib: field("VmHWM:"),
            threads: field("Threads:") as usize,
            cpu_ticks: tick(14) + tick(15),
        })
    }
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

fn ticks_ms(ticks: u64) -> u64 {
    ticks * 1000 / clock_ticks()
}
