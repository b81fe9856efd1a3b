//! A peer's admin listener (optional, off by default): what an operator or
//! a supervisor asks a running peer, over plain HTTP on its own address.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | 200 `{"status":"ok"}` while the process runs |
//! | `GET /readyz` | 200 when the bridge listens, the peer is registered with discovery (if configured) and every configured link is up; else 503 naming what is missing |
//! | `GET /metrics` | Prometheus text format ([`metrics`]) |
//! | `GET /links` | JSON: every link, held or connected, with its traffic |
//!
//! It runs on the crate's HTTP server (`http_server`), with the same
//! deadlines, per-address limits and eviction rule as discovery's, sized
//! for a few scrapers. It only reads: nothing here changes the peer. Bind
//! it to loopback or a management network; it is not authenticated.

pub(crate) mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::bridge::Bridge;
use crate::discovery::DiscoveryService;
use crate::http_server::{
    self, Begin, HttpServer, PROMETHEUS_TEXT, Reply, RequestHead, ServerLimits, Service,
};

/// What the admin listener reads: the peer's bridge and discovery client.
#[derive(Clone)]
pub(crate) struct PeerView {
    pub(crate) network_id: String,
    pub(crate) bridge: Arc<Bridge>,
    /// `None` when no discovery endpoint is configured.
    pub(crate) discovery: Option<Arc<DiscoveryService>>,
}

/// Why a peer is not ready, one item per missing condition.
pub(crate) fn not_ready(view: &PeerView) -> Vec<String> {
    let mut missing = Vec::new();
    if let Some(discovery) = &view.discovery
        && !discovery.is_registered()
    {
        missing.push("registration with discovery".to_string());
    }
    for link in view.bridge.held_links().iter().filter(|l| !l.discovered && !l.up) {
        missing.push(match &link.network_id {
            Some(network) => format!("link to {network} at {}", link.endpoint),
            None => format!("link to {}", link.endpoint),
        });
    }
    missing
}

struct Routes {
    view: PeerView,
}

impl Service for Routes {
    fn begin(&self, head: &RequestHead, _client: SocketAddr) -> Begin {
        let path = head.target.split(['?', '#']).next().unwrap_or_default();
        if !matches!(head.method.as_str(), "GET" | "HEAD") {
            return match path {
                "/healthz" | "/readyz" | "/metrics" | "/links" => {
                    Begin::Respond(Reply::method_not_allowed(&head.method, path, "GET"))
                }
                _ => Begin::Respond(Reply::error(404, format!("no route {path}"))),
            };
        }
        Begin::Respond(match path {
            "/healthz" => Reply::json(200, r#"{"status":"ok"}"#.into()),
            "/readyz" => self.readyz(),
            "/metrics" => {
                let mut reply = Reply::json(200, metrics::render(&self.view));
                reply.content_type = PROMETHEUS_TEXT;
                reply
            }
            "/links" => Reply::json(200, links_json(&self.view)),
            _ => Reply::error(
                404,
                format!("no route {path}; try /healthz, /readyz, /metrics or /links"),
            ),
        })
    }
}

impl Routes {
    fn readyz(&self) -> Reply {
        let missing = not_ready(&self.view);
        if missing.is_empty() {
            Reply::json(200, json!({ "ready": true }).to_string())
        } else {
            Reply::json(503, json!({ "ready": false, "waiting_for": missing }).to_string())
        }
    }
}

/// `/links`: every network this peer holds a link to or has traffic with.
fn links_json(view: &PeerView) -> String {
    let held = view.bridge.held_links();
    let mut links = Vec::new();
    for stats in view.bridge.link_stats() {
        let holder = held
            .iter()
            .find(|h| h.network_id.as_deref() == Some(stats.network_id.as_str()));
        links.push(json!({
            "network_id": stats.network_id,
            "endpoint": holder.map(|h| h.endpoint.clone()),
            "held": holder.map(|h| if h.discovered { "discovery" } else { "configured" }),
            "up": stats.connected,
            "messages_in": stats.messages_in,
            "messages_out": stats.messages_out,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
            "queued": stats.queued,
        }));
    }
    // Held links never reached yet have no traffic entry.
    let counted: Vec<String> = links
        .iter()
        .filter_map(|l| l["network_id"].as_str().map(str::to_string))
        .collect();
    for h in held
        .iter()
        .filter(|h| h.network_id.as_ref().is_none_or(|n| !counted.contains(n)))
    {
        links.push(json!({
            "network_id": h.network_id,
            "endpoint": h.endpoint,
            "held": if h.discovered { "discovery" } else { "configured" },
            "up": h.up,
            "messages_in": 0, "messages_out": 0, "bytes_in": 0, "bytes_out": 0, "queued": 0,
        }));
    }
    json!({ "network_id": view.network_id, "links": links }).to_string()
}

/// Bounds of the admin listener: a few scrapers and operators, never a crowd.
fn limits() -> ServerLimits {
    ServerLimits {
        max_connections: 16,
        max_connections_per_source: 8,
        requests_per_sec_per_source: 20,
        request_burst_per_source: 40,
        head_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
        max_head_bytes: 8 * 1024,
        max_body_bytes: 4 * 1024,
    }
}

/// A running admin listener; dropping it stops it.
pub(crate) struct AdminServer {
    http: HttpServer<Routes>,
}

impl AdminServer {
    /// Binds `bind` (`host:port`; port 0 picks one) and serves `view`.
    pub(crate) fn start(bind: &str, view: PeerView) -> std::io::Result<AdminServer> {
        let (listener, local) = http_server::bind(bind)?;
        let http = HttpServer::start("admin", listener, local, limits(), Routes { view })?;
        log::info!("admin listener on http://{local} (/healthz, /readyz, /metrics, /links)");
        Ok(AdminServer { http })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    pub(crate) fn shutdown(&self) {
        self.http.shutdown();
    }
}
