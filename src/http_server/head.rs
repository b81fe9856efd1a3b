//! Parsing a request head, pure, from bytes. Bodies are framed by
//! `Content-Length` only; a chunked request body is refused with 411 by the
//! connection.

use super::reply::Reply;

/// A parsed request line and the headers the server acts on.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as sent (`/networks?x=1`).
    pub target: String,
    /// The declared body length.
    pub content_length: Option<u64>,
    /// A `Transfer-Encoding` header was present.
    pub has_transfer_encoding: bool,
    /// The client asked for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// The connection may serve another request after this one.
    pub keep_alive: bool,
    /// Every header as sent, in order (at most [`MAX_HEADERS`]); names keep
    /// their case, values are trimmed. Look one up with [`RequestHead::header`].
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The value of the first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a head could not be parsed; each maps to a status and message.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP: bad request line, header or length.
    Malformed(String),
    /// An HTTP version other than 1.0 and 1.1.
    Version(String),
    /// More headers than the server accepts.
    TooManyHeaders,
}

impl HeadError {
    /// The JSON error answer for this failure.
    pub fn reply(&self) -> Reply {
        match self {
            HeadError::Malformed(why) => Reply::error(400, format!("malformed HTTP request: {why}")),
            HeadError::Version(v) => {
                Reply::error(505, format!("HTTP version {v} is not supported; use HTTP/1.1"))
            }
            HeadError::TooManyHeaders => {
                Reply::error(431, format!("more than {MAX_HEADERS} request headers"))
            }
        }
    }
}

/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 64;

/// The length of the head at the start of `buf` (through the blank line), once
/// it is complete. Accepts CRLF and bare LF line ends.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let at = i + pos + 1;
        match buf.get(at) {
            Some(b'\n') => return Some(at + 1),
            Some(b'\r') if buf.get(at + 1) == Some(&b'\n') => return Some(at + 2),
            _ => i = at,
        }
    }
    None
}

/// Parses a complete head as found by [`head_len`].
///
/// # Errors
///
/// A [`HeadError`] for a head that is not UTF-8, a bad request line or
/// header, or too many headers.
pub fn parse_head(head: &[u8]) -> Result<RequestHead, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("head is not UTF-8".into()))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(format!("bad request line {request_line:?}")));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) || !target.starts_with('/') {
        return Err(HeadError::Malformed(format!("bad request line {request_line:?}")));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => return Err(HeadError::Version(v.trim_start_matches("HTTP/").into())),
        _ => return Err(HeadError::Malformed(format!("bad request line {request_line:?}"))),
    };
    let mut head = RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        content_length: None,
        has_transfer_encoding: false,
        expect_continue: false,
        keep_alive: http11,
        headers: Vec::new(),
    };
    let mut count = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        count += 1;
        if count > MAX_HEADERS {
            return Err(HeadError::TooManyHeaders);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| HeadError::Malformed(format!("bad header line {line:?}")))?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(HeadError::Malformed(format!("bad header name {name:?}")));
        }
        apply_header(&mut head, name, value.trim())?;
        head.headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(head)
}

fn apply_header(head: &mut RequestHead, name: &str, value: &str) -> Result<(), HeadError> {
    if name.eq_ignore_ascii_case("content-length") {
        let n: u64 = value
            .parse()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| HeadError::Malformed(format!("bad Content-Length {value:?}")))?;
        if head.content_length.is_some_and(|old| old != n) {
            return Err(HeadError::Malformed("conflicting Content-Length headers".into()));
        }
        head.content_length = Some(n);
    } else if name.eq_ignore_ascii_case("transfer-encoding") {
        head.has_transfer_encoding = true;
    } else if name.eq_ignore_ascii_case("expect") {
        head.expect_continue = value.eq_ignore_ascii_case("100-continue");
    } else if name.eq_ignore_ascii_case("connection") {
        let v = value.to_ascii_lowercase();
        if v.contains("close") {
            head.keep_alive = false;
        } else if v.contains("keep-alive") {
            head.keep_alive = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_the_blank_line() {
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY"), Some(27));
        assert_eq!(head_len(b"GET / HTTP/1.1\nHost: x\n\nBODY"), Some(24));
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn a_post_head_parses() {
        let head =
            parse_head(b"POST /register HTTP/1.1\r\nHost: x\r\ncontent-length: 12\r\n\r\n").expect("valid");
        assert_eq!(head.method, "POST");
        assert_eq!(head.target, "/register");
        assert_eq!(head.content_length, Some(12));
        assert!(head.keep_alive);
    }

    #[test]
    fn connection_headers_and_versions_decide_keep_alive() {
        let h = parse_head(b"GET / HTTP/1.0\r\n\r\n").expect("valid");
        assert!(!h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").expect("valid");
        assert!(h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").expect("valid");
        assert!(!h.keep_alive);
    }

    #[test]
    fn bad_heads_are_refused_with_reasons() {
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno-colon\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            let err = parse_head(bad).expect_err("must be refused");
            assert_eq!(err.reply().status, 400, "{err:?}");
        }
        assert_eq!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n").map_err(|e| e.reply().status),
            Err(505)
        );
    }

    #[test]
    fn headers_are_kept_and_found_in_any_case() {
        let head =
            parse_head(b"POST /x HTTP/1.1\r\nX-Reflow-Timestamp:  17 \r\nHost: h\r\n\r\n").expect("valid");
        assert_eq!(head.header("x-reflow-timestamp"), Some("17"));
        assert_eq!(head.header("HOST"), Some("h"));
        assert_eq!(head.header("missing"), None);
        assert_eq!(head.headers.len(), 2);
    }
}
