//! Hostile input on a real `reflow-discovery` process, in HTTP terms: random
//! bytes, huge heads, absurd declared lengths, pathological JSON bodies,
//! floods past `--max-connections` and bodies dripped a byte at a time.
//!
//! Every case ends with a 4xx/5xx answer or a closed connection, a log line,
//! the server still answering a good client, and its resident memory (VmRSS)
//! within a generous bound of what it was before. Loops are bounded in count
//! and time; everything stays on 127.0.0.1.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::harness::{self, Echo, Proc, address_in};
use common::rng::Rng;

const WAIT: Duration = Duration::from_secs(20);
const IO: Duration = Duration::from_secs(5);
const RSS_SLACK_KIB: u64 = 64 * 1024;

struct Server {
    proc: Proc,
    addr: SocketAddr,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut all = vec!["--bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let bin = Path::new(env!("CARGO_BIN_EXE_reflow-discovery"));
        let proc = Proc::spawn("discovery", bin, &all, &[], Echo::Quiet);
        let line = proc.wait_for("listening on", WAIT).unwrap();
        let addr = address_in(&line, "listening on ").parse().expect("address");
        Server { proc, addr }
    }

    fn rss_kib(&self) -> u64 {
        harness::vm_rss_kib(&self.proc.pid().to_string()).expect("VmRSS of the server")
    }

