//! Requests to an etcd cluster's v3 JSON gateway (`POST /v3/...`, the
//! protobuf messages as JSON: keys and values in base64, 64-bit integers as
//! strings), with failover between members and etcd's password
//! authentication.
//!
//! Failover: a request goes to the member that answered last; when the
//! transport fails or the member says it cannot serve (gRPC `Unavailable`
//! or `DeadlineExceeded`, an HTTP 5xx), the next member gets the same
//! request at once. An answer from the cluster itself (a refused password,
//! a lease it does not know) is final: every member would say the same.
//!
//! A write (a Raft proposal: lease grant, put, revoke) that a follower
//! forwards to a leader dying at that moment is lost, and the follower
//! never answers it: etcd gives up only after its own request timeout
//! (5 s plus two election timeouts). So a write gets [`WRITE_PATIENCE`]
//! per member, doubled at each attempt it is cut short, all within one
//! `request_timeout`: once a new leader is elected the same write goes
//! through at once. Reads need no such care: a linearizable range read
//! answers `leader changed` within the election, and a lease keep-alive
//! waits for the new leader.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::config::EtcdCredentials;
use super::super::error::DiscoveryError;
use crate::names::escaped;
use crate::secret::Secret;

/// Largest answer read for anything but a range: an etcd header and a few ids.
pub(crate) const SMALL_ANSWER_BYTES: u64 = 64 * 1024;

/// How long a write waits for a member before the same write goes to the
/// next member; each further cut doubles it. A healthy write is answered in
/// milliseconds; one lost with a dying leader is never answered.
pub(crate) const WRITE_PATIENCE: Duration = Duration::from_secs(1);

/// Whether a request is a Raft proposal, which a member may never answer
/// when the leader dies under it (see the module's notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A range read or a lease keep-alive.
    Read,
    /// A lease grant, a put, a revoke.
    Write,
}

/// gRPC status codes that mean "this member cannot serve now, try another"
/// (etcd's gateway carries them in the error body's `code`).
const CODE_DEADLINE_EXCEEDED: i64 = 4;
const CODE_UNAVAILABLE: i64 = 14;
/// gRPC `Unauthenticated`: etcd's answer to an expired or unknown token.
const CODE_UNAUTHENTICATED: i64 = 16;

/// How one member's attempt failed.
enum Failure {
    /// The member could not serve: another one may.
    Member(String),
    /// The cluster answered: another member would say the same.
    Cluster(String),
}

/// The members of one etcd cluster and the session with it.
pub(crate) struct Gateway {
    agent: ureq::Agent,
    /// `http://host:port`, as configured.
    members: Vec<String>,
    /// The member that answered last; requests start there.
    current: usize,
    /// The client's `request_timeout`: what one write may take in all.
    request_timeout: Duration,
    credentials: Option<EtcdCredentials>,
    /// etcd's auth token, taken with the credentials on first use and
    /// again when etcd says it expired.
    token: Option<Secret>,
}

impl Gateway {
    /// A gateway to `members` (at least one), authenticating with
    /// `credentials` when set; `request_timeout` bounds each write in all.
    pub(crate) fn new(
        agent: ureq::Agent,
        members: Vec<String>,
        credentials: Option<EtcdCredentials>,
        request_timeout: Duration,
    ) -> Gateway {
        debug_assert!(!members.is_empty());
        Gateway {
            agent,
            members,
            current: 0,
            request_timeout,
            credentials,
            token: None,
        }
    }

    /// The members, as configured.
    pub(crate) fn members(&self) -> &[String] {
        &self.members
    }

    /// The member the next request starts at (`http://host:port`).
    pub(crate) fn current_member(&self) -> &str {
        &self.members[self.current]
    }

