//! What the accept loop and every connection thread of one server share:
//! the limits, the book of open connections, the stop flag and the
//! threads to join.

use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::limits::{Book, Caps};
use super::service::{Event, Service};

/// Connections closed to make room are reported at warn at most this often
/// (each one at debug).
const EVICTION_WARN_EVERY: Duration = Duration::from_secs(60);

/// Bounds of an [`HttpServer`]: connections, per-source limits, deadlines
/// and sizes. Every field is documented where a server built on it is
/// configured (`ServerConfig` of discovery, the peer's admin listener).
#[derive(Clone, Debug)]
pub(crate) struct ServerLimits {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_source: usize,
    pub(crate) requests_per_sec_per_source: u32,
    pub(crate) request_burst_per_source: u32,
    pub(crate) head_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_head_bytes: usize,
    /// Bodies a route does not need are discarded up to this size (the
    /// connection is closed instead beyond it).
    pub(crate) max_body_bytes: usize,
}

/// What the book keeps of a connection: the socket (to wake it) and the
/// flag that tells it why it woke.
pub(super) struct Handle {
    pub(super) stream: Arc<TcpStream>,
    pub(super) evicted: Arc<AtomicBool>,
}

impl Handle {
    /// Wakes the connection's blocked read; it then answers 503 if a request
    /// was under way and ends.
    pub(super) fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(Shutdown::Read);
    }
}

/// What the acceptor and every connection thread share.
pub(crate) struct Shared<S> {
    pub(crate) service: S,
    pub(crate) limits: ServerLimits,
    book: Mutex<Book<Handle>>,
    stopping: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    evictions: Mutex<EvictionLog>,
}

/// Counts evictions between two warn lines.
#[derive(Default)]
struct EvictionLog {
    last_warn: Option<Instant>,
    unreported: u64,
}

impl<S: Service> Shared<S> {
    /// The state of a server answering with `service` within `limits`.
    pub(crate) fn new(service: S, limits: ServerLimits) -> Shared<S> {
        let caps = Caps {
            max_connections: limits.max_connections,
            max_connections_per_source: limits.max_connections_per_source,
            requests_per_sec: limits.requests_per_sec_per_source,
            request_burst: limits.request_burst_per_source,
        };
        Shared {
            service,
            limits,
            book: Mutex::new(Book::new(caps)),
            stopping: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            evictions: Mutex::new(EvictionLog::default()),
        }
    }

    pub(super) fn book(&self) -> MutexGuard<'_, Book<Handle>> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on the acceptor and every connection wind down.
    pub(super) fn begin_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A connection thread ends: its place in the book is free.
    pub(crate) fn leave(&self, id: u64) {
        let open = {
            let mut book = self.book();
            book.remove(id, Instant::now());
            book.len()
        };
        self.service.observe(Event::Open(open));
    }

    /// Spends one request of `source`'s budget.
    pub(crate) fn take_request(&self, source: IpAddr) -> Result<(), Duration> {
        self.book().take_request(source, Instant::now())
    }

    /// Joins the threads of connections that are over.
    pub(super) fn reap(&self) {
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

    pub(super) fn note_eviction(&self, client: SocketAddr) {
        self.service.observe(Event::Evicted);
        log::debug!("Closed a connection to make room for one from {client}");
        let mut log = self.evictions.lock().unwrap_or_else(|p| p.into_inner());
        log.unreported += 1;
        let now = Instant::now();
        if log.last_warn.is_none_or(|at| now - at >= EVICTION_WARN_EVERY) {
            log::warn!(
                "Closed {} connection(s) that had not completed a request to make room for new ones \
                 (at the connection limit, or a source at its own); the latest from {client}",
                log.unreported
            );
            log.last_warn = Some(now);
            log.unreported = 0;
        }
    }
}
