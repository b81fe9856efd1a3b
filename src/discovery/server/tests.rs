use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::http_server::server::{wake_address, with_accept_timeout};

/// A listener whose first `failures` accepts fail as if the process were out
/// of file descriptors.
struct FailingFirst {
    inner: TcpListener,
    failures: AtomicUsize,
}

impl Accept for FailingFirst {
    fn accept_one(&self) -> io::Result<TcpStream> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(24)); // EMFILE
        }
        self.inner.accept_one()
    }
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn failed_accepts_are_retried_and_counted() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let listener = with_accept_timeout(listener, Duration::from_millis(500)).expect("timeout");
    let addr = listener.local_addr().expect("addr");
    let acceptor = FailingFirst {
        inner: listener,
        failures: AtomicUsize::new(3),
    };
    let server = DiscoveryServer::start_with(acceptor, addr, &ServerConfig::new("unused")).expect("start");
    let answer = get(addr, "/healthz");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(server.registry().metrics().accept_errors(), 3);
    server.shutdown();
}

#[test]
fn shutdown_closes_idle_connections_and_returns() {
    let server = DiscoveryServer::start(ServerConfig::new("127.0.0.1:0")).expect("start");
    let addr = server.local_addr();
    let mut idle = TcpStream::connect(addr).expect("connect");
    // A request proves the connection thread is running before we stop.
    write!(idle, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
    let mut buf = [0u8; 512];
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let n = idle.read(&mut buf).expect("answer");
    assert!(n > 0);
    server.shutdown();
    // The server closed our kept-alive connection.
    assert_eq!(idle.read(&mut buf).expect("eof"), 0);
}

#[test]
fn zero_ttl_is_refused() {
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.entry_ttl = Duration::ZERO;
    let err = DiscoveryServer::start(config).err().expect("refused");
    assert!(err.to_string().contains("TTL"), "{err}");
}

#[test]
fn the_wake_address_of_a_wildcard_bind_is_loopback() {
    let any: SocketAddr = "0.0.0.0:9000".parse().expect("addr");
    assert_eq!(
        wake_address(any),
        "127.0.0.1:9000".parse::<SocketAddr>().expect("addr")
    );
}