    /// Sends `body` to `path` (`/v3/kv/put`…), member after member until
    /// one serves it, and returns the answer's JSON (read up to `limit`
    /// bytes). A read tries each member once, bounded by `deadline` when
    /// set and by the agent's `request_timeout` per attempt otherwise. A
    /// write to several members shares one budget, `deadline` or one
    /// `request_timeout`, and gives each attempt [`WRITE_PATIENCE`] (doubled
    /// after each cut); it goes round the members again while an attempt
    /// was cut short and time is left.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::Etcd`] with etcd's text for an answer of the
    /// cluster's (an `etcdserver: …` error) or when the only member failed;
    /// [`DiscoveryError::EtcdUnreachable`] naming every failed attempt
    /// when none could serve.
    pub(crate) fn call(
        &mut self,
        path: &str,
        body: &Value,
        limit: u64,
        kind: Kind,
        deadline: Option<Instant>,
    ) -> Result<Value, DiscoveryError> {
        let n = self.members.len();
        // With one member there is nobody to move on to: it gets it all.
        let mut patience = (kind == Kind::Write && n > 1).then(|| WRITE_PATIENCE.min(self.request_timeout));
        let budget = deadline.or_else(|| patience.map(|_| Instant::now() + self.request_timeout));
        let mut failures = Vec::new();
        let mut cut_in_pass = false;
        for step in 0usize.. {
            if step > 0 && step % n == 0 {
                if !cut_in_pass || budget.is_some_and(|b| Instant::now() >= b) {
                    break;
                }
                cut_in_pass = false;
            }
            let at = (self.current + step) % n;
            let now = Instant::now();
            if budget.is_some_and(|b| now >= b) {
                failures.push((self.members[at].clone(), "no time left".to_string()));
                continue;
            }
            let attempt = match (patience, budget) {
                (Some(p), Some(b)) => Some(b.min(now + p)),
                _ => budget,
            };
            match self.call_member(at, path, body, limit, attempt) {
                Ok(answer) => {
                    if at != self.current {
                        log::warn!(
                            "{}; carrying on with member {}",
                            FailureLog(&failures),
                            self.members[at]
                        );
                        self.current = at;
                    }
                    return Ok(answer);
                }
                Err(Failure::Cluster(message)) => {
                    return Err(DiscoveryError::Etcd {
                        member: self.members[at].clone(),
                        message,
                    });
                }
                Err(Failure::Member(message)) => {
                    let cut = match (patience, attempt, budget) {
                        (Some(p), Some(a), Some(b)) if a < b && Instant::now() >= a => Some(p),
                        _ => None,
                    };
                    let message = match cut {
                        Some(p) => {
                            cut_in_pass = true;
                            patience = Some(p * 2);
                            format!("no answer within {} ms", p.as_millis())
                        }
                        None => message,
                    };
                    failures.push((self.members[at].clone(), message));
                }
            }
        }
        match failures.len() {
            1 => {
                let (member, message) = failures.remove(0);
                Err(DiscoveryError::Etcd { member, message })
            }
            _ => Err(DiscoveryError::EtcdUnreachable { failures }),
        }
    }

    /// One member's attempt, authenticating first when needed and once
    /// more when etcd says the token is no longer good.
    fn call_member(
        &mut self,
        at: usize,
        path: &str,
        body: &Value,
        limit: u64,
        deadline: Option<Instant>,
    ) -> Result<Value, Failure> {
        if self.credentials.is_some() && self.token.is_none() {
            self.authenticate(at, deadline)?;
        }
        match self.post(at, path, body, limit, deadline) {
            Err(Answer::Error { code, message })
                if code == CODE_UNAUTHENTICATED && self.credentials.is_some() =>
            {
                log::debug!(
                    "etcd member {}: {}; authenticating again",
                    self.members[at],
                    message
                );
                self.token = None;
                self.authenticate(at, deadline)?;
                self.post(at, path, body, limit, deadline)
                    .map_err(Answer::into_failure)
            }
            other => other.map_err(Answer::into_failure),
        }
    }

    /// Takes a token for the credentials (`/v3/auth/authenticate`).
    fn authenticate(&mut self, at: usize, deadline: Option<Instant>) -> Result<(), Failure> {
        let Some(credentials) = &self.credentials else {
            return Ok(());
        };
        let body = serde_json::json!({
            "name": credentials.user,
            "password": credentials.password.expose(),
        });
        self.token = None;
        let answer = self
            .post(at, "/v3/auth/authenticate", &body, SMALL_ANSWER_BYTES, deadline)
            .map_err(Answer::into_failure)?;
        match answer.get("token").and_then(Value::as_str) {
            Some(token) if !token.is_empty() => {
                self.token = Some(Secret::from(token));
                Ok(())
            }
            _ => Err(Failure::Cluster(
                "etcd answered the authentication without a token (is auth enabled on the cluster?)".into(),
            )),
        }
    }

