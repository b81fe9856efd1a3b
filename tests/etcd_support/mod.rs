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

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

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
            agent: agent(),
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

    /// Waits until every member still running is healthy (after a kill:
    /// until the others have elected a leader).
    ///
    /// # Panics
    /// When one is not within [`START_PATIENCE`].
    pub fn wait_quorum(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_some() {
                self.wait_healthy(i, START_PATIENCE)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
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

    /// The index of the member that leads the cluster now (by
    /// `/v3/maintenance/status`: a member whose id is the leader's).
    pub fn leader(&self) -> usize {
        let mut seen = Vec::new();
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            let answer = self.request_raw(i, "POST", "/v3/maintenance/status", Some("{}"));
            let Ok((200, text)) = answer else {
                seen.push(format!("{answer:?}"));
                continue;
            };
            let status: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            // uint64 ids, as JSON strings.
            let id = status["header"]["member_id"].as_str().unwrap_or_default();
            if !id.is_empty() && status["leader"].as_str() == Some(id) {
                return i;
            }
            seen.push(text);
        }
        panic!("no member leads now: {seen:#?}");
    }

    /// SIGKILLs every member.
    pub fn kill_all(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }

    /// Index of the first member still running (checks go there).
    fn live_member(&self) -> usize {
        self.members
            .iter()
            .position(|m| m.child.is_some())
            .expect("an etcd member still running")
    }

    /// `POST path` with a JSON `body` to a live member; the status and body.
    fn request_raw(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        let url = format!("{}{path}", self.members[i].client_url());
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            (_, body) => {
                let mut request = self.agent.post(&url).header("Content-Type", "application/json");
                if let Some(token) = &self.token {
                    request = request.header("Authorization", token);
                }
                request.send(body.unwrap_or("{}"))
            }
        };
        let mut response = result.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{method} {url}: reading the body: {e}"))?;
        Ok((status, text))
    }

    /// `POST path` with `body` to the gateway of a live member; the answer
    /// as JSON.
    ///
    /// A request that etcd could not serve for now (no reachable member, or
    /// 503 while a cluster elects a new leader) is tried again, up to
    /// [`START_PATIENCE`].
    ///
    /// # Panics
    /// On any other status but 200 (the text has etcd's error).
    pub fn call(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            let i = self.live_member();
            let outcome = self.request_raw(i, "POST", path, Some(&body.to_string()));
            let retry = match outcome {
                Ok((200, text)) => {
                    return serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}"));
                }
                Ok((503, text)) => format!("503 {text}"),
                Ok((status, text)) => panic!("POST {path} {body}: {status} {text}"),
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "POST {path} {body}: etcd did not answer within {START_PATIENCE:?}: {retry}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Puts `value` under `key` (no lease).
    pub fn put(&self, key: &str, value: &str) {
        self.call(
            "/v3/kv/put",
            serde_json::json!({"key": BASE64.encode(key), "value": BASE64.encode(value)}),
        );
    }

    /// The value under `key` and the id of its lease (0: none), if present.
    pub fn get(&self, key: &str) -> Option<(String, i64)> {
        let answer = self.call("/v3/kv/range", serde_json::json!({"key": BASE64.encode(key)}));
        let kv = answer["kvs"].as_array()?.first()?.clone();
        Some((decode(&kv["value"]), int(&kv["lease"])))
    }

    /// Every key under `prefix`, in key order.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let answer = self.call(
            "/v3/kv/range",
            serde_json::json!({
                "key": BASE64.encode(prefix),
                "range_end": BASE64.encode(prefix_end(prefix)),
                "keys_only": true,
            }),
        );
        answer["kvs"]
            .as_array()
            .map(|kvs| kvs.iter().map(|kv| decode(&kv["key"])).collect())
            .unwrap_or_default()
    }

    /// The TTL a lease was granted with, in seconds (`None`: expired or unknown).
    pub fn lease_granted_ttl(&self, lease: i64) -> Option<i64> {
        let answer = self.call(
            "/v3/lease/timetolive",
            serde_json::json!({"ID": lease.to_string()}),
        );
        let ttl = int(&answer["TTL"]);
        (ttl > 0).then(|| int(&answer["grantedTTL"]))
    }

    /// Turns on etcd auth: a `root` user (with `root_password`), and a user
    /// `user` with `password` who may read and write the keys under `prefix`
    /// only. From then on the helpers authenticate as root.
    pub fn enable_auth(&mut self, root_password: &str, user: &str, password: &str, prefix: &str) {
        self.call(
            "/v3/auth/user/add",
            serde_json::json!({"name": "root", "password": root_password}),
        );
        self.call("/v3/auth/role/add", serde_json::json!({"name": "root"}));
        self.call(
            "/v3/auth/user/grant",
            serde_json::json!({"user": "root", "role": "root"}),
        );
        self.call(
            "/v3/auth/user/add",
            serde_json::json!({"name": user, "password": password}),
        );
        self.call("/v3/auth/role/add", serde_json::json!({"name": user}));
        self.call(
            "/v3/auth/role/grant",
            serde_json::json!({
                "name": user,
                "perm": {
                    "permType": "READWRITE",
                    "key": BASE64.encode(prefix),
                    "range_end": BASE64.encode(prefix_end(prefix)),
                },
            }),
        );
        self.call(
            "/v3/auth/user/grant",
            serde_json::json!({"user": user, "role": user}),
        );
        self.call("/v3/auth/enable", serde_json::json!({}));
        let answer = self.call(
            "/v3/auth/authenticate",
            serde_json::json!({"name": "root", "password": root_password}),
        );
        let token = answer["token"].as_str().expect("a token").to_string();
        self.token = Some(token);
    }

    /// A raw gateway request without the helpers' token: the status and body
    /// (for checking what etcd refuses).
    pub fn post_anonymous(&self, path: &str, body: serde_json::Value) -> (u16, String) {
        let url = format!("{}{path}", self.members[self.live_member()].client_url());
        let mut response = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap_or_default())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The gateway's int64 fields are JSON strings; absent means 0.
fn int(value: &serde_json::Value) -> i64 {
    match value {
        serde_json::Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not an integer: {s:?}")),
        serde_json::Value::Number(n) => n.as_i64().expect("an i64"),
        _ => 0,
    }
}

/// A base64 field as text.
fn decode(value: &serde_json::Value) -> String {
    let bytes = BASE64
        .decode(value.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{value} is not base64: {e}"));
    String::from_utf8(bytes).expect("UTF-8")
}

/// The first key after every key that starts with `prefix` (etcd's range end).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_global(Some(Duration::from_secs(10)))
        .proxy(None)
        .http_status_as_error(false)
        .build()
        .into()
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
