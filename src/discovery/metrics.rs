//! Counters behind `GET /metrics`, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one discovery roster and the server in front of it.
#[derive(Default)]
pub struct Metrics {
    registrations: AtomicU64,
    pruned: AtomicU64,
    deregistrations: AtomicU64,
    accept_errors: AtomicU64,
    connections_refused: AtomicU64,
    connections_evicted: AtomicU64,
    rate_limited: AtomicU64,
    auth_refused: AtomicU64,
    open_connections: AtomicU64,
    /// Responses by status code; the set of codes is small and fixed by the
    /// router, so the map stays tiny.
    responses: Mutex<BTreeMap<u16, u64>>,
}

impl Metrics {
    /// Counts one accepted registration.
    pub(crate) fn count_registration(&self) {
        self.registrations.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one entry removed by its instance (`DELETE /networks/{id}`).
    pub(crate) fn count_deregistration(&self) {
        self.deregistrations.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts entries removed by the periodic sweep.
    pub(crate) fn count_pruned(&self, n: usize) {
        self.pruned.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts one failed `accept()` on the listening socket.
    pub(crate) fn count_accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one connection turned away because the server was at its limit.
    pub(crate) fn count_connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one connection closed to make room for a new one.
    pub fn count_connection_evicted(&self) {
        self.connections_evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request answered 429 (its source spent its request budget).
    pub fn count_rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request refused for a missing or bad signature (401).
    pub fn count_auth_refused(&self) {
        self.auth_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how many connections are open now.
    pub fn set_open_connections(&self, n: usize) {
        self.open_connections.store(n as u64, Ordering::Relaxed);
    }

    /// Counts one response with `status`.
    pub(crate) fn count_response(&self, status: u16) {
        let mut map = self
            .responses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *map.entry(status).or_insert(0) += 1;
    }

    /// Responses sent with `status` so far.
    pub fn responses_with(&self, status: u16) -> u64 {
        let map = self
            .responses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(&status).copied().unwrap_or(0)
    }

    /// Registrations accepted so far.
    pub fn registrations(&self) -> u64 {
        self.registrations.load(Ordering::Relaxed)
    }

    /// Failed accepts so far.
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }

    /// The text exposition, with `live_networks` as the gauge's value.
    pub fn render(&self, live_networks: usize) -> String {
        let mut out = String::with_capacity(1024);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        metric(
            "reflow_discovery_networks",
            "gauge",
            "Networks currently registered and within their TTL.",
            live_networks as u64,
        );
        metric(
            "reflow_discovery_registrations_total",
            "counter",
            "Registrations accepted.",
            self.registrations(),
        );
        metric(
            "reflow_discovery_pruned_total",
            "counter",
            "Entries removed by the TTL sweep.",
            self.pruned.load(Ordering::Relaxed),
        );
        metric(
            "reflow_discovery_deregistrations_total",
            "counter",
            "Entries removed by their instance on shutdown.",
            self.deregistrations.load(Ordering::Relaxed),
        );
        metric(
            "reflow_discovery_accept_errors_total",
            "counter",
            "Failed accepts on the listening socket.",
            self.accept_errors(),
        );
        metric(
            "reflow_discovery_connections_refused_total",
            "counter",
            "Connections turned away at a connection limit (every open one was being answered).",
            self.connections_refused.load(Ordering::Relaxed),
        );
        metric(
            "reflow_discovery_connections_evicted_total",
            "counter",
            "Connections closed to make room at a connection limit.",
            self.connections_evicted.load(Ordering::Relaxed),
        );
        metric(
            "reflow_discovery_connections_open",
            "gauge",
            "Connections open now.",
            self.open_connections.load(Ordering::Relaxed),
        );
        metric(
            "reflow_discovery_requests_rate_limited_total",
            "counter",
            "Requests answered 429 because their source address spent its request budget.",
            self.rate_limited.load(Ordering::Relaxed),
        );
        metric(
            "reflow_discovery_auth_refused_total",
            "counter",
            "Requests refused for a missing or bad signature (401).",
            self.auth_refused.load(Ordering::Relaxed),
        );
        let name = "reflow_discovery_http_responses_total";
        let _ = writeln!(out, "# HELP {name} HTTP responses sent, by status code.");
        let _ = writeln!(out, "# TYPE {name} counter");
        let map = self
            .responses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (status, count) in map.iter() {
            let _ = writeln!(out, "{name}{{status=\"{status}\"}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_gauge_counters_and_statuses() {
        let m = Metrics::default();
        m.count_registration();
        m.count_registration();
        m.count_response(200);
        m.count_response(200);
        m.count_response(404);
        let text = m.render(3);
        assert!(text.contains("# TYPE reflow_discovery_networks gauge\nreflow_discovery_networks 3\n"));
        assert!(text.contains("reflow_discovery_registrations_total 2\n"));
        assert!(text.contains("reflow_discovery_http_responses_total{status=\"200\"} 2\n"));
        assert!(text.contains("reflow_discovery_http_responses_total{status=\"404\"} 1\n"));
    }
}
