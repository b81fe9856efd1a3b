//! Sockets under the WebSocket layer.
//!
//! tungstenite has no read/write split, and its `read` flushes the Pong and
//! Close replies it queues. The reader therefore runs its `WebSocket` over a
//! [`WsStream`] that, once the handshake is done, is read-only: anything
//! tungstenite tries to write through it is discarded, and the writer thread
//! (which owns a second `WebSocket` over a clone of the same socket) sends the
//! replies instead. During the handshake the same stream enforces one overall
//! deadline, so a client that trickles bytes cannot hold a handshake open.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tungstenite::protocol::WebSocketConfig;

use super::config::BridgeConfig;
use super::error::{BridgeError, HandshakeError};

/// When the last byte arrived on a socket, as time since the bridge's epoch.
/// Liveness counts bytes, not frames, so a large frame that trickles in over
/// a slow link keeps its connection alive.
pub(crate) struct LastByte {
    epoch: Instant,
    micros: AtomicU64,
}

impl LastByte {
    /// Starts at `epoch.elapsed()` (the handshake just heard from the peer).
    pub(crate) fn new(epoch: Instant) -> Arc<LastByte> {
        let last = LastByte {
            epoch,
            micros: AtomicU64::new(0),
        };
        last.touch();
        Arc::new(last)
    }

    pub(crate) fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }
}

enum Mode {
    /// Reads and writes pass through, each bounded by what is left of `deadline`.
    Handshake { deadline: Instant },
    /// Reads pass through and stamp `LastByte`; writes are discarded (the
    /// writer thread writes).
    ReadOnly(Arc<LastByte>),
}

/// The stream under a reader's `WebSocket`.
pub(crate) struct WsStream {
    tcp: TcpStream,
    mode: Mode,
}

impl WsStream {
    pub(crate) fn for_handshake(tcp: TcpStream, deadline: Instant) -> Self {
        WsStream {
            tcp,
            mode: Mode::Handshake { deadline },
        }
    }

    /// Back to deadline mode: every read and write must finish by `deadline`.
    pub(crate) fn set_deadline(&mut self, deadline: Instant) {
        self.mode = Mode::Handshake { deadline };
    }

    /// Ends the handshake phase: from now on reads wait at most `read_timeout`
    /// (so the reader can look at its stop conditions) and writes go nowhere.
    pub(crate) fn make_read_only(
        &mut self,
        read_timeout: Duration,
        last_byte: Arc<LastByte>,
    ) -> io::Result<()> {
        self.tcp.set_read_timeout(Some(read_timeout))?;
        self.mode = Mode::ReadOnly(last_byte);
        Ok(())
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    fn remaining(deadline: Instant) -> io::Result<Duration> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake deadline passed",
            ));
        }
        Ok(left)
    }
}

/// Socket timeouts report `WouldBlock` on some platforms; tungstenite would
/// take that for a non-blocking socket and suspend the handshake.
fn timed_out(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "handshake deadline passed")
    } else {
        err
    }
}

impl Read for WsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.mode {
            Mode::Handshake { deadline } => loop {
                self.tcp.set_read_timeout(Some(Self::remaining(deadline)?))?;
                match self.tcp.read(buf) {
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    other => return other.map_err(timed_out),
                }
            },
            Mode::ReadOnly(ref last_byte) => {
                let n = self.tcp.read(buf)?;
                if n > 0 {
                    last_byte.touch();
                }
                Ok(n)
            }
        }
    }
}

impl Write for WsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.mode {
            Mode::Handshake { deadline } => loop {
                self.tcp.set_write_timeout(Some(Self::remaining(deadline)?))?;
                match self.tcp.write(buf) {
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    other => return other.map_err(timed_out),
                }
            },
            Mode::ReadOnly(_) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.mode {
            Mode::Handshake { .. } => self.tcp.flush(),
            Mode::ReadOnly(_) => Ok(()),
        }
    }
}

/// tungstenite settings derived from the bridge's bounds.
pub(crate) fn ws_config(config: &BridgeConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_bytes)
        .write_buffer_size(config.write_buffer_bytes)
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes))
}

/// Resolves `endpoint` (`host:port`) and connects to the first address that
/// answers, all within `timeout`.
pub(crate) fn connect_tcp(endpoint: &str, timeout: Duration) -> Result<TcpStream, BridgeError> {
    let addrs: Vec<SocketAddr> = endpoint
        .to_socket_addrs()
        .map_err(|err| BridgeError::Resolve {
            endpoint: endpoint.to_string(),
            reason: err.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        let reason = "no addresses".to_string();
        return Err(BridgeError::Resolve {
            endpoint: endpoint.to_string(),
            reason,
        });
    }
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(tcp) => return Ok(tcp),
            Err(err) => last_error = Some(err),
        }
    }
    let endpoint = endpoint.to_string();
    Err(match last_error {
        Some(err) if err.kind() != io::ErrorKind::TimedOut => BridgeError::Connect {
            endpoint,
            source: err,
        },
        _ => BridgeError::ConnectTimedOut { endpoint, timeout },
    })
}

/// Reads frames until a text frame arrives (the handshake frames).
pub(crate) fn read_text(
    ws: &mut tungstenite::WebSocket<WsStream>,
    limit: Duration,
) -> Result<String, HandshakeError> {
    use tungstenite::Message as WsMessage;
    loop {
        match ws.read() {
            Ok(WsMessage::Text(text)) => return Ok(text.as_str().to_string()),
            Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => {}
            Ok(WsMessage::Close(_)) => return Err(HandshakeError::Closed),
            Ok(_) => return Err(HandshakeError::Malformed("expected a text frame".into())),
            Err(err) => return Err(handshake_error(err, limit)),
        }
    }
}

/// Maps a WebSocket error during the handshake to a `HandshakeError`.
pub(crate) fn handshake_error(err: tungstenite::Error, limit: Duration) -> HandshakeError {
    use tungstenite::Error as WsError;
    match err {
        WsError::Io(io) if io.kind() == io::ErrorKind::TimedOut => HandshakeError::TimedOut(limit),
        WsError::Io(io) => HandshakeError::Io(io),
        WsError::ConnectionClosed | WsError::AlreadyClosed => HandshakeError::Closed,
        WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            HandshakeError::Closed
        }
        WsError::Http(response) => HandshakeError::Upgrade(format!("HTTP status {}", response.status())),
        other => HandshakeError::Upgrade(other.to_string()),
    }
}

/// Maps the failure of tungstenite's upgrade (client or server side).
pub(crate) fn upgrade_error<R: tungstenite::handshake::HandshakeRole>(
    err: tungstenite::HandshakeError<R>,
    limit: Duration,
) -> HandshakeError {
    match err {
        tungstenite::HandshakeError::Failure(err) => handshake_error(err, limit),
        tungstenite::HandshakeError::Interrupted(_) => HandshakeError::TimedOut(limit),
    }
}

/// Errors after which the same call is simply made again. `Interrupted` comes
/// from a socket call with a timeout when the process was stopped and resumed
/// (SIGSTOP/SIGCONT), even without a signal handler; tungstenite keeps its
/// buffers intact across it.
pub(crate) fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
