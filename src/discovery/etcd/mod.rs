//! An etcd cluster as a discovery [`Backend`], through etcd's v3 JSON
//! gateway (`docs/discovery.md`, "Backends").
//!
//! Key layout: `PREFIX + network_id` (prefix `/reflow/networks/` unless
//! the endpoint names another) holds the same JSON as a `GET /networks`
//! entry, `last_seen` stamped by the registering peer's clock when it wrote
//! the entry. The key is attached to a lease whose TTL is the entry TTL;
//! each tick keeps the lease alive, and the entry is written only when the
//! lease is new or the roster shows the key missing or held by another
//! instance: a write per tick would add a revision to etcd's history every
//! refresh of every peer, which etcd keeps until it is compacted (no
//! compaction by default). A clean stop revokes the lease,
//! which deletes the entry at once; a killed peer's entry goes when its
//! lease lapses. A newer instance of the network writes the key under its
//! own lease, so an older instance's late revoke never removes it.
//!
//! A wildcard endpoint (`0.0.0.0:PORT`, `[::]:PORT`) is written as this
//! host's address toward the member, with the port: the source address a
//! discovery server would have listed it under. etcd sees no source
//! address, and an entry others cannot dial is no use to them.

mod gateway;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use self::gateway::{Gateway, Kind, SMALL_ANSWER_BYTES, int64};
use super::backend::{Backend, Deregistered, Listing};
use super::config::EtcdCredentials;
use super::error::DiscoveryError;
use super::info::{NetworkInfo, RegistrationInfo, resolve_wildcard};
use crate::clock::format_rfc3339;
use crate::names::escaped;

/// Most entries read from the prefix in one roster (the default
/// `--max-entries` of `reflow-discovery`).
const MAX_ENTRIES: u64 = 10_000;
/// Largest roster answer read (base64 makes it a third larger than the
/// server's JSON).
const MAX_ROSTER_BYTES: u64 = 24 * 1024 * 1024;

/// One etcd cluster holding the roster under one prefix.
pub(crate) struct EtcdBackend {
    /// `etcd http://a:2379,http://b:2379`, for log lines.
    name: String,
    gateway: Gateway,
    prefix: String,
    me: RegistrationInfo,
    /// The endpoint of the entry last written: `me.endpoint`, or the
    /// address its wildcard was replaced by.
    endpoint: String,
    /// The lease TTL, whole seconds.
    ttl_secs: u64,
    /// The lease this peer's entry is attached to, once granted.
    lease: Option<i64>,
    /// The entry is in etcd under `lease`, as far as the last roster showed.
    written: bool,
    /// The last roster read stopped at [`MAX_ENTRIES`] (said once, at warn,
    /// each time it starts to).
    truncated: bool,
}

impl EtcdBackend {
    /// A backend over `members` (`http://host:port`, at least one), keeping
    /// `me` under `prefix` with leases of `ttl` (rounded up to whole seconds);
    /// `request_timeout` bounds each write in all.
    pub(crate) fn new(
        agent: ureq::Agent,
        members: Vec<String>,
        prefix: String,
        credentials: Option<EtcdCredentials>,
        me: RegistrationInfo,
        ttl: Duration,
        request_timeout: Duration,
    ) -> EtcdBackend {
        let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        EtcdBackend {
            name: format!("etcd {}", members.join(",")),
            gateway: Gateway::new(agent, members, credentials, request_timeout),
            prefix,
            endpoint: me.endpoint.clone(),
            me,
            ttl_secs: ttl_secs.max(1),
            lease: None,
            written: false,
            truncated: false,
        }
    }

    fn key(&self) -> String {
        format!("{}{}", self.prefix, self.me.network_id)
    }

