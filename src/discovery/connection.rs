//! One client connection of the discovery server: read a request with a
//! deadline, answer it, repeat while the client keeps the connection alive.
//!
//! Every read has a deadline, so a slow or silent client costs one connection
//! thread for at most `idle_timeout` (waiting for a request) plus
//! `request_timeout` (receiving it), never the server. A body over the limit is
//! refused from its declared length and never read.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::{self, RequestHead};
use super::router::{self, Reply, SharedRegistry, Step};
use crate::names::escaped;

/// Characters of a refusal's reason shown in its log line: enough for any
/// reason the server words, a bound on what a client can make it log.
const REFUSAL_MAX_CHARS: usize = 256;

/// Time and size bounds of one connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnLimits {
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub write_timeout: Duration,
    pub max_head_bytes: usize,
}

/// Why reading stopped.
enum ReadStop {
    /// The peer closed, or the socket failed or was shut down.
    Closed,
    /// The deadline passed.
    TimedOut,
    /// The head grew past the limit.
    HeadTooLarge,
}

struct Conn<'a> {
    /// Shared with the server, which shuts it down to end a blocked read.
    stream: Arc<TcpStream>,
    registry: &'a SharedRegistry,
    limits: &'a ConnLimits,
    /// Bytes received but not yet used (the start of the next request).
    buf: Vec<u8>,
    /// The client's address: a wildcard endpoint is registered under it.
    source: Option<IpAddr>,
}

/// Serves `stream` until the client leaves, a deadline passes or the socket is
/// shut down from outside (server shutdown).
pub(crate) fn serve(stream: Arc<TcpStream>, registry: &SharedRegistry, limits: &ConnLimits) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(limits.write_timeout));
    let source = stream.peer_addr().ok().map(|a| a.ip());
    let mut conn = Conn {
        stream,
        registry,
        limits,
        buf: Vec::with_capacity(1024),
        source,
    };
    while conn.serve_one() {}
    let _ = conn.stream.shutdown(Shutdown::Both);
}

