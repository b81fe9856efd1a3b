//! `DiscoveryError`: what can go wrong in the discovery layer, worded so that
//! the reader knows which setting or input to change.

use std::fmt;
use std::io;

use crate::names::escaped;

/// Characters shown of a text a discovery server or the transport sent back.
const ANSWER_MAX_CHARS: usize = 512;

/// Errors of the discovery server and client.
#[derive(Debug)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The server could not bind its listening socket.
    Bind {
        /// The address as configured (`--bind`).
        addr: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A setting is out of range (a zero TTL, a zero body limit…).
    InvalidConfig(String),
    /// A discovery endpoint is not a usable `http://host:port` URL.
    InvalidEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A registration is missing a field or has a bad endpoint.
    InvalidRegistration(String),
    /// A request to a discovery endpoint failed (connect, timeout, I/O).
    Http {
        /// The URL that was requested.
        url: String,
        /// The transport's reason.
        reason: String,
    },
    /// A discovery endpoint answered with a non-success status.
    Status {
        /// The URL that was requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The server's error text, when it sent one.
        message: String,
    },
    /// A discovery endpoint answered with a body that is not the expected JSON.
    Decode {
        /// The URL that was requested.
        url: String,
        /// The parser's reason.
        reason: String,
    },
    /// An etcd member failed a request, or the cluster refused it.
    Etcd {
        /// The member (`http://host:port`).
        member: String,
        /// etcd's error text (`etcdserver: …`) or the transport's reason.
        message: String,
    },
    /// No member of the etcd cluster could serve a request.
    EtcdUnreachable {
        /// Each attempt: the member tried and why it failed.
        failures: Vec<(String, String)>,
    },
    /// The operating system refused to start a thread.
    Spawn(io::Error),
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Bind { addr, source } => {
                // Name the real cause: a port in use, an address this host
                // does not have, or a privileged port.
                write!(f, "cannot listen on {addr}: ")?;
                match source.kind() {
                    std::io::ErrorKind::AddrInUse => {
                        write!(f, "{source} (is the port in use? change --bind)")
                    }
                    std::io::ErrorKind::AddrNotAvailable => write!(
                        f,
                        "address not available on this host ({source}); \
                         bind to one of this host's addresses, or 0.0.0.0, with --bind"
                    ),
                    std::io::ErrorKind::PermissionDenied => {
                        write!(f, "{source} (ports below 1024 need privileges; change --bind)")
                    }
                    _ => write!(f, "{source} (change --bind)"),
                }
            }
            DiscoveryError::InvalidConfig(reason) => write!(f, "invalid discovery setting: {reason}"),
            DiscoveryError::InvalidEndpoint { endpoint, reason } => write!(
                f,
                "invalid discovery endpoint {:?}: {reason} (expected http://host:port, host:port \
                 or etcd://host:port[/prefix])",
                escaped(endpoint)
            ),
            DiscoveryError::InvalidRegistration(reason) => write!(f, "invalid registration: {reason}"),
            // What a server or the transport says is shown escaped and bounded:
            // these lines are logged, and a hostile server chooses the text.
            DiscoveryError::Http { url, reason } => {
                write!(
                    f,
                    "request to {url} failed: {} (is the discovery server running and reachable?)",
                    escaped(reason).max_chars(ANSWER_MAX_CHARS)
                )
            }
            DiscoveryError::Status { url, status, message } if message.is_empty() => {
                write!(f, "{url} answered HTTP {status}")
            }
            DiscoveryError::Status { url, status, message } => {
                write!(
                    f,
                    "{url} answered HTTP {status}: {}",
                    escaped(message).max_chars(ANSWER_MAX_CHARS)
                )
            }
            DiscoveryError::Decode { url, reason } => write!(
                f,
                "{url} answered with a body that is not a discovery roster: {} (is this URL a discovery server?)",
                escaped(reason).max_chars(ANSWER_MAX_CHARS)
            ),
            DiscoveryError::Etcd { member, message } => write!(
                f,
                "etcd member {member}: {}",
                escaped(message).max_chars(ANSWER_MAX_CHARS)
            ),
            DiscoveryError::EtcdUnreachable { failures } => {
                write!(f, "no etcd member could serve the request")?;
                for (i, (member, why)) in failures.iter().enumerate() {
                    let sep = if i == 0 { " (" } else { "; " };
                    write!(f, "{sep}{member}: {}", escaped(why).max_chars(ANSWER_MAX_CHARS))?;
                }
                if !failures.is_empty() {
                    write!(f, ")")?;
                }
                Ok(())
            }
            DiscoveryError::Spawn(source) => write!(f, "cannot start a discovery thread: {source}"),
        }
    }
}

impl std::error::Error for DiscoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DiscoveryError::Bind { source, .. } | DiscoveryError::Spawn(source) => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_error_names_the_flag_to_change() {
        let err = DiscoveryError::Bind {
            addr: "127.0.0.1:9000".into(),
            source: io::Error::new(io::ErrorKind::AddrInUse, "address in use"),
        };
        let text = err.to_string();
        assert!(text.contains("127.0.0.1:9000"), "{text}");
        assert!(text.contains("--bind"), "{text}");
    }

    #[test]
    fn status_error_carries_the_server_message() {
        let err = DiscoveryError::Status {
            url: "http://h:1/register".into(),
            status: 400,
            message: "field `endpoint` is empty".into(),
        };
        assert_eq!(
            err.to_string(),
            "http://h:1/register answered HTTP 400: field `endpoint` is empty"
        );
    }

    #[test]
    fn a_hostile_answer_cannot_forge_or_flood_a_log_line() {
        let err = DiscoveryError::Status {
            url: "http://h:1/register".into(),
            status: 400,
            message: format!(
                "no\n2026-01-01T00:00:00Z INFO fake \u{202e}{}",
                "x".repeat(100_000)
            ),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("http://h:1/register answered HTTP 400: no\\n2026"),
            "{text}"
        );
        assert!(!text.contains(['\n', '\u{202e}']), "{text}");
        assert!(text.len() < 1024, "{} bytes", text.len());
        assert!(text.ends_with("bytes)"), "{text}");
    }
}