    /// A new lease of the entry TTL.
    fn grant(&mut self) -> Result<i64, DiscoveryError> {
        let answer = self.gateway.call(
            "/v3/lease/grant",
            &json!({ "TTL": self.ttl_secs }),
            SMALL_ANSWER_BYTES,
            Kind::Write,
            None,
        )?;
        match int64(answer.get("ID")) {
            Some(id) if id != 0 => {
                log::debug!("{}: lease {id:x} granted for {} s", self.name, self.ttl_secs);
                Ok(id)
            }
            _ => Err(self.garbled("/v3/lease/grant answered without a lease id")),
        }
    }

    /// Renews `lease`; false when etcd no longer has it (it lapsed while
    /// the cluster was out of reach, say).
    fn keep_alive(&mut self, lease: i64) -> Result<bool, DiscoveryError> {
        let answer = self.gateway.call(
            "/v3/lease/keepalive",
            &json!({ "ID": lease.to_string() }),
            SMALL_ANSWER_BYTES,
            Kind::Read,
            None,
        )?;
        // etcd leaves a zero TTL out: a lease it does not know.
        Ok(int64(answer.get("result").and_then(|r| r.get("TTL"))).unwrap_or(0) > 0)
    }

    /// Writes the entry under `lease`.
    fn put(&mut self, lease: i64) -> Result<(), DiscoveryError> {
        self.endpoint = self.endpoint_to_write()?;
        let entry = NetworkInfo {
            network_id: self.me.network_id.clone(),
            instance_id: self.me.instance_id.clone(),
            endpoint: self.endpoint.clone(),
            capabilities: self.me.capabilities.clone(),
            last_seen: format_rfc3339(SystemTime::now()),
        };
        let value =
            serde_json::to_vec(&entry).map_err(|e| DiscoveryError::InvalidRegistration(e.to_string()))?;
        let body = json!({
            "key": BASE64.encode(self.key()),
            "value": BASE64.encode(value),
            "lease": lease.to_string(),
        });
        self.gateway
            .call("/v3/kv/put", &body, SMALL_ANSWER_BYTES, Kind::Write, None)
            .map(drop)
    }

    /// `me.endpoint`, or for a wildcard this host's address toward the
    /// member requests start at, with the port. Said at info when the
    /// replacement is new.
    fn endpoint_to_write(&self) -> Result<String, DiscoveryError> {
        if resolve_wildcard(&self.me.endpoint, IpAddr::V4(Ipv4Addr::LOCALHOST)).is_none() {
            return Ok(self.me.endpoint.clone());
        }
        let member = self.gateway.current_member();
        let resolved = local_address_toward(member).and_then(|ip| {
            resolve_wildcard(&self.me.endpoint, ip).ok_or_else(|| format!("{ip} is no address"))
        });
        let endpoint = resolved.map_err(|why| {
            DiscoveryError::InvalidRegistration(format!(
                "endpoint {:?} is the wildcard address and this host has no address toward etcd \
                 member {member} ({why}); advertise an address other peers can dial",
                escaped(&self.me.endpoint)
            ))
        })?;
        if endpoint != self.endpoint {
            log::info!(
                "{}: the wildcard endpoint {} is written as {endpoint}, this host's address toward \
                 etcd member {member}",
                self.name,
                escaped(&self.me.endpoint)
            );
        }
        Ok(endpoint)
    }

    /// True when `info` is the entry this peer wrote.
    fn is_own_entry(&self, info: &NetworkInfo) -> bool {
        info.network_id == self.me.network_id
            && info.instance_id == self.me.instance_id
            && info.endpoint == self.endpoint
            && info.capabilities == self.me.capabilities
    }

    fn garbled(&self, what: &str) -> DiscoveryError {
        DiscoveryError::Etcd {
            member: self.gateway.members().join(","),
            message: what.to_string(),
        }
    }
}

/// True for etcd's answer about a lease it does not have.
fn lease_not_found(e: &DiscoveryError) -> bool {
    matches!(e, DiscoveryError::Etcd { message, .. } if message.contains("lease not found"))
}