    /// One HTTP request to one member.
    fn post(
        &self,
        at: usize,
        path: &str,
        body: &Value,
        limit: u64,
        deadline: Option<Instant>,
    ) -> Result<Value, Answer> {
        let url = format!("{}{path}", self.members[at]);
        let mut request = self.agent.post(&url).header("Content-Type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", token.expose());
        }
        if let Some(deadline) = deadline {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            request = request.config().timeout_global(Some(left)).build();
        }
        let text = serde_json::to_vec(body).unwrap_or_default();
        let mut response = request
            .send(&text[..])
            .map_err(|e| Answer::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(if status == 200 { limit } else { SMALL_ANSWER_BYTES })
            .read_to_vec()
            .map_err(|e| Answer::Unreachable(format!("reading the answer: {e}")))?;
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status == 200 {
            return json
                .ok_or_else(|| Answer::Garbled(format!("{path} answered with a body that is not JSON")));
        }
        let text = json.as_ref().and_then(|v| {
            v.get("error")
                .or_else(|| v.get("message"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        match (
            text,
            json.as_ref().and_then(|v| v.get("code")).and_then(Value::as_i64),
        ) {
            (Some(message), Some(code)) => Err(Answer::Error { code, message }),
            _ if status >= 500 => Err(Answer::Unreachable(format!("answered HTTP {status}"))),
            _ => Err(Answer::Garbled(format!(
                "{path} answered HTTP {status}: {} (is this an etcd v3 member?)",
                escaped(&String::from_utf8_lossy(&bytes)).max_chars(256)
            ))),
        }
    }
}

/// The failed attempts of one request in a log line: `etcd member A failed
/// (why), then member B (why)`.
struct FailureLog<'a>(&'a [(String, String)]);

impl std::fmt::Display for FailureLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (member, why)) in self.0.iter().enumerate() {
            let lead = if i == 0 { "etcd member" } else { ", then member" };
            let failed = if i == 0 { " failed" } else { "" };
            write!(f, "{lead} {member}{failed} ({})", escaped(why).max_chars(256))?;
        }
        Ok(())
    }
}

/// What one HTTP request came to, short of success.
enum Answer {
    /// No answer: refused, timed out, cut.
    Unreachable(String),
    /// An etcd error: its gRPC code and text (`etcdserver: …`).
    Error { code: i64, message: String },
    /// An answer that is not etcd's.
    Garbled(String),
}

impl Answer {
    fn into_failure(self) -> Failure {
        match self {
            Answer::Unreachable(why) => Failure::Member(why),
            Answer::Error { code, message } if code == CODE_UNAVAILABLE || code == CODE_DEADLINE_EXCEEDED => {
                Failure::Member(message)
            }
            Answer::Error { message, .. } if message.contains("user name is empty") => Failure::Cluster(
                format!("{message} (the cluster has auth enabled: set the etcd user and password)"),
            ),
            Answer::Error { message, .. } => Failure::Cluster(message),
            // Something else answers at this address: another member may
            // still be etcd.
            Answer::Garbled(why) => Failure::Member(why),
        }
    }
}

/// A 64-bit integer of etcd's JSON, which writes them as strings (and
/// leaves out zeros).
pub(crate) fn int64(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::String(text) => text.parse().ok(),
        number => number.as_i64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_integers_are_read_from_strings_and_numbers() {
        let v = serde_json::json!({"ID": "7587860716939004353", "TTL": 60, "bad": "x"});
        assert_eq!(int64(v.get("ID")), Some(7_587_860_716_939_004_353));
        assert_eq!(int64(v.get("TTL")), Some(60));
        assert_eq!(int64(v.get("bad")), None);
        assert_eq!(int64(v.get("missing")), None);
    }

    #[test]
    fn a_failover_line_names_every_failed_attempt() {
        let failures = [
            ("http://a:2379".to_string(), "Connection refused".to_string()),
            (
                "http://b:2379".to_string(),
                "no answer within 1000 ms".to_string(),
            ),
        ];
        assert_eq!(
            FailureLog(&failures).to_string(),
            "etcd member http://a:2379 failed (Connection refused), then member http://b:2379 \
             (no answer within 1000 ms)"
        );
        assert_eq!(
            FailureLog(&failures[..1]).to_string(),
            "etcd member http://a:2379 failed (Connection refused)"
        );
    }

    #[test]
    fn only_a_member_that_cannot_serve_sends_the_request_on() {
        let member = |a: Answer| matches!(a.into_failure(), Failure::Member(_));
        assert!(member(Answer::Unreachable("refused".into())));
        assert!(member(Answer::Error {
            code: CODE_UNAVAILABLE,
            message: "etcdserver: no leader".into()
        }));
        assert!(!member(Answer::Error {
            code: 3,
            message: "etcdserver: authentication failed, invalid user ID or password".into()
        }));
        assert!(!member(Answer::Error {
            code: 5,
            message: "etcdserver: requested lease not found".into()
        }));
    }
}
