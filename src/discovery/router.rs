//! The discovery HTTP contract, independent of the server that carries it.
//!
//! Two ways in:
//! - [`handle`] mounts the contract in any `tiny_http` application: it answers
//!   `POST /register`, `GET /networks` and `DELETE /networks/{network_id}`
//!   and hands every other request back.
//! - [`begin`] and [`finish_register`] are the transport-free core that
//!   [`handle`] and the crate's own [`DiscoveryServer`](super::server::DiscoveryServer)
//!   both use: first decide from the request line and declared body length,
//!   then (only for a registration within the size limit) read the body.
//!
//! Every error answer is JSON, `{"error": "…"}`, saying what is wrong.

use std::io::Read;
use std::net::IpAddr;

pub use super::metrics::Metrics;
use super::registry::{Deregistered, RegisterError, Registered};
pub use super::registry::{RegistryConfig, SharedRegistry};
use crate::names::escaped;

/// Path of the registration route.
pub const REGISTER_PATH: &str = "/register";
/// Path of the roster route.
pub const NETWORKS_PATH: &str = "/networks";
/// Prefix of the deregistration route, `DELETE /networks/{network_id}`.
pub const NETWORK_PREFIX: &str = "/networks/";

pub use crate::http_server::Reply;

/// `Content-Type` of JSON answers.
pub const JSON: &str = crate::http_server::JSON;

/// What to do with a request once its request line and headers are known.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not a discovery path: the application handles it.
    NotDiscovery,
    /// Answer with this reply; the body, if any, is not needed.
    Respond(Reply),
    /// Read at most `limit` body bytes and pass them to [`finish_register`].
    ReadBody {
        /// The size limit; a longer body gets 413.
        limit: usize,
    },
    /// A deregistration whose `instance_id` is in the body: read at most
    /// `limit` body bytes and pass them to [`finish_deregister`].
    ReadDeregisterBody {
        /// The size limit; a longer body gets 413.
        limit: usize,
        /// The network named in the path, decoded and checked.
        network_id: String,
    },
}

/// The path part of a request target (`/networks?x=1` → `/networks`).
pub fn path_of(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// Decides what a request needs from its method, target and declared body
/// length (`Content-Length`), before any body byte is read.
pub fn begin(registry: &SharedRegistry, method: &str, url: &str, declared_len: Option<u64>) -> Step {
    let path = path_of(url);
    match path {
        REGISTER_PATH if method != "POST" => Step::Respond(Reply::method_not_allowed(method, path, "POST")),
        REGISTER_PATH => {
            let limit = registry.max_body_bytes();
            match declared_len {
                Some(n) if n > limit as u64 => Step::Respond(too_large(limit)),
                _ => Step::ReadBody { limit },
            }
        }
        NETWORKS_PATH if method == "GET" || method == "HEAD" => Step::Respond(networks(registry)),
        NETWORKS_PATH => Step::Respond(Reply::method_not_allowed(method, path, "GET")),
        _ if path.starts_with(NETWORK_PREFIX) => begin_deregister(registry, method, url, declared_len),
        _ => Step::NotDiscovery,
    }
}

/// `DELETE /networks/{network_id}?instance_id=…`, or with the body
/// `{"instance_id": "…"}`. The instance is required so that an old instance
/// shutting down never removes the entry of the instance that replaced it.
fn begin_deregister(registry: &SharedRegistry, method: &str, url: &str, declared_len: Option<u64>) -> Step {
    let path = path_of(url);
    if method != "DELETE" {
        return Step::Respond(Reply::method_not_allowed(method, path, "DELETE"));
    }
    let network_id = match percent_decode(&path[NETWORK_PREFIX.len()..]).and_then(|id| {
        crate::names::check_id(&id)
            .map(|()| id)
            .map_err(|e| format!("network id in the path {e}"))
    }) {
        Ok(id) => id,
        Err(reason) => return Step::Respond(Reply::error(400, reason)),
    };
    let query = url[path.len()..].strip_prefix('?').unwrap_or_default();
    let query = query.split('#').next().unwrap_or_default();
    if let Some(raw) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("instance_id="))
    {
        return Step::Respond(match percent_decode(raw) {
            Ok(instance_id) => deregister(registry, &network_id, &instance_id),
            Err(reason) => Reply::error(400, reason),
        });
    }
    let limit = registry.max_body_bytes();
    match declared_len {
        Some(n) if n > limit as u64 => Step::Respond(too_large(limit)),
        None | Some(0) => Step::Respond(Reply::error(
            400,
            "missing instance_id: send ?instance_id=… or a JSON body {\"instance_id\": …}",
        )),
        Some(_) => Step::ReadDeregisterBody { limit, network_id },
    }
}

/// Deregisters from a body `{"instance_id": "…"}` of at most the limit.
pub fn finish_deregister(registry: &SharedRegistry, network_id: &str, body: &[u8]) -> Reply {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Reply::error(400, format!("malformed JSON: {e}")),
    };
    match value.get("instance_id").and_then(|v| v.as_str()) {
        Some(instance_id) => deregister(registry, network_id, instance_id),
        None => Reply::error(400, "missing field `instance_id` (a string)"),
    }
}

