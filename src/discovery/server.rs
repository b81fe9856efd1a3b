//! `DiscoveryServer`: the discovery contract on its own listening socket,
//! on the crate's small HTTP server (`http_server`): per-source limits, a
//! short deadline for request heads, and room made at the connection cap by
//! closing a connection that has not completed a request.
//!
//! Threads, all owned and joined by [`DiscoveryServer::shutdown`]:
//! - `discovery-accept` and `discovery-conn-N` (at most `max_connections`),
//!   the HTTP server's;
//! - `discovery-prune` sweeps expired entries every `prune_interval`.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::auth::DEFAULT_WINDOW;
use super::error::DiscoveryError;
use super::registry::{RegistryConfig, SharedRegistry};
use super::routes::{RequestAuth, Routes};
use crate::http_server::{self, Accept, HttpServer, ServerLimits};
use crate::secret::Secret;

/// Default most connections open at once.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default most connections open at once from one source address.
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 32;
/// Default requests per second one source address may send, sustained.
pub(crate) const DEFAULT_REQUESTS_PER_SEC_PER_IP: u32 = 100;
/// Default requests one source address may send in a burst.
pub(crate) const DEFAULT_REQUEST_BURST_PER_IP: u32 = 200;
/// Default time a request head may take to arrive.
pub(crate) const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of a [`DiscoveryServer`]. Every bound has a default suited to a
/// roster of a few thousand peers.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// `ADDR:PORT` to listen on; port 0 picks a free port. Default `0.0.0.0:9000`.
    pub bind: String,
    /// How long an entry stays live without re-registering. Default 60 s.
    pub entry_ttl: Duration,
    /// Period of the sweep that drops expired entries. Default 15 s.
    pub prune_interval: Duration,
    /// Largest request body read; larger gets 413 without being read. Default 16 KiB.
    pub max_body_bytes: usize,
    /// Largest request line plus headers. Default 8 KiB.
    pub max_head_bytes: usize,
    /// Most networks held at once; more registrations get 503. Default 10 000.
    pub max_entries: usize,
    /// Most connections open at once (one thread each). At the cap, the
    /// oldest connection that has not completed a request (else the oldest
    /// idle between requests) is closed to make room; only when every one is
    /// being answered is the new one refused with 503. Default 256.
    pub max_connections: usize,
    /// Most connections open at once from one source address (IPv6: one
    /// /64), with the same rule at the cap among that address's
    /// connections. Raise it when many peers share one address (NAT).
    /// Default 32.
    pub max_connections_per_ip: usize,
    /// Requests per second one source address may send, sustained; past
    /// its budget a request gets 429 with `Retry-After`. Default 100.
    pub requests_per_sec_per_ip: u32,
    /// Requests one source address may send at once after a quiet spell.
    /// Default 200.
    pub request_burst_per_ip: u32,
    /// How long a request head may take: a new connection must deliver its
    /// first head within this of being accepted, a kept-alive one within
    /// this of the head's first byte. Default 5 s.
    pub head_timeout: Duration,
    /// How long a kept-alive connection may wait between requests. Default 30 s.
    pub idle_timeout: Duration,
    /// How long a client may take to send one whole request (head and body)
    /// once it started. Default 10 s.
    pub request_timeout: Duration,
    /// How long writing an answer may block. Default 10 s.
    pub write_timeout: Duration,
    /// Token that registrations and deregistrations must be signed with
    /// (`X-Reflow-Timestamp`, `X-Reflow-Signature`; see `docs/discovery.md`).
    /// Default none: anyone may register. Never printed by `Debug`.
    pub auth_token: Option<Secret>,
    /// With `auth_token`, `GET /networks` must be signed too. Default false
    /// (`/healthz` and `/metrics` stay open either way).
    pub auth_reads: bool,
    /// How far a signed request's timestamp may be from this server's
    /// clock, either way. Default 30 s.
    pub auth_window: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let registry = RegistryConfig::default();
        ServerConfig {
            bind: "0.0.0.0:9000".into(),
            entry_ttl: registry.entry_ttl,
            prune_interval: Duration::from_secs(15),
            max_body_bytes: registry.max_body_bytes,
            max_head_bytes: 8 * 1024,
            max_entries: registry.max_entries,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            requests_per_sec_per_ip: DEFAULT_REQUESTS_PER_SEC_PER_IP,
            request_burst_per_ip: DEFAULT_REQUEST_BURST_PER_IP,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            auth_token: None,
            auth_reads: false,
            auth_window: DEFAULT_WINDOW,
        }
    }
}

impl ServerConfig {
    /// Default settings listening on `bind`.
    pub fn new(bind: impl Into<String>) -> Self {
        ServerConfig {
            bind: bind.into(),
            ..ServerConfig::default()
        }
    }

