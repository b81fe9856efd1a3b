//! One client connection: read a request within its deadlines, answer it,
//! repeat while the client keeps the connection alive.
//!
//! Deadlines, all from [`ServerLimits`]: a new connection must deliver its
//! whole first request head within `head_timeout` of being accepted; on a
//! kept-alive connection the next request may start within `idle_timeout`,
//! and its head must then be complete within `head_timeout` of its first
//! byte. Head and body together get `request_timeout`. A body over the limit
//! is refused from its declared length and never read.
//!
//! The connection's [`Phase`] tells the acceptor whom to close at a cap; a
//! connection chosen to give way is woken (its read side shut down), says
//! why with a 503 if a request was under way, and ends.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::head::{self, HeadError, RequestHead};
use super::limits::{Phase, PhaseCell};
use super::reply::{Reply, write_reply};
use super::service::{Begin, Event, Service};
use super::shared::{ServerLimits, Shared};
use crate::names::escaped;

/// Characters of a refusal's reason shown in its log line: enough for any
/// reason the servers word, a bound on what a client can make them log.
const REFUSAL_MAX_CHARS: usize = 256;

/// How long a closing connection keeps reading (and discarding) what the
/// client still sends, so that the client reads the answer rather than a reset.
const LINGER: Duration = Duration::from_millis(200);

/// Why reading stopped.
enum ReadStop {
    /// The peer closed, or the socket failed or was shut down.
    Closed,
    /// The deadline passed.
    TimedOut,
    /// The head grew past the limit.
    HeadTooLarge,
}

/// What a connection thread holds.
pub(crate) struct Conn<S: Service> {
    pub(crate) id: u64,
    /// Shared with the book, which shuts it down to end a blocked read.
    pub(crate) stream: Arc<TcpStream>,
    pub(crate) client: SocketAddr,
    /// The address the per-source limits count it under.
    pub(crate) source: IpAddr,
    pub(crate) phase: Arc<PhaseCell>,
    /// Set by the acceptor when this connection must give way.
    pub(crate) evicted: Arc<AtomicBool>,
    pub(crate) accepted: Instant,
    pub(crate) shared: Arc<Shared<S>>,
    /// Bytes received but not yet used (the start of the next request).
    pub(crate) buf: Vec<u8>,
    /// Requests answered on this connection.
    pub(crate) served: u64,
    /// The one read allowed past the current request's deadline was made.
    pub(crate) overdue_read: bool,
}

impl<S: Service> Conn<S> {
    fn limits(&self) -> &ServerLimits {
        &self.shared.limits
    }

    /// Serves until the client leaves, a deadline passes, the connection
    /// gives way or the server stops; then leaves the book.
    pub(crate) fn serve(mut self) {
        let _ = self.stream.set_nodelay(true);
        let _ = self.stream.set_write_timeout(Some(self.limits().write_timeout));
        while self.serve_one() {}
        let _ = self.stream.shutdown(Shutdown::Both);
        self.shared.leave(self.id);
    }

    /// Serves one request; true when the connection stays open for another.
    fn serve_one(&mut self) -> bool {
        let (head, request_deadline) = match self.read_head() {
            Ok(read) => read,
            Err(stop) => {
                self.stopped_reading(stop, "request head not received in time");
                return false;
            }
        };
        let head = match head {
            Ok(head) => head,
            Err(err) => {
                self.send_and_close(&err.reply());
                return false;
            }
        };
        if let Err(wait) = self.shared.take_request(self.source) {
            self.shared.service.observe(Event::RateLimited);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let reply = Reply::error(
                429,
                format!("too many requests from your address; retry in {secs} s"),
            )
            .with_header("Retry-After", secs.to_string());
            self.send_and_close(&reply);
            return false;
        }
        let head_only = head.method == "HEAD";
        let Some((reply, keep_open)) = self.answer(&head, request_deadline) else {
            return false;
        };
        self.shared.service.observe(Event::Response(reply.status));
        self.log_refusal(&reply);
        let keep_alive = keep_open && head.keep_alive && !self.shared.is_stopping();
        if write_reply(&mut &*self.stream, &reply, keep_alive, head_only).is_err() {
            return false;
        }
        self.served += 1;
        self.phase.set(Phase::Returning);
        if !keep_open {
            self.linger_close();
        }
        keep_alive
    }

