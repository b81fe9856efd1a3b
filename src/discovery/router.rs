//! The discovery HTTP contract, independent of the server that carries it.
//!
//! Two ways in:
//! - [`handle`] mounts the contract in any `tiny_http` application: it answers
//!   `POST /register` and `GET /networks` and hands every other request back.
//! - [`begin`] and [`finish_register`] are the transport-free core that
//!   [`handle`] and the crate's own [`DiscoveryServer`](super::server::DiscoveryServer)
//!   both use: first decide from the request line and declared body length,
//!   then (only for a registration within the size limit) read the body.
//!
//! Every error answer is JSON, `{"error": "…"}`, saying what is wrong.

use std::io::Read;

use super::registry::RegisterError;
pub use super::registry::{RegistryConfig, SharedRegistry};
use crate::names::escaped;

/// Path of the registration route.
pub const REGISTER_PATH: &str = "/register";
/// Path of the roster route.
pub const NETWORKS_PATH: &str = "/networks";

/// `Content-Type` of JSON answers.
pub const JSON: &str = "application/json";

/// A response decided by the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of `body`.
    pub content_type: &'static str,
    /// The body text.
    pub body: String,
    /// Methods to list in `Allow` (set on 405 answers).
    pub allow: Option<&'static str>,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: JSON,
            body,
            allow: None,
        }
    }

    /// A JSON error answer `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        let body = serde_json::json!({ "error": message.into() }).to_string();
        Reply::json(status, body)
    }

    fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> Reply {
        let mut reply = Reply::error(405, format!("method {method} not allowed on {path}; use {allow}"));
        reply.allow = Some(allow);
        reply
    }
}

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
        _ => Step::NotDiscovery,
    }
}

/// The 413 answer for a body over `limit` bytes.
pub fn too_large(limit: usize) -> Reply {
    Reply::error(
        413,
        format!("request body is larger than the limit of {limit} bytes"),
    )
}

/// Registers from a body of at most the limit and answers.
pub fn finish_register(registry: &SharedRegistry, body: &[u8]) -> Reply {
    let info = match super::info::parse_registration(body) {
        Ok(info) => info,
        Err(reason) => return Reply::error(400, reason),
    };
    let network_id = info.network_id.clone();
    match registry.register(info) {
        Ok(outcome) => {
            log::debug!("registration of {}: {outcome:?}", escaped(&network_id));
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
                Ok(_) => finish_register(registry, &body),
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
