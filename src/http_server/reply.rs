//! An answer ([`Reply`]) and how it is written as an HTTP/1.1 response.

use std::io::{self, Write};

/// `Content-Type` of JSON answers.
pub(crate) const JSON: &str = "application/json";

/// `Content-Type` of the Prometheus text exposition format.
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

/// A response decided by a route.
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
    /// Other headers to send (`Retry-After`, `WWW-Authenticate`…). Values
    /// are the server's own words, never a client's.
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: JSON,
            body,
            allow: None,
            headers: Vec::new(),
        }
    }

    /// A JSON error answer `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        let body = serde_json::json!({ "error": message.into() }).to_string();
        Reply::json(status, body)
    }

    /// A 405 answer naming the method that was used and the one to use.
    pub fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> Reply {
        let mut reply = Reply::error(405, format!("method {method} not allowed on {path}; use {allow}"));
        reply.allow = Some(allow);
        reply
    }

    /// The same answer with one more header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The 413 answer for a body over `limit` bytes.
    pub fn too_large(limit: usize) -> Reply {
        Reply::error(
            413,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// The `error` text of a JSON error answer, or "" (for log lines).
    pub fn error_text(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_default()
    }
}

/// The reason phrase for the statuses the servers send.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes `reply` as one HTTP/1.1 response; `head_only` leaves out the body
/// (for `HEAD`), `keep_alive` chooses the `Connection` header.
pub(crate) fn write_reply(
    out: &mut impl Write,
    reply: &Reply,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    let allow = reply.allow.map(|a| ("Allow", a.to_string()));
    for (name, value) in allow.iter().chain(&reply.headers) {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(reply.body.as_bytes());
    }
    out.write_all(&bytes)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_written_with_length_allow_and_headers() {
        let mut reply = Reply::error(405, "no").with_header("Retry-After", "1");
        reply.allow = Some("POST");
        let mut out = Vec::new();
        write_reply(&mut out, &reply, false, false).expect("write to vec");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{text}");
        assert!(text.contains("Allow: POST\r\nRetry-After: 1\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"error\":\"no\"}"));
        assert_eq!(reply.error_text(), "no");
    }
}