impl Backend for EtcdBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn register(&mut self) -> Result<(), DiscoveryError> {
        let alive = match self.lease {
            Some(lease) => self.keep_alive(lease)?,
            None => false,
        };
        let lease = match self.lease {
            Some(lease) if alive => lease,
            held => {
                if let Some(old) = held {
                    log::info!(
                        "{}: lease {old:x} of this peer lapsed; registering anew",
                        self.name
                    );
                }
                self.lease = None;
                self.written = false;
                let lease = self.grant()?;
                self.lease = Some(lease);
                lease
            }
        };
        if self.written {
            return Ok(());
        }
        let outcome = match self.put(lease) {
            // The lease lapsed between the keep-alive and the put.
            Err(e) if lease_not_found(&e) => {
                self.lease = None;
                let lease = self.grant()?;
                self.lease = Some(lease);
                self.put(lease)
            }
            other => other,
        };
        self.written = outcome.is_ok();
        outcome
    }

    fn roster(&mut self) -> Result<Listing, DiscoveryError> {
        let body = json!({
            "key": BASE64.encode(&self.prefix),
            "range_end": BASE64.encode(prefix_end(self.prefix.as_bytes())),
            "limit": MAX_ENTRIES.to_string(),
        });
        let answer = self
            .gateway
            .call("/v3/kv/range", &body, MAX_ROSTER_BYTES, Kind::Read, None)?;
        let truncated = answer.get("more").and_then(Value::as_bool) == Some(true);
        if truncated && !self.truncated {
            log::warn!(
                "{}: more than {MAX_ENTRIES} keys under {}; read the first {MAX_ENTRIES}",
                self.name,
                escaped(&self.prefix)
            );
        }
        let mut listing = Listing::default();
        let kvs = answer
            .get("kvs")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let mut ours = false;
        for kv in kvs {
            match read_entry(&self.prefix, kv) {
                Ok(info) => {
                    ours |= self.is_own_entry(&info);
                    listing.entries.push(info);
                }
                Err(why) => {
                    listing.unreadable += 1;
                    listing.first_problem.get_or_insert(why);
                }
            }
        }
        self.truncated = truncated;
        if self.written && !ours && !truncated {
            // Deleted by hand, or written over by another instance of this
            // network: the next tick writes it again, as a server's
            // registration would.
            log::info!(
                "{}: the entry of this peer is missing or another instance's; writing it again",
                self.name
            );
            self.written = false;
        }
        Ok(listing)
    }

    fn deregister(&mut self, timeout: Duration) -> Result<Deregistered, DiscoveryError> {
        let Some(lease) = self.lease.take() else {
            return Ok(Deregistered::NothingToRemove);
        };
        // Revoked anyway (the lease may hold nothing, or an entry written
        // since the last roster); said removed only for an entry known held.
        let held = std::mem::replace(&mut self.written, false);
        let deadline = Instant::now() + timeout;
        let body = json!({ "ID": lease.to_string() });
        match self.gateway.call(
            "/v3/lease/revoke",
            &body,
            SMALL_ANSWER_BYTES,
            Kind::Write,
            Some(deadline),
        ) {
            Ok(_) if held => Ok(Deregistered::Removed),
            Ok(_) => Ok(Deregistered::NothingToRemove),
            Err(e) if lease_not_found(&e) => Ok(Deregistered::NothingToRemove),
            Err(e) => Err(e),
        }
    }
}

