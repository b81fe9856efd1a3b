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
        loop {
            if let Some(line) = lines.iter().skip(mark).find(|l| l.contains(needle)) {
                return Ok(line.clone());
            }
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