    /// Decides the answer, reading or discarding the body; false in the
    /// second place when the connection must close after it. `None` when
    /// the connection ended while its body was read.
    fn answer(&mut self, head: &RequestHead, deadline: Instant) -> Option<(Reply, bool)> {
        match self.shared.service.begin(head, self.client) {
            Begin::Respond(reply) => Some(self.skip_body(head, reply, deadline)),
            Begin::ReadBody { limit, finish } => {
                if head.has_transfer_encoding {
                    let reply = Reply::error(
                        411,
                        "send the body with a Content-Length header (chunked bodies are not accepted)",
                    );
                    return Some((reply, false));
                }
                let len = head.content_length.unwrap_or(0);
                if len > limit as u64 {
                    return Some((Reply::too_large(limit), false));
                }
                if head.expect_continue && len > 0 && self.buf.is_empty() {
                    let _ = (&*self.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                match self.read_body(len as usize, deadline) {
                    Ok(body) => {
                        self.phase.set(Phase::Answering);
                        Some((finish(&body), true))
                    }
                    Err(stop) => {
                        self.stopped_reading(stop, "request body not received in time");
                        None
                    }
                }
            }
        }
    }

    /// Discards a small body the route does not need, keeping the connection
    /// usable; a body over the limit or a chunked one closes it instead.
    fn skip_body(&mut self, head: &RequestHead, reply: Reply, deadline: Instant) -> (Reply, bool) {
        if head.has_transfer_encoding {
            return (reply, false);
        }
        let len = head.content_length.unwrap_or(0);
        if len > self.limits().max_body_bytes as u64 {
            return (reply, false);
        }
        let ok = len == 0 || self.read_body(len as usize, deadline).is_ok();
        self.phase.set(Phase::Answering);
        (reply, ok)
    }

    /// Reads until a complete head is buffered, then parses and consumes it.
    /// Also returns the deadline of the whole request.
    fn read_head(&mut self) -> Result<(Result<RequestHead, HeadError>, Instant), ReadStop> {
        let limits = self.limits().clone();
        let head_time = limits.head_timeout.min(limits.request_timeout);
        // A new connection's first request starts when it is accepted; a
        // later one when its first byte arrives (at once if buffered).
        let mut started = (self.served == 0).then_some(self.accepted);
        self.overdue_read = false;
        if started.is_none() && !self.buf.is_empty() {
            started = Some(Instant::now());
        }
        let idle_deadline = Instant::now() + limits.idle_timeout;
        loop {
            if let Some(len) = head::head_len(&self.buf) {
                let parsed = head::parse_head(&self.buf[..len]);
                self.buf.drain(..len);
                let begun = started.unwrap_or_else(Instant::now);
                return Ok((parsed, begun + limits.request_timeout));
            }
            if self.buf.len() > limits.max_head_bytes {
                return Err(ReadStop::HeadTooLarge);
            }
            let deadline = started.map_or(idle_deadline, |s| s + head_time);
            self.fill(deadline, limits.max_head_bytes + 1)?;
            started.get_or_insert_with(Instant::now);
        }
    }

    /// Reads exactly `len` body bytes before `deadline`.
    fn read_body(&mut self, len: usize, deadline: Instant) -> Result<Vec<u8>, ReadStop> {
        while self.buf.len() < len {
            self.fill(deadline, len)?;
        }
        Ok(self.buf.drain(..len).collect())
    }

    /// Reads once into the buffer (never beyond `cap` bytes held), waiting at
    /// most until `deadline`.
    fn fill(&mut self, deadline: Instant, cap: usize) -> Result<(), ReadStop> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            // Bytes that arrived in time but were not read yet (this thread
            // was not scheduled, on a loaded host) still count: one read
            // that waits for nothing, per request, so a client trickling
            // bytes gains at most one buffer's worth.
            if std::mem::replace(&mut self.overdue_read, true) {
                return Err(ReadStop::TimedOut);
            }
        }
        self.stream
            .set_read_timeout(Some(remaining.max(Duration::from_millis(1))))
            .map_err(|_| ReadStop::Closed)?;
        let mut chunk = [0u8; 4096];
        let room = cap.saturating_sub(self.buf.len()).clamp(1, chunk.len());
        match (&*self.stream).read(&mut chunk[..room]) {
            Ok(0) => Err(ReadStop::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(ReadStop::TimedOut)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(_) => Err(ReadStop::Closed),
        }
    }

    /// Ends a connection whose reading stopped: says why when a request was
    /// under way (408 at a deadline, 503 when it gave way to another, 431
    /// for a head too large), closes quietly otherwise.
    fn stopped_reading(&mut self, stop: ReadStop, late: &str) {
        let partial = !self.buf.is_empty();
        let reply = match stop {
            _ if self.evicted.load(Ordering::SeqCst) => {
                if !partial {
                    return;
                }
                Reply::error(
                    503,
                    "connection closed to make room for other clients (too many open connections); retry",
                )
            }
            ReadStop::HeadTooLarge => Reply::error(
                431,
                format!("request head larger than {} bytes", self.limits().max_head_bytes),
            ),
            ReadStop::TimedOut if partial => Reply::error(408, late),
            ReadStop::TimedOut | ReadStop::Closed => return,
        };
        self.send_and_close(&reply);
    }

    fn send_and_close(&mut self, reply: &Reply) {
        self.shared.service.observe(Event::Response(reply.status));
        self.log_refusal(reply);
        if self.evicted.load(Ordering::SeqCst) {
            // The slot is already given to another: do not wait on this one.
            let _ = self.stream.set_write_timeout(Some(LINGER));
        }
        if write_reply(&mut &*self.stream, reply, false, false).is_ok() {
            self.linger_close();
        }
    }

    /// One line per refused request, naming the client and the reason (the
    /// `error` text of the JSON answer). The reason can quote the client's
    /// request (a path, a field), so it is escaped and bounded. Answers that
    /// a flood produces in numbers (429, and 503 to a connection that gave
    /// way) are logged at debug and counted instead; a refused signature
    /// (401) at warn.
    fn log_refusal(&self, reply: &Reply) {
        if reply.status < 400 {
            return;
        }
        let level = match reply.status {
            429 | 503 => log::Level::Debug,
            401 => log::Level::Warn,
            _ => log::Level::Info,
        };
        log::log!(
            level,
            "Refused request from {}: {} {}",
            self.client,
            reply.status,
            escaped(&reply.error_text()).max_chars(REFUSAL_MAX_CHARS)
        );
    }

    /// Closes after an answer while the client may still be sending: stop
    /// writing, then discard a bounded amount of input for a short while, so
    /// the client reads the answer instead of a connection reset.
    fn linger_close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + LINGER;
        let mut discarded = 0usize;
        let mut sink = [0u8; 4096];
        while discarded < 256 * 1024 {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || self.stream.set_read_timeout(Some(remaining)).is_err() {
                break;
            }
            match (&*self.stream).read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::http_server::head::RequestHead;

    struct Hello;

    impl Service for Hello {
        fn begin(&self, _head: &RequestHead, _client: SocketAddr) -> Begin {
            Begin::Respond(Reply::json(200, "{}".into()))
        }
    }

    fn limits() -> ServerLimits {
        ServerLimits {
            max_connections: 4,
            max_connections_per_source: 4,
            requests_per_sec_per_source: 100,
            request_burst_per_source: 100,
            head_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_millis(200),
            write_timeout: Duration::from_secs(5),
            max_head_bytes: 8192,
            max_body_bytes: 1024,
        }
    }

    /// A connection as the acceptor makes it, accepted `ago`.
    fn conn(stream: TcpStream, ago: Duration) -> Conn<Hello> {
        let client = stream.peer_addr().expect("peer");
        Conn {
            id: 1,
            stream: Arc::new(stream),
            client,
            source: client.ip(),
            phase: PhaseCell::new(),
            evicted: Arc::new(AtomicBool::new(false)),
            accepted: Instant::now() - ago,
            shared: Arc::new(Shared::new(Hello, limits())),
            buf: Vec::new(),
            served: 0,
            overdue_read: false,
        }
    }

    fn answer_to(request: &[u8], ago: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        client.write_all(request).expect("send");
        let (stream, _) = listener.accept().expect("accept");
        // The request is in the server's socket before its thread looks.
        let mut peek = [0u8; 1];
        stream.peek(&mut peek).expect("peek");
        conn(stream, ago).serve();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn a_request_that_arrived_in_time_is_answered_when_its_thread_starts_late() {
        // Accepted a second ago, five head deadlines back: the thread was
        // not scheduled, the client was on time.
        let answer = answer_to(
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Duration::from_secs(1),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    }

    #[test]
    fn a_request_still_incomplete_past_its_deadline_gets_408() {
        let answer = answer_to(b"GET / HTTP/1.1\r\nHost:", Duration::from_secs(1));
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
}
