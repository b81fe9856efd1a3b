//! The checks' side of etcd: requests to its v3 JSON gateway (keys and
//! values in base64, 64-bit integers as JSON strings), made here by hand
//! rather than through the library, so that a test sees what etcd holds.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{Etcd, START_PATIENCE};

impl Etcd {
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

    /// Index of the first member still running (checks go there).
    pub(super) fn live_member(&self) -> usize {
        self.members
            .iter()
            .position(|m| m.child.is_some())
            .expect("an etcd member still running")
    }

    /// `POST path` with a JSON `body` to a live member; the status and body.
    pub(super) fn request_raw(
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

    /// How many times `key` was written since it was created (etcd's
    /// `version`), if present.
    pub fn version(&self, key: &str) -> Option<i64> {
        let answer = self.call("/v3/kv/range", serde_json::json!({"key": BASE64.encode(key)}));
        let kv = answer["kvs"].as_array()?.first()?.clone();
        Some(int(&kv["version"]))
    }

    /// Deletes `key`, as an operator might by hand.
    pub fn delete(&self, key: &str) {
        self.call(
            "/v3/kv/deleterange",
            serde_json::json!({"key": BASE64.encode(key)}),
        );
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

pub(super) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_global(Some(Duration::from_secs(10)))
        .proxy(None)
        .http_status_as_error(false)
        .build()
        .into()
}
