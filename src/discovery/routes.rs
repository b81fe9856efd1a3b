//! What the standalone discovery server answers: the contract of
//! [`router`](super::router), plus `/healthz` and `/metrics`, with the
//! optional check of signed requests ([`auth`](super::auth)) in front of
//! the routes that change the roster (and of reads, when asked).

use std::net::SocketAddr;
use std::time::Duration;

use super::auth::{self, SIGNATURE_HEADER, Signed, TIMESTAMP_HEADER};
use super::router::{self, SharedRegistry, Step};
use crate::http_server::{Begin, Event, PROMETHEUS_TEXT, Reply, RequestHead, Service};

/// The check of signed requests. The token is never logged or shown.
pub(crate) struct RequestAuth {
    pub(crate) token: Vec<u8>,
    /// `GET /networks` must be signed too.
    pub(crate) reads: bool,
    pub(crate) window: Duration,
}

/// The discovery server's routes over one registry.
pub(crate) struct Routes {
    pub(crate) registry: SharedRegistry,
    pub(crate) auth: Option<RequestAuth>,
}

impl Routes {
    fn needs_signature(&self, method: &str, path: &str) -> bool {
        let Some(auth) = &self.auth else { return false };
        match method {
            "POST" => path == router::REGISTER_PATH,
            "DELETE" => path.starts_with(router::NETWORK_PREFIX),
            "GET" | "HEAD" => auth.reads && path == router::NETWORKS_PATH,
            _ => false,
        }
    }
}

impl Service for Routes {
    fn begin(&self, head: &RequestHead, client: SocketAddr) -> Begin {
        let path = router::path_of(&head.target);
        match (path, head.method.as_str()) {
            ("/healthz", "GET" | "HEAD") => {
                return Begin::Respond(Reply::json(200, r#"{"status":"ok"}"#.into()));
            }
            ("/metrics", "GET" | "HEAD") => {
                let mut reply = Reply::json(200, self.registry.render_metrics());
                reply.content_type = PROMETHEUS_TEXT;
                return Begin::Respond(reply);
            }
            ("/healthz" | "/metrics", method) => {
                return Begin::Respond(Reply::method_not_allowed(method, path, "GET"));
            }
            _ => {}
        }
        if self.needs_signature(&head.method, path) {
            return self.begin_signed(head, client);
        }
        begin_unsigned(&self.registry, head, client)
    }

    fn observe(&self, event: Event) {
        let metrics = self.registry.metrics();
        match event {
            Event::Response(status) => metrics.count_response(status),
            Event::AcceptError => metrics.count_accept_error(),
            Event::Refused => metrics.count_connection_refused(),
            Event::Evicted => metrics.count_connection_evicted(),
            Event::RateLimited => metrics.count_rate_limited(),
            Event::Open(n) => metrics.set_open_connections(n),
        }
    }
}

impl Routes {
    /// A request that must be signed: refused at once without the headers,
    /// else its body is read and the signature over it checked before the
    /// route acts.
    fn begin_signed(&self, head: &RequestHead, client: SocketAddr) -> Begin {
        let Some(auth) = &self.auth else {
            return begin_unsigned(&self.registry, head, client);
        };
        let timestamp = head.header(TIMESTAMP_HEADER).map(str::to_string);
        let signature = head.header(SIGNATURE_HEADER).map(str::to_string);
        if timestamp.is_none() || signature.is_none() {
            let missing = if timestamp.is_none() {
                TIMESTAMP_HEADER
            } else {
                SIGNATURE_HEADER
            };
            self.registry.metrics().count_auth_refused();
            return Begin::Respond(unauthorized(head, &auth::AuthError::Missing(missing)));
        }
        let registry = self.registry.clone();
        let token = auth.token.clone();
        let window = auth.window;
        let method = head.method.clone();
        let target = head.target.clone();
        let failed = format!("{} {}", head.method, router::path_of(&head.target));
        Begin::ReadBody {
            limit: registry.max_body_bytes(),
            finish: Box::new(move |body: &[u8]| {
                let request = Signed {
                    method: &method,
                    target: &target,
                    timestamp: timestamp.as_deref(),
                    signature: signature.as_deref(),
                    body,
                };
                if let Err(e) = auth::verify(&token, &request, auth::unix_now(), window) {
                    registry.metrics().count_auth_refused();
                    return unauthorized_text(&failed, &e);
                }
                match router::begin(&registry, &method, &target, Some(body.len() as u64)) {
                    Step::NotDiscovery => Reply::error(404, format!("no route {}", router::path_of(&target))),
                    Step::Respond(reply) => reply,
                    Step::ReadBody { .. } => router::finish_register_from(&registry, body, Some(client.ip())),
                    Step::ReadDeregisterBody { network_id, .. } => {
                        router::finish_deregister(&registry, &network_id, body)
                    }
                }
            }),
        }
    }
}

/// The contract without signatures.
fn begin_unsigned(registry: &SharedRegistry, head: &RequestHead, client: SocketAddr) -> Begin {
    let path = router::path_of(&head.target);
    match router::begin(registry, &head.method, &head.target, head.content_length) {
        Step::NotDiscovery => Begin::Respond(Reply::error(404, format!("no route {path}"))),
        Step::Respond(reply) => Begin::Respond(reply),
        Step::ReadBody { limit } => {
            let registry = registry.clone();
            Begin::ReadBody {
                limit,
                finish: Box::new(move |body: &[u8]| {
                    router::finish_register_from(&registry, body, Some(client.ip()))
                }),
            }
        }
        Step::ReadDeregisterBody { limit, network_id } => {
            let registry = registry.clone();
            Begin::ReadBody {
                limit,
                finish: Box::new(move |body: &[u8]| router::finish_deregister(&registry, &network_id, body)),
            }
        }
    }
}

fn unauthorized(head: &RequestHead, why: &auth::AuthError) -> Reply {
    unauthorized_text(&format!("{} {}", head.method, router::path_of(&head.target)), why)
}

/// 401, naming the request and the reason. The connection logs it at warn,
/// escaped (the path is the client's).
fn unauthorized_text(request: &str, why: &auth::AuthError) -> Reply {
    Reply::error(401, format!("{request}: {why}")).with_header(
        "WWW-Authenticate",
        format!("Reflow-Signature headers=\"{TIMESTAMP_HEADER} {SIGNATURE_HEADER}\""),
    )
}
