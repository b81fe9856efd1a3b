//! Helpers shared by the discovery integration tests: a guard around the real
//! `reflow-discovery` process, raw HTTP over loopback, and waiting on
//! conditions with deadlines.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// Generous bound for anything that should happen "soon" on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The real server binary, killed when the guard drops (also when a test panics).
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl ServerProcess {
    /// Starts `reflow-discovery --bind 127.0.0.1:0 ARGS…` and waits for its
    /// "listening on" line to learn the port.
    pub fn start(args: &[&str]) -> ServerProcess {
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_reflow-discovery")), args)
    }

    /// As [`start`](Self::start), through a prepared command (e.g. `prlimit`).
    pub fn start_with(mut command: Command, args: &[&str]) -> ServerProcess {
        command
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start reflow-discovery");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, log) = crossbeam_channel::unbounded();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerProcess {
            child,
            addr: "127.0.0.1:1".parse().expect("addr"),
            log,
            seen: Vec::new(),
        };
        let line = server.wait_for_log("reflow discovery server listening on http://");
        let addr = line
            .rsplit("http://")
            .next()
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        server.addr = addr;
        server
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no log line with {needle:?}; saw {:#?}", self.seen),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("server exited before logging {needle:?}; saw {:#?}", self.seen)
                }
            }
        }
    }

    /// The server's process id (for `/proc/PID/…`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `signal` (e.g. "TERM") with the `kill` command.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body))
    }

    /// The `error` text of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field in {:?}", self.body))
            .to_string()
    }
}

/// Parses a whole response as read until the server closed.
pub fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Sends raw bytes and reads one answer: up to its `Content-Length`, or until
/// the server closes.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Answer {
    exchange(TcpStream::connect(addr).expect("connect"), request)
}

/// A connection to `addr` from the local address `from` (another loopback
/// address such as 127.0.0.2, to stand for another client host).
pub fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&addr.into(), PATIENCE)?;
    Ok(socket.into())
}

/// `METHOD path` from the local address `from`, closing after the answer.
pub fn http_from(from: std::net::IpAddr, addr: SocketAddr, method: &str, path: &str) -> Answer {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    exchange(connect_from(from, addr).expect("connect"), request.as_bytes())
}

/// Sends `request` on `s` and reads one answer.
fn exchange(mut s: TcpStream, request: &[u8]) -> Answer {
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s.write_all(request).expect("send");
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while !is_complete(&out) {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            // The server may reset after answering when it did not read everything.
            Err(_) => break,
        }
    }
    parse_answer(&out)
}

/// True once `raw` holds a head and as many body bytes as it declares.
fn is_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .is_some_and(|len| body.len() >= len)
}

/// `METHOD path` with an optional body, closing after the answer.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Answer {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if let Some(body) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    raw(addr, req.as_bytes())
}

/// A registration body.
pub fn registration(network: &str, instance: &str, endpoint: &str) -> String {
    serde_json::json!({
        "network_id": network,
        "instance_id": instance,
        "endpoint": endpoint,
        "capabilities": ["actor_messaging"],
    })
    .to_string()
}

/// Registers and asserts success.
pub fn register(addr: SocketAddr, network: &str, instance: &str, endpoint: &str) {
    let answer = http(
        addr,
        "POST",
        "/register",
        Some(&registration(network, instance, endpoint)),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// The live roster.
pub fn networks(addr: SocketAddr) -> Vec<serde_json::Value> {
    let answer = http(addr, "GET", "/networks", None);
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.json().as_array().cloned().expect("array")
}

/// Polls `condition` until it holds or `PATIENCE` runs out.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(25));
    }
}