    fn validate(&self) -> Result<(), DiscoveryError> {
        let checks = [
            (self.entry_ttl.is_zero(), "entry TTL must be above zero"),
            (self.prune_interval.is_zero(), "prune interval must be above zero"),
            (self.max_body_bytes == 0, "max_body_bytes must be above zero"),
            (self.max_head_bytes < 64, "max_head_bytes must be at least 64"),
            (self.max_entries == 0, "max_entries must be above zero"),
            (self.max_connections == 0, "max_connections must be above zero"),
            (
                self.max_connections_per_ip == 0,
                "max_connections_per_ip must be above zero",
            ),
            (
                self.requests_per_sec_per_ip == 0,
                "requests_per_sec_per_ip must be above zero",
            ),
            (
                self.request_burst_per_ip == 0,
                "request_burst_per_ip must be above zero",
            ),
            (self.head_timeout.is_zero(), "head_timeout must be above zero"),
            (self.idle_timeout.is_zero(), "idle_timeout must be above zero"),
            (
                self.request_timeout.is_zero(),
                "request_timeout must be above zero",
            ),
            (self.write_timeout.is_zero(), "write_timeout must be above zero"),
            (
                self.auth_token.as_ref().is_some_and(|t| t.expose().is_empty()),
                "the auth token must not be empty",
            ),
            (
                self.auth_reads && self.auth_token.is_none(),
                "auth_reads needs an auth token",
            ),
            (self.auth_window.is_zero(), "auth_window must be above zero"),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, reason)) => Err(DiscoveryError::InvalidConfig((*reason).into())),
            None => Ok(()),
        }
    }

    fn limits(&self) -> ServerLimits {
        ServerLimits {
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_ip,
            requests_per_sec_per_source: self.requests_per_sec_per_ip,
            request_burst_per_source: self.request_burst_per_ip,
            head_timeout: self.head_timeout,
            idle_timeout: self.idle_timeout,
            request_timeout: self.request_timeout,
            write_timeout: self.write_timeout,
            max_head_bytes: self.max_head_bytes,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

struct Running {
    stop_prune: Sender<()>,
    prune: JoinHandle<()>,
}

/// A running discovery server. Dropping it shuts it down.
pub struct DiscoveryServer {
    http: HttpServer<Routes>,
    registry: SharedRegistry,
    running: Mutex<Option<Running>>,
}

impl DiscoveryServer {
    /// Binds `config.bind`, starts the threads and logs the listening address.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::InvalidConfig`] for a zero limit or interval in
    /// `config`; [`DiscoveryError::Bind`] when the address cannot be bound,
    /// naming the cause (port in use, address not on this host, privileged
    /// port); [`DiscoveryError::Spawn`] when a thread cannot start.
    pub fn start(config: ServerConfig) -> Result<DiscoveryServer, DiscoveryError> {
        config.validate()?;
        let bind_err = |source| DiscoveryError::Bind {
            addr: config.bind.clone(),
            source,
        };
        let (listener, local_addr) = http_server::bind(&config.bind).map_err(bind_err)?;
        let server = Self::start_with(listener, local_addr, &config)?;
        if config.auth_token.is_some() {
            log::info!(
                "signed requests required for registrations and deregistrations{} (window ±{} s)",
                if config.auth_reads {
                    " and roster reads"
                } else {
                    ""
                },
                config.auth_window.as_secs()
            );
        }
        log::info!("reflow discovery server listening on http://{local_addr}");
        Ok(server)
    }

    pub(crate) fn start_with(
        acceptor: impl Accept,
        local_addr: SocketAddr,
        config: &ServerConfig,
    ) -> Result<DiscoveryServer, DiscoveryError> {
        config.validate()?;
        let registry = SharedRegistry::new(RegistryConfig {
            entry_ttl: config.entry_ttl,
            max_entries: config.max_entries,
            max_body_bytes: config.max_body_bytes,
        });
        let routes = Routes {
            registry: registry.clone(),
            auth: config.auth_token.as_ref().map(|token| RequestAuth {
                token: token.expose().as_bytes().to_vec(),
                reads: config.auth_reads,
                window: config.auth_window,
            }),
        };
        let (stop_prune, prune_rx) = crossbeam_channel::bounded::<()>(0);
        let prune = {
            let registry = registry.clone();
            let interval = config.prune_interval;
            thread::Builder::new()
                .name("discovery-prune".into())
                .spawn(move || prune_loop(&registry, interval, &prune_rx))
                .map_err(DiscoveryError::Spawn)?
        };
        let http = match HttpServer::start("discovery", acceptor, local_addr, config.limits(), routes) {
            Ok(http) => http,
            Err(e) => {
                drop(stop_prune);
                let _ = prune.join();
                return Err(DiscoveryError::Spawn(e));
            }
        };
        Ok(DiscoveryServer {
            http,
            registry,
            running: Mutex::new(Some(Running { stop_prune, prune })),
        })
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// The roster this server answers from.
    pub fn registry(&self) -> &SharedRegistry {
        &self.registry
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.http.open_connections()
    }

    /// Stops accepting, closes every connection and joins all threads.
    /// Returns when they are gone; calling it again does nothing.
    pub fn shutdown(&self) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(running) = running else { return };
        self.http.shutdown();
        drop(running.stop_prune);
        let _ = running.prune.join();
        log::info!("reflow discovery server on http://{} stopped", self.local_addr());
    }
}

impl Drop for DiscoveryServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn prune_loop(registry: &SharedRegistry, interval: Duration, stop: &Receiver<()>) {
    loop {
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {
                let pruned = registry.prune();
                registry.metrics().count_pruned(pruned);
                if pruned > 0 {
                    log::info!("pruned {pruned} expired network(s)");
                }
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests;
