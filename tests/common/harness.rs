//! Runs the real binaries as child processes and waits on their log lines with
//! deadlines. Shared by the end-to-end tests and the walk-through program.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Every line a process printed (stdout and stderr, in arrival order).
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    arrived: Condvar,
}

/// A child process that is killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Arc<Lines>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// How a process's output is shown while it runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    Quiet,
    /// Print each line prefixed by the process name (for the walk-through).
    Prefixed,
}

impl Proc {
    pub fn spawn(name: &str, program: &Path, args: &[&str], env: &[(&str, &str)], echo: Echo) -> Proc {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("REFLOW_AUTH_TOKEN");
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let lines = Arc::new(Lines::default());
        let mut readers = Vec::new();
        let outputs: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for output in outputs {
            let lines = lines.clone();
            let label = name.to_string();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    if echo == Echo::Prefixed {
                        println!("    [{label}] {line}");
                    }
                    lines.lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                    lines.arrived.notify_all();
                }
            }));
        }
        Proc {
            name: name.to_string(),
            child,
            lines,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many lines have arrived so far: a mark for `wait_for_after`.
    pub fn mark(&self) -> usize {
        self.lines.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits for a line containing `needle`, among all lines so far and to come.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        self.wait_for_after(0, needle, timeout)
    }

    /// Waits for a line containing `needle` that arrived after `mark`.
    pub fn wait_for_after(&self, mark: usize, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lines.lock().unwrap_or_else(|e| e.into_inner());
        // Lines already looked at are not looked at again: a busy process
        // may print thousands while this waits.
        let mut scanned = mark;
        loop {
            if let Some(line) = lines.iter().skip(scanned).find(|l| l.contains(needle)) {
                return Ok(line.clone());
            }
            scanned = scanned.max(lines.len());
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return Err(format!(
                    "{}: no line containing {needle:?} within {timeout:?}; output was:\n{}",
                    self.name,
                    lines.join("\n")
                ));
            };
            lines = self
                .lines
                .arrived
                .wait_timeout(lines, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until at least `n` lines containing `needle` have arrived.
    pub fn wait_for_count(&self, needle: &str, n: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lines.lock().unwrap_or_else(|e| e.into_inner());
        let (mut scanned, mut seen) = (0, 0);
        loop {
            seen += lines.iter().skip(scanned).filter(|l| l.contains(needle)).count();
            scanned = lines.len();
            if seen >= n {
                return Ok(());
            }
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                let start = lines.len().saturating_sub(40);
                return Err(format!(
                    "{}: wanted {n} lines with {needle:?}, saw {seen}; last lines:\n{}",
                    self.name,
                    lines[start..].join("\n")
                ));
            };
            lines = self
                .lines
                .arrived
                .wait_timeout(lines, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Lines containing `needle` so far.
    pub fn count(&self, needle: &str) -> usize {
        let lines = self.lines.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().filter(|l| l.contains(needle)).count()
    }

    pub fn output(&self) -> String {
        self.lines
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "kill -{signal} {} failed",
            self.name
        );
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.join_readers();
                    return Ok(status);
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    return Err(format!(
                        "{} still running after {timeout:?}:\n{}",
                        self.name,
                        self.output()
                    ));
                }
                Err(e) => return Err(format!("{}: {e}", self.name)),
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_readers();
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `host:port` in a line such as `... listening on http://127.0.0.1:40123`
/// or `bridge listening on 127.0.0.1:40123 (...)`.
pub fn address_in(line: &str, after: &str) -> String {
    let start = line
        .find(after)
        .map(|i| i + after.len())
        .unwrap_or_else(|| panic!("{after:?} not in {line:?}"));
    let rest = line[start..].trim_start_matches("http://");
    rest.split(|c: char| c.is_whitespace() || c == ')' || c == '/')
        .next()
        .unwrap_or("")
        .to_string()
}

/// A scratch directory for config files, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let unique = format!(
            "reflow-{label}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A port that was free a moment ago, for a peer that must come back on the
/// same port after a restart (port 0 would give it a new one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Proc {
    /// Watches the output for `window` and fails as soon as a line containing
    /// one of `needles` has arrived after `mark`: a negative check with a bound.
    pub fn expect_none_after(&self, mark: usize, needles: &[&str], window: Duration) -> Result<(), String> {
        let deadline = Instant::now() + window;
        let mut lines = self.lines.lines.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(line) = lines
                .iter()
                .skip(mark)
                .find(|l| needles.iter().any(|n| l.contains(n)))
            {
                return Err(format!(
                    "{}: unexpected line {line:?}; output was:\n{}",
                    self.name,
                    lines.join("\n")
                ));
            }
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return Ok(());
            };
            lines = self
                .lines
                .arrived
                .wait_timeout(lines, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Lines containing `needle` that arrived after `mark`.
    pub fn lines_after(&self, mark: usize, needle: &str) -> Vec<String> {
        let lines = self.lines.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .iter()
            .skip(mark)
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }
}

/// A plain HTTP/1.1 GET to `address` (`host:port`): the status code and body.
pub fn http_get(address: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    use std::io::Write;
    let fail = |e: std::io::Error| format!("GET http://{address}{path}: {e}");
    let socket: std::net::SocketAddr = address
        .parse()
        .map_err(|e| format!("{address} is not ip:port: {e}"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&socket, timeout).map_err(fail)?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    stream.set_write_timeout(Some(timeout)).map_err(fail)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(fail)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET http://{address}{path}: no header end in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("GET http://{address}{path}: bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// Calls `check` every `every` until it returns `Ok` or `timeout` has passed;
/// then returns the last error.
pub fn wait_until<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() >= deadline => return Err(format!("after {timeout:?}: {e}")),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// Writes `toml` as `<name>.toml` in `dir` and starts `reflow-peer` on it.
pub fn start_peer(peer_bin: &Path, dir: &TempDir, name: &str, toml: &str, args: &[&str]) -> Proc {
    let path = dir.write(&format!("{name}.toml"), toml);
    let path = path.to_string_lossy().to_string();
    let mut all = vec!["--config", path.as_str()];
    all.extend_from_slice(args);
    Proc::spawn(name, peer_bin, &all, &[], Echo::Quiet)
}

/// The bridge address a peer logged at start (`bridge listening on ...`).
pub fn bridge_address(peer: &Proc, timeout: Duration) -> String {
    let line = peer
        .wait_for("bridge listening on", timeout)
        .unwrap_or_else(|e| panic!("{e}"));
    address_in(&line, "bridge listening on ")
}

/// Numbered traffic from a thread of its own: `send(seq)` is called for
/// seq = 0, 1, 2… every `period` (no catching up after a slow send), and
/// each outcome is kept. Dropping it stops the thread.
pub struct Traffic {
    next: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    outcomes: Arc<Mutex<Outcomes>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What happened to each numbered send.
#[derive(Default, Clone, Debug)]
pub struct Outcomes {
    /// Sequence numbers whose send returned `Ok` (queued, not yet delivered).
    pub accepted: Vec<u64>,
    /// Sequence numbers whose send returned an error.
    pub refused: Vec<u64>,
    /// The first error text of each kind, for reports.
    pub errors: Vec<String>,
}

impl Traffic {
    pub fn start(
        period: Duration,
        mut send: impl FnMut(u64) -> Result<(), String> + Send + 'static,
    ) -> Traffic {
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let (n, s, o) = (next.clone(), stop.clone(), outcomes.clone());
        let thread = std::thread::Builder::new()
            .name("test-traffic".into())
            .spawn(move || {
                let mut due = Instant::now();
                while !s.load(Ordering::Acquire) {
                    let seq = n.load(Ordering::Acquire);
                    let result = send(seq);
                    {
                        let mut o = o.lock().unwrap_or_else(|e| e.into_inner());
                        match result {
                            Ok(()) => o.accepted.push(seq),
                            Err(e) => {
                                o.refused.push(seq);
                                let kind = e.split(':').next().unwrap_or("").to_string();
                                if !o.errors.iter().any(|k| k.starts_with(&kind)) {
                                    o.errors.push(e);
                                }
                            }
                        }
                    }
                    // Published after the outcome: every seq below `next` has one.
                    n.store(seq + 1, Ordering::Release);
                    due = (due + period).max(Instant::now());
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            })
            .expect("spawn the traffic thread");
        Traffic {
            next,
            stop,
            outcomes,
            thread: Some(thread),
        }
    }

    /// The next sequence number to be sent: every one below it has an outcome.
    pub fn next_seq(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    pub fn outcomes(&self) -> Outcomes {
        self.outcomes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops sending and returns every outcome.
    pub fn stop(mut self) -> Outcomes {
        self.halt();
        self.outcomes()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The accounting of numbered traffic over one span of sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Sends that returned `Ok`.
    pub sent: usize,
    /// Sends that returned an error (nothing was queued).
    pub refused: usize,
    /// Distinct sequence numbers that arrived.
    pub delivered: usize,
    /// Sent but never arrived, in increasing order.
    pub lost: Vec<u64>,
    /// Arrivals of a sequence number already seen.
    pub duplicates: usize,
    /// Arrivals not greater than the arrival before them.
    pub out_of_order: usize,
}

impl Tally {
    /// Counts the sequence numbers in `span` given what was sent and what
    /// arrived (in arrival order).
    pub fn of(outcomes: &Outcomes, arrived: &[u64], span: std::ops::Range<u64>) -> Tally {
        use std::collections::HashSet;
        let arrived: Vec<u64> = arrived.iter().copied().filter(|s| span.contains(s)).collect();
        let mut seen = HashSet::new();
        let duplicates = arrived.iter().filter(|s| !seen.insert(**s)).count();
        let out_of_order = arrived.windows(2).filter(|w| w[1] <= w[0]).count();
        let sent: Vec<u64> = outcomes
            .accepted
            .iter()
            .copied()
            .filter(|s| span.contains(s))
            .collect();
        let lost = sent.iter().copied().filter(|s| !seen.contains(s)).collect();
        Tally {
            sent: sent.len(),
            refused: outcomes.refused.iter().filter(|s| span.contains(s)).count(),
            delivered: seen.len(),
            lost,
            duplicates,
            out_of_order,
        }
    }

    /// `sent 1200, refused 0, delivered 1200, lost 0, duplicates 0, in order`.
    pub fn summary(&self) -> String {
        let lost = match (self.lost.first(), self.lost.last()) {
            (Some(first), Some(last)) => format!("{} (#{first}..=#{last})", self.lost.len()),
            _ => "0".to_string(),
        };
        let order = if self.out_of_order == 0 {
            "in order".to_string()
        } else {
            format!("{} out of order", self.out_of_order)
        };
        format!(
            "sent {}, refused {}, delivered {}, lost {lost}, duplicates {}, {order}",
            self.sent, self.refused, self.delivered, self.duplicates
        )
    }
}

/// Resident memory of process `pid` (`self` for this one) in KiB, from
/// `/proc/<pid>/status` (`VmRSS`).
pub fn vm_rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Threads of process `pid` (`self` for this one), from `/proc/<pid>/task`.
pub fn task_count(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The lines of `proc_` that arrived from `mark` on, and the mark to read
/// on from next time: for following a busy process without reading its
/// whole output again.
pub fn lines_since(proc_: &Proc, mark: usize) -> (Vec<String>, usize) {
    let lines = proc_.lines.lines.lock().unwrap_or_else(|e| e.into_inner());
    let new = lines.iter().skip(mark).cloned().collect();
    (new, lines.len().max(mark))
}

/// The example program `name`, built (if it is not up to date) into the
/// target directory this test runs from, with the same profile: a test
/// cannot ask cargo for an example's path the way it can for a binary's.
/// Builds run one at a time.
pub fn example_bin(name: &str) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    // <target>/<profile>/deps/<this test>
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("a target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(cargo)
        .arg("build")
        .arg("--quiet")
        .args(["--example", name, "--profile", profile])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build example {name}: {e}"));
    assert!(
        output.status.success(),
        "cargo build --example {name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = profile_dir.join("examples").join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}