impl Conn<'_> {
    /// Serves one request; true when the connection stays open for another.
    fn serve_one(&mut self) -> bool {
        let head = match self.read_head() {
            Ok(head) => head,
            Err(ReadStop::Closed) => return false,
            Err(ReadStop::TimedOut) => {
                if !self.buf.is_empty() {
                    self.send_and_close(&Reply::error(408, "request not received in time"));
                }
                return false;
            }
            Err(ReadStop::HeadTooLarge) => {
                let reply = Reply::error(
                    431,
                    format!("request head larger than {} bytes", self.limits.max_head_bytes),
                );
                self.send_and_close(&reply);
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
        let head_only = head.method == "HEAD";
        let (reply, keep_open) = self.answer(&head);
        self.registry.metrics().count_response(reply.status);
        self.log_refusal(&reply);
        let keep_alive = keep_open && head.keep_alive;
        if http::write_reply(&mut &*self.stream, &reply, keep_alive, head_only).is_err() {
            return false;
        }
        if !keep_open {
            self.linger_close();
        }
        keep_alive
    }

    /// Decides the answer; false in the second place when the rest of the
    /// request was not consumed and the connection must close.
    fn answer(&mut self, head: &RequestHead) -> (Reply, bool) {
        let path = router::path_of(&head.target);
        match (path, head.method.as_str()) {
            ("/healthz", "GET" | "HEAD") => {
                return self.skip_body(head, Reply::json(200, r#"{"status":"ok"}"#.into()));
            }
            ("/metrics", "GET" | "HEAD") => {
                let mut reply = Reply::json(200, self.registry.render_metrics());
                reply.content_type = "text/plain; version=0.0.4";
                return self.skip_body(head, reply);
            }
            ("/healthz" | "/metrics", method) => {
                let mut reply = Reply::error(405, format!("method {method} not allowed on {path}; use GET"));
                reply.allow = Some("GET");
                return self.skip_body(head, reply);
            }
            _ => {}
        }
        match router::begin(self.registry, &head.method, &head.target, head.content_length) {
            Step::NotDiscovery => self.skip_body(head, Reply::error(404, format!("no route {path}"))),
            Step::Respond(reply) if reply.status == 413 => (reply, false),
            Step::Respond(reply) => self.skip_body(head, reply),
            Step::ReadBody { limit } => match self.read_request_body(head, limit) {
                Ok(body) => (
                    router::finish_register_from(self.registry, &body, self.source),
                    true,
                ),
                Err(refusal) => (refusal, false),
            },
            Step::ReadDeregisterBody { limit, network_id } => match self.read_request_body(head, limit) {
                Ok(body) => (router::finish_deregister(self.registry, &network_id, &body), true),
                Err(refusal) => (refusal, false),
            },
        }
    }

    /// Reads a body the route needs (at most `limit`, checked by the
    /// router), or the answer that ends the connection instead.
    fn read_request_body(&mut self, head: &RequestHead, limit: usize) -> Result<Vec<u8>, Reply> {
        if head.has_transfer_encoding {
            return Err(Reply::error(
                411,
                "send the body with a Content-Length header (chunked bodies are not accepted)",
            ));
        }
        let len = head.content_length.unwrap_or(0) as usize;
        if head.expect_continue && len > 0 && self.buf.is_empty() {
            let _ = (&*self.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.read_body(len, limit).map_err(|stop| match stop {
            ReadStop::TimedOut => Reply::error(408, "request body not received in time"),
            _ => Reply::error(400, "connection closed before the body was complete"),
        })
    }

    /// Discards a small body the route does not need, keeping the connection
    /// usable; a body over the limit or a chunked one closes it instead.
    fn skip_body(&mut self, head: &RequestHead, reply: Reply) -> (Reply, bool) {
        if head.has_transfer_encoding {
            return (reply, false);
        }
        let len = head.content_length.unwrap_or(0);
        if len == 0 {
            return (reply, true);
        }
        let limit = self.registry.max_body_bytes();
        if len > limit as u64 {
            return (reply, false);
        }
        let ok = self.read_body(len as usize, limit).is_ok();
        (reply, ok)
    }

    /// Reads until a complete head is buffered, then parses and consumes it.
    fn read_head(&mut self) -> Result<Result<RequestHead, http::HeadError>, ReadStop> {
        let mut deadline = Instant::now() + self.limits.idle_timeout;
        let mut started = !self.buf.is_empty();
        if started {
            deadline = Instant::now() + self.limits.request_timeout;
        }
        loop {
            if let Some(len) = http::head_len(&self.buf) {
                let parsed = http::parse_head(&self.buf[..len]);
                self.buf.drain(..len);
                return Ok(parsed);
            }
            if self.buf.len() > self.limits.max_head_bytes {
                return Err(ReadStop::HeadTooLarge);
            }
            self.fill(deadline, self.limits.max_head_bytes + 1)?;
            if !started {
                started = true;
                deadline = Instant::now() + self.limits.request_timeout;
            }
        }
    }

    /// Reads exactly `len` body bytes (`len <= limit`), within the request deadline.
    fn read_body(&mut self, len: usize, limit: usize) -> Result<Vec<u8>, ReadStop> {
        debug_assert!(len <= limit);
        let deadline = Instant::now() + self.limits.request_timeout;
        while self.buf.len() < len {
            let want = len - self.buf.len();
            self.fill(deadline, self.buf.len() + want)?;
        }
        Ok(self.buf.drain(..len).collect())
    }

    /// Reads once into the buffer (never beyond `cap` bytes held), waiting at
    /// most until `deadline`.
    fn fill(&mut self, deadline: Instant, cap: usize) -> Result<(), ReadStop> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ReadStop::TimedOut);
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

    fn send_and_close(&mut self, reply: &Reply) {
        self.registry.metrics().count_response(reply.status);
        self.log_refusal(reply);
        if http::write_reply(&mut &*self.stream, reply, false, false).is_ok() {
            self.linger_close();
        }
    }

    /// One info line per refused request, naming the client and the reason
    /// (the `error` text of the JSON answer). The reason can quote the
    /// client's request (a path, a field), so it is escaped and bounded.
    fn log_refusal(&self, reply: &Reply) {
        if reply.status < 400 {
            return;
        }
        let peer = self
            .stream
            .peer_addr()
            .map_or_else(|_| "a client".to_string(), |a| a.to_string());
        let why = serde_json::from_str::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_default();
        log::info!(
            "Refused request from {peer}: {} {}",
            reply.status,
            escaped(&why).max_chars(REFUSAL_MAX_CHARS)
        );
    }

    /// Closes after an answer while the client may still be sending: stop
    /// writing, then discard a bounded amount of input for a short while, so
    /// the client reads the answer instead of a connection reset.
    fn linger_close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + Duration::from_millis(200);
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