    /// Waits for `n` log lines containing `needle` in all.
    fn wait_count(&self, needle: &str, n: usize) {
        self.proc
            .wait_for_count(needle, n, WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// A good client registers and finds itself in the roster.
    fn serves_a_good_client(&self, network: &str) {
        let body = format!(
            r#"{{"network_id":"{network}","instance_id":"{network}-1","endpoint":"127.0.0.1:9100"}}"#
        );
        let (status, answer) = request(self.addr, &post("/register", body.as_bytes())).expect("register");
        assert_eq!(status, 200, "{answer}");
        let (status, roster) = request(
            self.addr,
            b"GET /networks HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .expect("roster");
        assert_eq!(status, 200);
        assert!(
            roster.contains(&format!("\"network_id\":\"{network}\"")),
            "{roster}"
        );
    }

    fn assert_rss_bounded(&self, before: u64, what: &str) {
        let after = self.rss_kib();
        eprintln!("{what}: VmRSS {before} KiB before, {after} KiB after");
        assert!(
            after <= before + RSS_SLACK_KIB,
            "{what}: VmRSS grew from {before} KiB to {after} KiB"
        );
    }
}

/// Flags that lift the per-address request budget, for tests that send a
/// burst of requests from 127.0.0.1 to exercise something else.
const UNLIMITED_REQUESTS: [&str; 4] = [
    "--requests-per-sec-per-ip",
    "1000000",
    "--request-burst-per-ip",
    "1000000",
];

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Sends `bytes` and reads until the server closes: the status (0 when the
/// server closed without answering) and the body.
fn request(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<(u16, String)> {
    let mut tcp = TcpStream::connect_timeout(&addr, IO)?;
    tcp.set_read_timeout(Some(IO))?;
    tcp.set_write_timeout(Some(IO))?;
    // The server may answer and close before reading everything.
    let _ = tcp.write_all(bytes);
    read_answer(&mut tcp)
}

fn read_answer(tcp: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tcp.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Err(e),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[test]
fn random_bytes_get_an_error_answer_or_a_close() {
    let server = Server::start(&["--request-timeout-secs", "2"]);
    server.serves_a_good_client("warmup");
    let before = server.rss_kib();
    let total = 600;
    let answered = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let addr = server.addr;
            let answered = Arc::clone(&answered);
            std::thread::spawn(move || {
                let mut rng = Rng(0xd15c_0000 + t);
                for i in 0..total / 4 {
                    let mut bytes = match i % 3 {
                        0 => b"POST /register HTTP/1.1\r\n".to_vec(),
                        1 => b"GET /".to_vec(),
                        _ => Vec::new(),
                    };
                    let n = 1 + (rng.next() % 12_000) as usize;
                    bytes.extend(rng.bytes(n));
                    bytes.extend_from_slice(b"\r\n\r\n");
                    let (status, body) = request(addr, &bytes).expect("an answer or a close in time");
                    assert!(status == 0 || status >= 400, "{status} {body}");
                    if status != 0 {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let answered = answered.load(Ordering::Relaxed);
    eprintln!("{answered} of {total} garbage requests answered with an error");
    assert!(answered >= total / 2);
    server.wait_count("Refused request from", answered);
    server.serves_a_good_client("good");
    server.assert_rss_bounded(before, "random bytes");
}

#[test]
fn huge_heads_and_absurd_lengths_are_refused_without_buffering() {
    let server = Server::start(&["--max-body-bytes", "4096"]);
    server.serves_a_good_client("warmup");
    let before = server.rss_kib();
    let big_header = format!(
        "GET /networks HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "h".repeat(200 * 1024)
    );
    let many_headers = format!(
        "GET /networks HTTP/1.1\r\n{}\r\n",
        (0..100).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
    );
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (big_header.into_bytes(), 431),
        (many_headers.into_bytes(), 431),
        (b"GET /networks HTTP/1.1\r\nX-Bad: \xff\xfe\r\n\r\n".to_vec(), 400),
        (
            format!("POST /register HTTP/1.1\r\nContent-Length: {}\r\n\r\n", u64::MAX).into_bytes(),
            413,
        ),
        (
            format!(
                "POST /register HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                1u64 << 63
            )
            .into_bytes(),
            413,
        ),
        (
            b"POST /register HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"POST /register HTTP/1.1\r\nContent-Length: 1e9\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"POST /register HTTP/1.1\r\nContent-Length: +5\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"GET /healthz HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n".to_vec(),
            200,
        ),
    ];
    let rounds = 40;
    for _ in 0..rounds {
        for (bytes, expected) in &cases {
            let (status, body) = request(server.addr, bytes).expect("answered in time");
            assert_eq!(status, *expected, "{body}");
        }
    }
    server.wait_count("Refused request from", rounds * (cases.len() - 1));
    server.wait_count("431 request head larger than", rounds);
    server.wait_count("413 request body is larger than", 2 * rounds);
    server.serves_a_good_client("good");
    server.assert_rss_bounded(before, "huge heads and lengths");
}

#[test]
fn pathological_json_bodies_get_400() {
    // 240 requests in a burst: room in the per-address budget for all.
    let server = Server::start(&UNLIMITED_REQUESTS);
    server.serves_a_good_client("warmup");
    let before = server.rss_kib();
    let limit = 16 * 1024;
    let fill = |unit: &str| unit.repeat((limit - 16) / unit.len());
    let mut wide = String::from("{");
    while wide.len() < limit - 64 {
        wide.push_str(&format!("\"k{}\":1,", wide.len()));
    }
    wide.push_str("\"network_id\":5}");
    let caps = format!(
        r#"{{"network_id":"a","instance_id":"a-1","endpoint":"h:1","capabilities":[{}"x"]}}"#,
        "\"c\",".repeat(1000)
    );
    let bodies: Vec<Vec<u8>> = vec![
        fill("[").into_bytes(),
        fill("{\"a\":").into_bytes(),
        format!(r#"{{"network_id":{}}}"#, fill("[")).into_bytes(),
        wide.into_bytes(),
        caps.into_bytes(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"1e999999".to_vec(),
        br#"{"network_id":"a\u0000","instance_id":"a-1","endpoint":"h:1"}"#.to_vec(),
        br#"{"network_id":"a","instance_id":"a-1","endpoint":"[::1"}"#.to_vec(),
        b"{\"network_id\":\"\xff\xfe\",\"instance_id\":\"a\",\"endpoint\":\"h:1\"}".to_vec(),
        br#"{"network_id":"a","instance_id":"a-1","endpoint":"h:1","capabilities":"all"}"#.to_vec(),
    ];
    let rounds = 20;
    for _ in 0..rounds {
        for body in &bodies {
            assert!(body.len() <= limit);
            let (status, answer) = request(server.addr, &post("/register", body)).expect("answered");
            assert_eq!(status, 400, "{answer}");
            assert!(answer.contains("\"error\""), "{answer}");
        }
    }
    server.wait_count("Refused request from", rounds * bodies.len());
    // Nothing of it was registered.
    let (_, roster) = request(
        server.addr,
        b"GET /networks HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(!roster.contains("\"a\""), "{roster}");
    server.serves_a_good_client("good");
    server.assert_rss_bounded(before, "pathological JSON");
}

#[test]
fn thousands_of_connections_past_the_limit_are_served_in_turn() {
    let mut args = vec!["--max-connections", "4", "--idle-timeout-secs", "30"];
    args.extend_from_slice(&UNLIMITED_REQUESTS);
    let server = Server::start(&args);
    server.serves_a_good_client("warmup");
    let before = server.rss_kib();
    // Hold every slot, each proven by a finished request, then sit idle.
    let mut held = Vec::new();
    let deadline = Instant::now() + WAIT;
    while held.len() < 4 {
        assert!(Instant::now() < deadline, "could not fill the slots");
        let mut tcp = TcpStream::connect(server.addr).unwrap();
        tcp.set_read_timeout(Some(IO)).unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).unwrap_or(0);
        if buf[..n].starts_with(b"HTTP/1.1 200") {
            held.push(tcp);
        }
    }
    let attempts = 2000;
    let served = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let addr = server.addr;
            let served = Arc::clone(&served);
            std::thread::spawn(move || {
                for _ in 0..attempts / 4 {
                    if started.elapsed() > Duration::from_secs(40) {
                        break;
                    }
                    let (status, body) = request(
                        addr,
                        b"GET /networks HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    )
                    .expect("answered or closed in time");
                    // 503 only when every slot is being answered at that
                    // moment; 0 when this one gave way before its turn.
                    assert!(matches!(status, 200 | 503 | 0), "{status} {body}");
                    if status == 200 {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let served = served.load(Ordering::Relaxed);
    eprintln!("{served} of {attempts} served in {:?}", started.elapsed());
    assert!(served >= attempts * 9 / 10, "only {served} served");
    // The oldest idle connection made room for the first newcomer (the
    // others only as the workers' connections needed their slots).
    let (status, _) = read_answer(&mut held[0]).expect("closed");
    assert_eq!(status, 0, "closed quietly");
    server.serves_a_good_client("good");
    server.assert_rss_bounded(before, "connections past the limit");
}

#[test]
fn bodies_dripped_a_byte_at_a_time_are_cut_at_the_request_deadline() {
    let server = Server::start(&["--request-timeout-secs", "1"]);
    server.serves_a_good_client("warmup");
    let before = server.rss_kib();
    let addr = server.addr;
    let drippers: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                let mut tcp = TcpStream::connect(addr).unwrap();
                tcp.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let started = Instant::now();
                tcp.write_all(b"POST /register HTTP/1.1\r\nContent-Length: 1000\r\n\r\n")
                    .unwrap();
                let mut answer = Vec::new();
                let mut buf = [0u8; 512];
                while started.elapsed() < Duration::from_secs(15) {
                    if tcp.write_all(b" ").is_err() {
                        break;
                    }
                    match tcp.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => answer.extend_from_slice(&buf[..n]),
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
                (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
            })
        })
        .collect();
    // Meanwhile a good client is served.
    server.serves_a_good_client("meanwhile");
    for d in drippers {
        let (answer, took) = d.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    server.wait_count("408 request body not received in time", 16);
    server.serves_a_good_client("good");
    server.assert_rss_bounded(before, "dripped bodies");
}

/// Ids and paths built to forge log lines (a newline and a fake line, an ANSI
/// escape, bidi controls) or to flood them get a 400 or 404 naming the rule
/// broken, and the server's log shows them escaped, one line per refusal.
#[test]
fn hostile_ids_and_paths_cannot_forge_log_lines() {
    let server = Server::start(&[]);
    server.serves_a_good_client("warmup");
    let mark = server.proc.mark();
    let forged = "2026-01-01T00:00:00.000Z INFO  [reflow_distributed] FORGED";
    let flood = "f".repeat(12 * 1024);
    let ids = [
        (
            format!("evil\n{forged}"),
            "contains a control character (U+000A) at byte 4",
        ),
        (
            "al\u{202e}ahpla".to_string(),
            "contains an invisible format character (U+202E) at byte 2",
        ),
        (
            "x\u{2066}y\u{2069}".to_string(),
            "contains an invisible format character (U+2066) at byte 1",
        ),
        (
            "ansi\u{1b}[2J".to_string(),
            "contains a control character (U+001B) at byte 4",
        ),
        ("sink@beta".to_string(), "contains '@' at byte 4"),
        (flood.clone(), "is 12288 bytes long; the limit is 256"),
    ];
    for (id, rule) in &ids {
        let body = serde_json::json!({"network_id": id, "instance_id": "a-1", "endpoint": "h:1"});
        let (status, answer) =
            request(server.addr, &post("/register", body.to_string().as_bytes())).expect("answered");
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains(&format!("field `network_id` {rule}")), "{answer}");
    }
    // The same ids, percent-encoded into a deregistration's path and query.
    let encode = |id: &str| -> String { id.bytes().map(|b| format!("%{b:02X}")).collect() };
    let deletes = &ids[..5];
    for (id, rule) in deletes {
        let target = format!("/networks/{}?instance_id=a-1", encode(id));
        let (status, answer) = request(
            server.addr,
            format!("DELETE {target} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("answered");
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer.contains(&format!("network id in the path {rule}")),
            "{answer}"
        );
    }
    let target = format!("/networks/alpha?instance_id={}", encode(&ids[0].0));
    let (status, answer) = request(
        server.addr,
        format!("DELETE {target} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("answered");
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("field `instance_id` contains a control character"),
        "{answer}"
    );
    let path = format!(
        "GET /\u{1b}[31m\u{202e}{} HTTP/1.1\r\nConnection: close\r\n\r\n",
        "p".repeat(4000)
    );
    let (status, _) = request(server.addr, path.as_bytes()).expect("answered");
    assert_eq!(status, 404);
    let refusals = ids.len() + deletes.len() + 2;
    server.wait_count("Refused request from", refusals);
    let lines = server.proc.lines_after(mark, "");
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("Refused request from"))
        .collect();
    assert_eq!(refused.len(), refusals, "{lines:#?}");
    for line in &lines {
        assert!(
            !line.starts_with("2026-01-01T00:00:00.000Z"),
            "forged line: {line:?}"
        );
        assert!(
            !line.contains(['\u{1b}', '\u{202e}', '\u{2066}', '\u{2069}']),
            "{line:?}"
        );
        let start: String = line.chars().take(200).collect();
        assert!(line.len() < 2048, "{} bytes: {start}", line.len());
    }
    assert!(
        refused
            .iter()
            .any(|l| l.contains("contains a control character (U+000A)")),
        "{refused:#?}"
    );
    assert!(
        refused
            .iter()
            .any(|l| l.contains("no route /\\u{1b}[31m\\u{202e}ppp")),
        "{refused:#?}"
    );
    server.serves_a_good_client("good");
}