/// The address this host would send from to reach `member`
/// (`http://host:port`). Connecting a UDP socket sends nothing: the kernel
/// only picks the route, and with it the local address.
fn local_address_toward(member: &str) -> Result<IpAddr, String> {
    let authority = member.strip_prefix("http://").unwrap_or(member);
    let targets = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?;
    let mut why = format!("{authority} resolves to no address");
    for target in targets {
        let any = match target {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let local = UdpSocket::bind(any).and_then(|socket| {
            socket.connect(target)?;
            socket.local_addr()
        });
        match local {
            Ok(local) if !local.ip().is_unspecified() => return Ok(local.ip()),
            Ok(_) => why = format!("no local address routes to {target}"),
            Err(e) => why = format!("no route to {target}: {e}"),
        }
    }
    Err(why)
}

/// One key-value pair of a range answer as a roster entry: the key must be
/// the prefix followed by the entry's own `network_id`.
fn read_entry(prefix: &str, kv: &Value) -> Result<NetworkInfo, String> {
    let field = |name: &str| -> Result<Vec<u8>, String> {
        let text = kv.get(name).and_then(Value::as_str).unwrap_or_default();
        BASE64
            .decode(text)
            .map_err(|e| format!("a {name} that is not base64 ({e})"))
    };
    let key = String::from_utf8(field("key")?).map_err(|_| "a key that is not UTF-8".to_string())?;
    let network_id = key.strip_prefix(prefix).unwrap_or(&key);
    let info: NetworkInfo = serde_json::from_slice(&field("value")?).map_err(|e| {
        format!(
            "key {}: a value that is not an entry ({e})",
            escaped(&key).max_chars(256)
        )
    })?;
    if info.network_id != network_id {
        return Err(format!(
            "key {} holds an entry for network {}",
            escaped(&key).max_chars(256),
            escaped(&info.network_id).max_chars(256)
        ));
    }
    Ok(info)
}

/// The end of etcd's range for every key starting with `prefix`: the
/// prefix with its last byte below 0xff raised by one.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: etcd's "\0" means to the end of the key space.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> Value {
        json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) })
    }

    fn backend(member: &str, endpoint: &str) -> EtcdBackend {
        let me = RegistrationInfo {
            network_id: "alpha".into(),
            instance_id: "alpha-1".into(),
            endpoint: endpoint.into(),
            capabilities: vec![],
        };
        EtcdBackend::new(
            ureq::Agent::new_with_defaults(),
            vec![member.into()],
            "/p/".into(),
            None,
            me,
            Duration::from_secs(60),
            Duration::from_secs(5),
        )
    }

    #[test]
    fn a_wildcard_is_written_at_this_hosts_address_toward_the_member() {
        for wildcard in ["0.0.0.0:9100", "[::]:9100"] {
            let written = backend("http://127.0.0.1:2379", wildcard).endpoint_to_write();
            assert_eq!(written.expect("resolved"), "127.0.0.1:9100", "{wildcard}");
        }
        let written = backend("http://127.0.0.1:2379", "10.0.0.7:9100").endpoint_to_write();
        assert_eq!(written.expect("as advertised"), "10.0.0.7:9100");
        // No address toward the member: refused as before, saying why.
        let err = backend("http://no-port", "0.0.0.0:9100")
            .endpoint_to_write()
            .expect_err("no route")
            .to_string();
        assert!(
            err.contains(
                "is the wildcard address and this host has no address toward etcd member http://no-port"
            ) && err.contains("advertise an address other peers can dial"),
            "{err}"
        );
    }

    #[test]
    fn a_prefix_range_ends_past_its_last_byte() {
        assert_eq!(prefix_end(b"/reflow/networks/"), b"/reflow/networks0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }

    #[test]
    fn an_entry_must_sit_under_its_own_network_id() {
        let good = r#"{"network_id":"alpha","instance_id":"alpha-1","endpoint":"10.0.0.7:9100","last_seen":"2026-01-01T00:00:00.000Z"}"#;
        let info = read_entry("/p/", &kv("/p/alpha", good)).expect("read");
        assert_eq!(info.endpoint, "10.0.0.7:9100");
        let why = read_entry("/p/", &kv("/p/beta", good)).expect_err("wrong key");
        assert!(why.contains("holds an entry for network alpha"), "{why}");
        let why = read_entry("/p/", &kv("/p/alpha", "not json\n")).expect_err("garbage");
        assert!(why.contains("not an entry"), "{why}");
        let why = read_entry("/p/", &json!({"key": "%%%", "value": ""})).expect_err("bad base64");
        assert!(why.contains("not base64"), "{why}");
    }
}