fn deregister(registry: &SharedRegistry, network_id: &str, instance_id: &str) -> Reply {
    if let Err(e) = crate::names::check_id(instance_id) {
        return Reply::error(400, format!("field `instance_id` {e}"));
    }
    match registry.deregister(network_id, instance_id) {
        Deregistered::Removed(_) => Reply::json(
            200,
            serde_json::json!({ "status": "deregistered", "network_id": network_id }).to_string(),
        ),
        Deregistered::Absent => Reply::error(404, format!("network {network_id} is not registered")),
        Deregistered::HeldBy(holder) => Reply::error(
            409,
            format!(
                "network {network_id} is held by instance {}, not {instance_id}; left in place",
                holder.instance_id
            ),
        ),
    }
}

/// Percent-encodes an id for a URL path or query: unreserved ASCII stays,
/// every other byte becomes `%XX`.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent-encoding in the request target")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the request target does not decode to UTF-8".to_string())
}

/// The 413 answer for a body over `limit` bytes.
pub fn too_large(limit: usize) -> Reply {
    Reply::too_large(limit)
}

/// Registers from a body of at most the limit and answers. A wildcard
/// endpoint is refused; servers that know the client use [`finish_register_from`].
pub fn finish_register(registry: &SharedRegistry, body: &[u8]) -> Reply {
    finish_register_from(registry, body, None)
}

/// Registers from a body of at most the limit, sent from `source`, and
/// answers. A wildcard endpoint (`0.0.0.0:PORT`, `[::]:PORT`) is registered
/// under `source` with the same port: Reflow's own peers advertise the
/// wildcard when bound to it and ignore the answer.
pub fn finish_register_from(registry: &SharedRegistry, body: &[u8], source: Option<IpAddr>) -> Reply {
    let (info, sent) = match super::info::parse_registration_from(body, source) {
        Ok(parsed) => parsed,
        Err(reason) => return Reply::error(400, reason),
    };
    let network_id = info.network_id.clone();
    let rewrite = sent.map(|sent| {
        format!(
            "network {} (instance {}) registered the wildcard endpoint {}; listed at {}, the request's source",
            escaped(&info.network_id),
            escaped(&info.instance_id),
            escaped(&sent),
            escaped(&info.endpoint)
        )
    });
    match registry.register(info) {
        Ok(outcome) => {
            // Such a peer sends the wildcard on every refresh: say it once
            // per change of the entry, not every 15 s.
            match rewrite {
                Some(line) if outcome == Registered::Refreshed => log::debug!("{line}"),
                Some(line) => log::info!("{line}"),
                None => {}
            }
            let body = serde_json::json!({ "status": "registered", "network_id": network_id });
            Reply::json(200, body.to_string())
        }
        Err(RegisterError::Full) => Reply::error(
            503,
            "the registry is full; retry later or raise the server's entry limit",
        ),
    }
}

/// The roster answer: a JSON array of live entries.
pub fn networks(registry: &SharedRegistry) -> Reply {
    match registry.roster_json() {
        Ok(body) => Reply::json(200, body.to_string()),
        Err(e) => Reply::error(500, format!("cannot encode the roster: {e}")),
    }
}

/// Declared bodies up to this size are left for `tiny_http` to discard when
/// the request is dropped. `tiny_http` 0.12 discards an unread body by
/// allocating a buffer of its declared size, so a request declaring an absurd
/// size would abort the process; such a request's connection is abandoned
/// instead (see `docs/discovery.md`).
const SAFE_DISCARD_BYTES: u64 = 1024 * 1024;

/// Answers a discovery request and returns `None`, or hands any other request
/// back untouched for the application's own routes.
///
/// ```no_run
/// use reflow_distributed::router::{self, RegistryConfig, SharedRegistry};
///
/// let registry = SharedRegistry::new(RegistryConfig::default());
/// let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
/// for request in server.incoming_requests() {
///     if let Some(request) = router::handle(&registry, request) {
///         let _ = request.respond(tiny_http::Response::from_string("my app"));
///     }
/// }
/// ```
pub fn handle(registry: &SharedRegistry, mut request: tiny_http::Request) -> Option<tiny_http::Request> {
    let declared = request.body_length().map(|n| n as u64);
    let step = begin(registry, request.method().as_str(), request.url(), declared);
    let reply = match step {
        Step::NotDiscovery => return Some(request),
        Step::Respond(reply) => reply,
        Step::ReadBody { limit } => {
            let mut body = Vec::new();
            match request.as_reader().take(limit as u64 + 1).read_to_end(&mut body) {
                Ok(_) if body.len() > limit => too_large(limit),
                Ok(_) => finish_register_from(registry, &body, request.remote_addr().map(|a| a.ip())),
                Err(e) => Reply::error(400, format!("cannot read the request body: {e}")),
            }
        }
        Step::ReadDeregisterBody { limit, network_id } => {
            let mut body = Vec::new();
            match request.as_reader().take(limit as u64 + 1).read_to_end(&mut body) {
                Ok(_) if body.len() > limit => too_large(limit),
                Ok(_) => finish_deregister(registry, &network_id, &body),
                Err(e) => Reply::error(400, format!("cannot read the request body: {e}")),
            }
        }
    };
    registry.metrics().count_response(reply.status);
    let unsafe_to_drop = reply.status == 413 && declared.is_some_and(|n| n > SAFE_DISCARD_BYTES);
    let response = to_tiny_response(reply);
    if unsafe_to_drop {
        log::warn!(
            "abandoning a connection that declared a {} byte body",
            declared.unwrap_or(0)
        );
        std::mem::forget(request.upgrade("close", response));
    } else if let Err(e) = request.respond(response) {
        log::debug!("cannot send a discovery answer: {e}");
    }
    None
}

