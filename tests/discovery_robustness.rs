//! The real server under hostile or unlucky conditions: slow and silent
//! clients and their deadlines, the connection cap, and failing `accept()`
//! calls. The slowloris floods are in `discovery_slowloris.rs`.

mod discovery_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use discovery_support::*;

/// Reads until the server closes the connection; returns what it sent.
fn read_until_closed(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slow_and_silent_clients_do_not_hold_up_others() {
    // Deadlines, not caps, are under test: room for all 120 from one address.
    let server = ServerProcess::start(&[
        "--request-timeout-secs",
        "2",
        "--idle-timeout-secs",
        "2",
        "--max-connections-per-ip",
        "200",
    ]);
    register(server.addr, "alpha", "alpha-1", "127.0.0.1:9100");
    let mut silent = Vec::new();
    let mut partial_heads = Vec::new();
    let mut partial_bodies = Vec::new();
    for _ in 0..40 {
        silent.push(TcpStream::connect(server.addr).expect("connect"));
        let mut s = TcpStream::connect(server.addr).expect("connect");
        s.write_all(b"GET /networks HTTP/1.1\r\nHo").expect("send");
        partial_heads.push(s);
        let mut s = TcpStream::connect(server.addr).expect("connect");
        s.write_all(b"POST /register HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n{\"netw")
            .expect("send");
        partial_bodies.push(s);
    }
    // With 120 stalled connections open, other clients are still answered.
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(networks(server.addr).len(), 1);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "answer took {:?}",
            started.elapsed()
        );
    }
    // And the stalled ones are cut off at their deadlines: silent ones are
    // closed quietly, partial requests get 408.
    assert_eq!(read_until_closed(&mut silent[0]), "");
    assert!(read_until_closed(&mut partial_heads[0]).starts_with("HTTP/1.1 408"));
    let answer = read_until_closed(&mut partial_bodies[0]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("not received in time"), "{answer}");
    assert_eq!(networks(server.addr).len(), 1);
}

#[test]
fn a_client_trickling_bytes_is_cut_at_the_request_deadline() {
    let server = ServerProcess::start(&["--request-timeout-secs", "1"]);
    let mut s = TcpStream::connect(server.addr).expect("connect");
    let started = Instant::now();
    // One byte every 100 ms never completes a head before the deadline.
    for b in b"GET /networks HTTP/1.1\r\nX-Slow: ".iter().cycle().take(200) {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let answer = read_until_closed(&mut s);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn at_the_connection_cap_the_oldest_idle_connection_makes_room() {
    let server = ServerProcess::start(&["--max-connections", "4", "--idle-timeout-secs", "30"]);
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(server.addr).expect("connect");
        // A finished request proves this connection holds a slot.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("send");
        let mut buf = [0u8; 256];
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
        assert!(s.read(&mut buf).expect("answer") > 0);
        held.push(s);
    }
    // A fifth client is served: the oldest kept-alive connection, idle
    // between requests, is closed (quietly: it had no request under way).
    let answer = http(server.addr, "GET", "/healthz", None);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(read_until_closed(&mut held[0]), "");
    // The three younger ones still hold theirs. Ask the youngest for the
    // metrics: a new connection could itself evict one more while the
    // server has not yet seen the fifth client's close.
    let mut s = held.pop().expect("youngest");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("send");
    let metrics = read_until_closed(&mut s);
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("reflow_discovery_connections_evicted_total 1\n"),
        "{metrics}"
    );
}

/// Runs the server with a file-descriptor limit so low that `accept()` fails
/// with "too many open files" once enough clients connect; the server must log
/// it, keep trying, and serve again once the clients leave.
#[test]
fn accept_failures_are_survived() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("prlimit not installed; accept-failure test skipped");
        return;
    }
    let mut command = Command::new("prlimit");
    command.args(["--nofile=40:40", "--", env!("CARGO_BIN_EXE_reflow-discovery")]);
    let mut server = ServerProcess::start_with(command, &["--max-connections", "1000"]);
    let mut clients = Vec::new();
    for _ in 0..80 {
        // The kernel completes connections into the backlog even when the
        // server cannot accept them.
        if let Ok(s) = TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)) {
            clients.push(s);
        }
    }
    let line = server.wait_for_log("accept failed");
    assert!(line.contains("WARN"), "{line}");
    eprintln!("server logged: {line}");
    clients.clear();
    wait_until("the server to accept again", || {
        TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)).is_ok()
            && http(server.addr, "GET", "/healthz", None).status == 200
    });
    let metrics = http(server.addr, "GET", "/metrics", None).body;
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("reflow_discovery_accept_errors_total "))
        .and_then(|v| v.parse().ok())
        .expect("accept error counter");
    assert!(errors > 0, "{metrics}");
}
