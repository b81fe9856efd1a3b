//! `DiscoveryServer`: the discovery contract on its own listening socket.
//!
//! Threads, all owned and joined by [`DiscoveryServer::shutdown`]:
//! - `discovery-accept` accepts connections. A failed `accept()` (out of file
//!   descriptors, aborted handshake…) is logged, counted and retried after a
//!   short backoff; the server never stops accepting because of one.
//! - `discovery-conn-N`, one per open connection, at most `max_connections`;
//!   each read has a deadline (see [`connection`](super::connection)).
//! - `discovery-prune` sweeps expired entries every `prune_interval`.
//!
//! Shutdown sets a flag, wakes the acceptor (a connection to itself, with a
//! listener timeout as the fallback), shuts down every open client socket so
//! that blocked reads return, closes the sweeper's channel and joins everyone.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::connection::{self, ConnLimits};
use super::error::DiscoveryError;
use super::http;
use super::registry::{RegistryConfig, SharedRegistry};
use super::router::Reply;

/// How often a blocked `accept()` wakes up to look at the stop flag when the
/// self-connection that normally wakes it could not be made.
const ACCEPT_POLL: Duration = Duration::from_millis(500);
/// Longest pause between retries after failed accepts.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Settings of a [`DiscoveryServer`]. Every bound has a default suited to a
/// roster of a few thousand peers.
#[derive(Clone, Debug)]
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
    /// Most connections served at once (one thread each); more are answered
    /// 503 and closed. Default 256.
    pub max_connections: usize,
    /// How long an open connection may wait before sending a request. Default 30 s.
    pub idle_timeout: Duration,
    /// How long a client may take to send one whole request once it started. Default 10 s.
    pub request_timeout: Duration,
    /// How long writing an answer may block. Default 10 s.
    pub write_timeout: Duration,
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
            max_connections: 256,
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
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
            (self.idle_timeout.is_zero(), "idle_timeout must be above zero"),
            (
                self.request_timeout.is_zero(),
                "request_timeout must be above zero",
            ),
            (self.write_timeout.is_zero(), "write_timeout must be above zero"),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, reason)) => Err(DiscoveryError::InvalidConfig((*reason).into())),
            None => Ok(()),
        }
    }
}

/// Open connections: a handle to shut each down, and the threads to join.
#[derive(Default)]
struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<TcpStream>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Connections {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<TcpStream>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the threads of connections that are over.
    fn reap(&self) {
        let finished: Vec<JoinHandle<()>> = {
            let mut threads = self.threads();
            let (done, running) = threads.drain(..).partition(|t| t.is_finished());
            *threads = running;
            done
        };
        for t in finished {
            let _ = t.join();
        }
    }
}

/// What the acceptor needs from a listening socket; a trait so that tests can
/// inject failing accepts.
pub(crate) trait Accept: Send + 'static {
    fn accept_one(&self) -> io::Result<TcpStream>;
}

impl Accept for TcpListener {
    fn accept_one(&self) -> io::Result<TcpStream> {
        self.accept().map(|(stream, _)| stream)
    }
}

struct Running {
    stop_prune: Sender<()>,
    accept: JoinHandle<()>,
    prune: JoinHandle<()>,
}

