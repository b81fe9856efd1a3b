//! Real etcd for the tests: one member or a three-member cluster on free
//! loopback ports, each with a temporary data directory that is removed on
//! drop; a member can be SIGKILLed on demand. Checks read and write etcd
//! through its v3 JSON gateway (keys and values in base64), independently of
//! the library's own etcd client.
//!
//! Where `etcd` is not installed the tests print a line and pass, unless
//! `REFLOW_ETCD_REQUIRED` is set (CI sets it), where they fail.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod gateway;

/// Set (to anything), a missing `etcd` fails the test instead of skipping it.
pub const REQUIRED: &str = "REFLOW_ETCD_REQUIRED";

/// How long a member may take to report healthy (a cluster: to elect a leader).
pub const START_PATIENCE: Duration = Duration::from_secs(30);

/// Attempts at starting a cluster: ports are picked free but another process
/// may take one before etcd binds it.
const START_ATTEMPTS: usize = 4;

/// The `etcd` binary, or `None` after saying the test is skipped.
///
/// # Panics
/// When `etcd` is missing and `REFLOW_ETCD_REQUIRED` is set.
pub fn etcd_binary(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os(REQUIRED).is_none(),
            "{test}: etcd is not installed (apt-get install etcd-server) and {REQUIRED} is set"
        );
        println!("{test}: skipped: etcd is not installed (apt-get install etcd-server to run it)");
    }
    found
}

/// One etcd process.
struct Member {
    name: String,
    client_port: u16,
    /// The binary and its arguments, to start it again.
    binary: PathBuf,
    args: Vec<String>,
    data: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts the process, its output appended to its log file.
    fn spawn(&mut self) -> Result<(), String> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("open {}: {e}", self.log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The last lines etcd printed, for failure reports.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running etcd cluster of one or three members; every member is killed and
/// the data directory removed on drop.
pub struct Etcd {
    members: Vec<Member>,
    dir: PathBuf,
    agent: ureq::Agent,
    /// A token of `/v3/auth/authenticate`, sent once auth is enabled.
    token: Option<String>,
}

impl Etcd {
    /// One member, healthy; `None` when etcd is not installed (see [`etcd_binary`]).
    pub fn single(test: &str) -> Option<Etcd> {
        let binary = etcd_binary(test)?;
        Some(Etcd::start(&binary, test, 1))
    }

    /// Three members with a short heartbeat and election timeout, all
    /// healthy with a leader.
    pub fn cluster(test: &str) -> Option<Etcd> {
        let binary = etcd_binary(test)?;
        Some(Etcd::start(&binary, test, 3))
    }

    fn start(binary: &Path, test: &str, size: usize) -> Etcd {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Etcd::try_start(binary, test, size) {
                Ok(etcd) => return etcd,
                Err(e) => failures.push(e),
            }
        }
        panic!(
            "{test}: etcd did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    fn try_start(binary: &Path, test: &str, size: usize) -> Result<Etcd, String> {
        let dir = scratch_dir(test);
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members: Vec::new(),
            dir: dir.clone(),
            agent: gateway::agent(),
            token: None,
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let data = dir.join(&name);
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut args: Vec<String> = vec!["--name".into(), name.clone(), "--data-dir".into()];
            args.push(data.to_string_lossy().into_owned());
            for (flag, value) in [
                ("--listen-client-urls", client_url.as_str()),
                ("--advertise-client-urls", &client_url),
                ("--listen-peer-urls", &peer_url),
                ("--initial-advertise-peer-urls", &peer_url),
                ("--initial-cluster", &initial_cluster),
                ("--initial-cluster-state", "new"),
                (
                    "--initial-cluster-token",
                    &format!("reflow-test-{}", std::process::id()),
                ),
                // Fast elections, so that losing the leader costs well under
                // a second. The lease TTL floor follows (1.5 election timeouts).
                ("--heartbeat-interval", "50"),
                ("--election-timeout", "500"),
            ] {
                args.push(flag.into());
                args.push(value.into());
            }
            let mut member = Member {
                log: dir.join(format!("{name}.log")),
                name,
                client_port: *client,
                binary: binary.to_path_buf(),
                args,
                data,
                child: None,
            };
            member.spawn()?;
            etcd.members.push(member);
        }
        for i in 0..size {
            etcd.wait_healthy(i, START_PATIENCE)?;
        }
        Ok(etcd)
    }

    /// Waits until member `i` answers `GET /health` with `"health":"true"`
    /// (for a cluster member: it sees a leader and a quorum).
    ///
    /// # Errors
    /// When the member exits or the deadline passes; the text holds etcd's last lines.
    pub fn wait_healthy(&mut self, i: usize, patience: Duration) -> Result<(), String> {
        let deadline = Instant::now() + patience;
        loop {
            let member = &mut self.members[i];
            if let Some(child) = member.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "etcd {} exited ({status}):\n{}",
                    member.name,
                    member.log_tail()
                ));
            }
            let last = match self.request_raw(i, "GET", "/health", None) {
                Ok((200, body)) if body.contains("\"health\":\"true\"") => return Ok(()),
                Ok((status, body)) => format!("{status} {body}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                let member = &self.members[i];
                return Err(format!(
                    "etcd {} not healthy within {patience:?} (last answer: {last}):\n{}",
                    member.name,
                    member.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client URL of member `i`, `http://127.0.0.1:PORT`.
    pub fn client_url(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    /// `etcd://127.0.0.1:PORT` + `prefix` (may be empty: the default prefix)
    /// for every member, in order.
    pub fn endpoints(&self, prefix: &str) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("etcd://127.0.0.1:{}{prefix}", m.client_port))
            .collect()
    }

    /// The endpoints as a TOML array: `["etcd://…", "etcd://…"]`.
    pub fn endpoints_toml(&self, prefix: &str) -> String {
        let quoted: Vec<String> = self
            .endpoints(prefix)
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    /// SIGKILLs member `i` (no clean leave: the others see it vanish).
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again on its ports after a kill, with its data
    /// (`wipe` false) or with none, as if its disk were lost (`wipe` true; for
    /// a single member: an empty cluster). Waits until it is healthy.
    ///
    /// # Panics
    /// When it does not come back within [`START_PATIENCE`] (its ports may
    /// have been taken meanwhile).
    pub fn restart(&mut self, i: usize, wipe: bool) {
        let member = &mut self.members[i];
        member.kill();
        if wipe {
            std::fs::remove_dir_all(&member.data).expect("remove the member's data");
        }
        member.spawn().unwrap_or_else(|e| panic!("{e}"));
        self.wait_healthy(i, START_PATIENCE)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGKILLs every member.
    pub fn kill_all(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port that was free a moment ago (etcd binds it itself; a clash is
/// retried by starting again).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn scratch_dir(label: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!(
        "reflow-etcd-{label}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&path).expect("create the etcd scratch directory");
    path
}
