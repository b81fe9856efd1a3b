//! The listening socket, the accept loop and the connection threads.
//!
//! Threads, all owned and joined by [`HttpServer::shutdown`]:
//! - `NAME-accept` accepts connections and admits them through the book
//!   ([`limits`](super::limits)). A failed `accept()` (out of file
//!   descriptors, aborted handshake…) is logged, counted and retried after a
//!   short backoff; the server never stops accepting because of one.
//! - `NAME-conn-N`, one per open connection, at most `max_connections`
//!   (plus, briefly, connections that were told to give way and are ending).
//!
//! Shutdown sets a flag, wakes the acceptor (a connection to itself, with a
//! listener timeout as the fallback), shuts down every open client socket so
//! that blocked reads return, and joins everyone.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::connection::Conn;
use super::limits::{PhaseCell, source_key};
use super::reply::{Reply, write_reply};
use super::service::{Event, Service};
use super::shared::{Handle, ServerLimits, Shared};

/// Connections the kernel may hold completed before they are accepted.
/// std's 128 fills in a burst of a few hundred connections, and the kernel
/// then drops new SYNs, good clients' included, for a 1 s retransmit.
const LISTEN_BACKLOG: i32 = 1024;
/// How often a blocked `accept()` wakes up to look at the stop flag when the
/// self-connection that normally wakes it could not be made.
const ACCEPT_POLL: Duration = Duration::from_millis(500);
/// Longest pause between retries after failed accepts.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

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

/// A running server. Dropping it shuts it down.
pub(crate) struct HttpServer<S: Service> {
    name: &'static str,
    local_addr: SocketAddr,
    shared: Arc<Shared<S>>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

/// Binds `addr` (`host:port`; a name is resolved, the first address that
/// binds wins) with a deep accept queue and the listener timeout the
/// acceptor relies on.
pub(crate) fn bind(addr: &str) -> io::Result<(TcpListener, SocketAddr)> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "the address resolves to nothing");
    for candidate in addr.to_socket_addrs()? {
        match listen(candidate) {
            Ok(listener) => {
                let listener = with_accept_timeout(listener, ACCEPT_POLL)?;
                let local = listener.local_addr()?;
                return Ok((listener, local));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A listening socket as `TcpListener::bind` makes one (address reuse on
/// Unix, so a restart does not wait out TIME_WAIT), with a backlog of
/// `LISTEN_BACKLOG` (the kernel caps it at `net.core.somaxconn`).
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

impl<S: Service> HttpServer<S> {
    /// Starts accepting on `acceptor` (bound at `local_addr`). `name`
    /// prefixes the thread names (`NAME-accept`, `NAME-conn-N`).
    pub(crate) fn start(
        name: &'static str,
        acceptor: impl Accept,
        local_addr: SocketAddr,
        limits: ServerLimits,
        service: S,
    ) -> io::Result<HttpServer<S>> {
        let shared = Arc::new(Shared::new(service, limits));
        let acceptor_state = Acceptor {
            name,
            shared: Arc::clone(&shared),
            next_id: AtomicU64::new(0),
        };
        let accept = thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || acceptor_state.run(&acceptor))?;
        Ok(HttpServer {
            name,
            local_addr,
            shared,
            accept: Mutex::new(Some(accept)),
        })
    }

    /// The address actually bound.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open now.
    pub(crate) fn open_connections(&self) -> usize {
        self.shared.book().len()
    }

    /// Stops accepting, closes every connection and joins all threads.
    /// Returns when they are gone; calling it again does nothing.
    pub(crate) fn shutdown(&self) {
        let accept = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(accept) = accept else { return };
        self.shared.begin_stopping();
        // Wake the acceptor; if this fails it notices within ACCEPT_POLL.
        let _ = TcpStream::connect_timeout(&wake_address(self.local_addr), Duration::from_millis(500));
        let _ = accept.join();
        for handle in self.shared.book().drain() {
            let _ = handle.stream.shutdown(Shutdown::Both);
        }
        let threads: Vec<JoinHandle<()>> = self.shared.threads().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        log::debug!("{} server on {} stopped", self.name, self.local_addr);
    }
}

impl<S: Service> Drop for HttpServer<S> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The address to connect to in order to wake our own `accept()`.
pub(crate) fn wake_address(local: SocketAddr) -> SocketAddr {
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
pub(crate) fn with_accept_timeout(listener: TcpListener, timeout: Duration) -> io::Result<TcpListener> {
    let as_stream = TcpStream::from(OwnedFd::from(listener));
    as_stream.set_read_timeout(Some(timeout))?;
    Ok(TcpListener::from(OwnedFd::from(as_stream)))
}

struct Acceptor<S> {
    name: &'static str,
    shared: Arc<Shared<S>>,
    next_id: AtomicU64,
}

impl<S: Service> Acceptor<S> {
    /// The accept loop: runs until the stop flag is set.
    fn run(&self, listener: &impl Accept) {
        let mut backoff = Duration::ZERO;
        while !self.shared.is_stopping() {
            match listener.accept_one() {
                Ok(stream) => {
                    backoff = Duration::ZERO;
                    if self.shared.is_stopping() {
                        break;
                    }
                    self.shared.reap();
                    self.admit(stream);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.shared.service.observe(Event::AcceptError);
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
        while waited < d && !self.shared.is_stopping() {
            thread::sleep(step);
            waited += step;
        }
    }

    fn admit(&self, stream: TcpStream) {
        let Ok(client) = stream.peer_addr() else {
            return; // Already gone.
        };
        let source = source_key(client.ip());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // One descriptor per connection: the book keeps a shared reference
        // (to wake the socket), not a duplicate.
        let stream = Arc::new(stream);
        let evicted = Arc::new(AtomicBool::new(false));
        let phase = PhaseCell::new();
        let handle = Handle {
            stream: Arc::clone(&stream),
            evicted: Arc::clone(&evicted),
        };
        let now = Instant::now();
        let admitted = {
            let mut book = self.shared.book();
            book.admit(id, source, Arc::clone(&phase), handle, now)
                .map(|victim| (victim, book.len()))
        };
        let open = match admitted {
            Ok((victim, open)) => {
                if let Some(victim) = victim {
                    victim.evict();
                    self.shared.note_eviction(client);
                }
                open
            }
            Err(refused) => {
                self.shared.service.observe(Event::Refused);
                self.shared.service.observe(Event::Response(503));
                log::warn!("Refused connection from {client}: {}", refused.text());
                refuse(&stream, refused.text());
                return;
            }
        };
        self.shared.service.observe(Event::Open(open));
        let conn = Conn {
            id,
            stream,
            client,
            source,
            phase,
            evicted,
            accepted: now,
            shared: Arc::clone(&self.shared),
            buf: Vec::new(),
            served: 0,
            overdue_read: false,
        };
        let spawned = thread::Builder::new()
            .name(format!("{}-conn-{id}", self.name))
            .spawn(move || conn.serve());
        match spawned {
            Ok(t) => self.shared.threads().push(t),
            Err(e) => {
                log::warn!("cannot start a connection thread: {e}");
                if let Some(handle) = self.shared.book().remove(id, Instant::now()) {
                    let _ = handle.stream.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

/// Turns a connection away with a short 503.
fn refuse(stream: &TcpStream, why: &str) {
    let reply = Reply::error(503, why).with_header("Retry-After", "1");
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let mut out = stream;
    let _ = write_reply(&mut out, &reply, false, false);
    let _ = out.flush();
    let _ = stream.shutdown(Shutdown::Both);
}