/// A running discovery server. Dropping it shuts it down.
pub struct DiscoveryServer {
    local_addr: SocketAddr,
    registry: SharedRegistry,
    stopping: Arc<AtomicBool>,
    connections: Arc<Connections>,
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
        let listener = TcpListener::bind(&config.bind).map_err(bind_err)?;
        let listener = with_accept_timeout(listener, ACCEPT_POLL).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let server = Self::start_with(listener, local_addr, &config)?;
        log::info!("reflow discovery server listening on http://{local_addr}");
        Ok(server)
    }

    pub(crate) fn start_with(
        acceptor: impl Accept,
        local_addr: SocketAddr,
        config: &ServerConfig,
    ) -> Result<DiscoveryServer, DiscoveryError> {
        let registry = SharedRegistry::new(RegistryConfig {
            entry_ttl: config.entry_ttl,
            max_entries: config.max_entries,
            max_body_bytes: config.max_body_bytes,
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Connections::default());
        let (stop_prune, prune_rx) = crossbeam_channel::bounded::<()>(0);
        let prune = {
            let registry = registry.clone();
            let interval = config.prune_interval;
            thread::Builder::new()
                .name("discovery-prune".into())
                .spawn(move || prune_loop(&registry, interval, &prune_rx))
                .map_err(DiscoveryError::Spawn)?
        };
        let acceptor_state = Acceptor {
            registry: registry.clone(),
            stopping: Arc::clone(&stopping),
            connections: Arc::clone(&connections),
            limits: ConnLimits {
                idle_timeout: config.idle_timeout,
                request_timeout: config.request_timeout,
                write_timeout: config.write_timeout,
                max_head_bytes: config.max_head_bytes,
            },
            max_connections: config.max_connections,
        };
        let accept = match thread::Builder::new()
            .name("discovery-accept".into())
            .spawn(move || acceptor_state.run(&acceptor))
        {
            Ok(handle) => handle,
            Err(e) => {
                drop(stop_prune);
                let _ = prune.join();
                return Err(DiscoveryError::Spawn(e));
            }
        };
        Ok(DiscoveryServer {
            local_addr,
            registry,
            stopping,
            connections,
            running: Mutex::new(Some(Running {
                stop_prune,
                accept,
                prune,
            })),
        })
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The roster this server answers from.
    pub fn registry(&self) -> &SharedRegistry {
        &self.registry
    }

    /// Stops accepting, closes every connection and joins all threads.
    /// Returns when they are gone; calling it again does nothing.
    pub fn shutdown(&self) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(running) = running else { return };
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor; if this fails it notices within ACCEPT_POLL.
        let _ = TcpStream::connect_timeout(&wake_address(self.local_addr), Duration::from_millis(500));
        let _ = running.accept.join();
        for stream in self.connections.open().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let threads: Vec<JoinHandle<()>> = self.connections.threads().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        drop(running.stop_prune);
        let _ = running.prune.join();
        log::info!("reflow discovery server on http://{} stopped", self.local_addr);
    }
}

impl Drop for DiscoveryServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The address to connect to in order to wake our own `accept()`.
fn wake_address(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

/// Gives the listening socket a receive timeout so that `accept()` returns
/// periodically. std has no setter on `TcpListener`; the option is the same
/// `SO_RCVTIMEO` a `TcpStream` sets, so the descriptor passes through one.
fn with_accept_timeout(listener: TcpListener, timeout: Duration) -> io::Result<TcpListener> {
    let as_stream = TcpStream::from(OwnedFd::from(listener));
    as_stream.set_read_timeout(Some(timeout))?;
    Ok(TcpListener::from(OwnedFd::from(as_stream)))
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

struct Acceptor {
    registry: SharedRegistry,
    stopping: Arc<AtomicBool>,
    connections: Arc<Connections>,
    limits: ConnLimits,
    max_connections: usize,
}

impl Acceptor {
    /// The accept loop: runs until the stop flag is set.
    fn run(&self, listener: &impl Accept) {
        let mut backoff = Duration::ZERO;
        while !self.stopping.load(Ordering::SeqCst) {
            match listener.accept_one() {
                Ok(stream) => {
                    backoff = Duration::ZERO;
                    if self.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    self.connections.reap();
                    self.admit(stream);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.registry.metrics().count_accept_error();
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                    log::warn!("accept failed: {e}; retrying in {} ms", backoff.as_millis());
                    self.pause(backoff);
                }
            }
        }
    }

    /// Sleeps up to `d`, in short steps so that shutdown is not delayed.
    fn pause(&self, d: Duration) {
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        while waited < d && !self.stopping.load(Ordering::SeqCst) {
            thread::sleep(step);
            waited += step;
        }
    }

    fn admit(&self, stream: TcpStream) {
        let mut open = self.connections.open();
        if open.len() >= self.max_connections {
            drop(open);
            self.registry.metrics().count_connection_refused();
            refuse(stream, &self.registry);
            return;
        }
        // One descriptor per connection: the server keeps a shared reference
        // (to shut the socket down at stop), not a duplicate.
        let stream = Arc::new(stream);
        let id = self.connections.next_id.fetch_add(1, Ordering::Relaxed);
        open.insert(id, Arc::clone(&stream));
        drop(open);
        let registry = self.registry.clone();
        let limits = self.limits.clone();
        let connections = Arc::clone(&self.connections);
        let spawned = thread::Builder::new()
            .name(format!("discovery-conn-{id}"))
            .spawn(move || {
                connection::serve(stream, &registry, &limits);
                connections.open().remove(&id);
            });
        match spawned {
            Ok(t) => self.connections.threads().push(t),
            Err(e) => {
                log::warn!("cannot start a connection thread: {e}");
                if let Some(s) = self.connections.open().remove(&id) {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

/// Turns a connection away at the connection limit with a short 503.
fn refuse(mut stream: TcpStream, registry: &SharedRegistry) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "a client".to_string(), |a| a.to_string());
    log::warn!("Refused connection from {peer}: too many open connections");
    let reply = Reply::error(503, "too many open connections; retry later");
    registry.metrics().count_response(503);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = http::write_reply(&mut stream, &reply, false, false);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests;