fn to_tiny_response(reply: Reply) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut response = tiny_http::Response::from_data(reply.body.into_bytes()).with_status_code(reply.status);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", reply.content_type) {
        response.add_header(h);
    }
    if let Some(allow) = reply.allow
        && let Ok(h) = tiny_http::Header::from_bytes("Allow", allow)
    {
        response.add_header(h);
    }
    for (name, value) in &reply.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max_body_bytes: usize) -> SharedRegistry {
        SharedRegistry::new(RegistryConfig {
            max_body_bytes,
            ..RegistryConfig::default()
        })
    }

    #[test]
    fn other_paths_are_not_ours() {
        let r = registry(100);
        assert_eq!(begin(&r, "GET", "/", None), Step::NotDiscovery);
        assert_eq!(begin(&r, "GET", "/registerx", None), Step::NotDiscovery);
    }

    #[test]
    fn wrong_methods_get_405_with_allow() {
        let r = registry(100);
        let Step::Respond(reply) = begin(&r, "GET", "/register", None) else {
            panic!("expected an answer");
        };
        assert_eq!((reply.status, reply.allow), (405, Some("POST")));
        let Step::Respond(reply) = begin(&r, "DELETE", "/networks?x", None) else {
            panic!("expected an answer");
        };
        assert_eq!((reply.status, reply.allow), (405, Some("GET")));
    }

    #[test]
    fn an_oversized_declared_body_is_refused_before_reading() {
        let r = registry(100);
        let Step::Respond(reply) = begin(&r, "POST", "/register", Some(101)) else {
            panic!("expected an answer");
        };
        assert_eq!(reply.status, 413);
        assert_eq!(
            begin(&r, "POST", "/register", Some(100)),
            Step::ReadBody { limit: 100 }
        );
    }

    #[test]
    fn a_registration_shows_up_in_the_roster() {
        let r = registry(1000);
        let reply = finish_register(
            &r,
            br#"{"network_id":"alpha","instance_id":"alpha-1","endpoint":"127.0.0.1:9100"}"#,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let list: Vec<serde_json::Value> = serde_json::from_str(&networks(&r).body).expect("json");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["endpoint"], "127.0.0.1:9100");
        assert!(list[0]["last_seen"].as_str().is_some_and(|s| s.ends_with('Z')));
    }

    fn status(step: Step) -> u16 {
        match step {
            Step::Respond(reply) => reply.status,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn delete_removes_only_the_named_instance() {
        let r = registry(1000);
        let body = br#"{"network_id":"a%b","instance_id":"a-1","endpoint":"127.0.0.1:9100"}"#;
        assert_eq!(finish_register(&r, body).status, 200);
        let path = format!("/networks/{}", percent_encode("a%b"));
        assert_eq!(
            status(begin(&r, "DELETE", &format!("{path}?instance_id=a-2"), None)),
            409
        );
        assert_eq!(status(begin(&r, "GET", &path, None)), 405);
        assert_eq!(status(begin(&r, "DELETE", &path, None)), 400, "no instance given");
        assert_eq!(status(begin(&r, "DELETE", "/networks/a%2", None)), 400);
        assert_eq!(
            begin(&r, "DELETE", &path, Some(20)),
            Step::ReadDeregisterBody {
                limit: 1000,
                network_id: "a%b".into()
            }
        );
        assert_eq!(
            finish_deregister(&r, "a%b", br#"{"instance_id":"a-1"}"#).status,
            200
        );
        assert_eq!(
            status(begin(&r, "DELETE", &format!("{path}?instance_id=a-1"), None)),
            404
        );
        assert_eq!(
            percent_decode(&percent_encode("é?#&=% x")).as_deref(),
            Ok("é?#&=% x")
        );
    }

    #[test]
    fn errors_are_json_objects() {
        let reply = finish_register(&registry(1000), b"{");
        assert_eq!(reply.status, 400);
        let v: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("malformed JSON"))
        );
    }
}
