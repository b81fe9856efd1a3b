//! Hostile input on the bridge port of a real `reflow-peer` process: random
//! bytes, truncated frames, frames announcing absurd lengths, invalid UTF-8,
//! pathological JSON, frames for unknown actors, floods of dialers past
//! `max_connections` and clients that trickle their handshake.
//!
//! Every case ends the same way: the input is refused or its connection
//! closed, the peer says so in its log, a well-behaved client is still served
//! afterwards, and the peer's resident memory (VmRSS) stays within a generous
//! bound of what it was before the burst. Loops are bounded in count and time;
//! everything stays on 127.0.0.1.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::harness::{self, Proc, TempDir};
use common::rng::Rng;

/// Deadline for anything that should happen soon on a loaded machine.
const WAIT: Duration = Duration::from_secs(20);
/// Socket timeout of the hostile clients.
const IO: Duration = Duration::from_secs(5);
/// How much a burst may grow the peer's resident memory.
const RSS_SLACK_KIB: u64 = 96 * 1024;
/// The peer's frame limit in these tests.
const MAX_FRAME: usize = 1 << 20;

/// A `reflow-peer` named alpha on 127.0.0.1, port 0.
struct Alpha {
    proc: Proc,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Alpha {
    fn start(extra: &str) -> Alpha {
        let dir = TempDir::new("hostile-bridge");
        let toml = format!(
            "network_id = \"alpha\"\nbind_address = \"127.0.0.1\"\nbind_port = 0\n\
             max_frame_bytes = {MAX_FRAME}\n{extra}\n"
        );
        let bin = Path::new(env!("CARGO_BIN_EXE_reflow-peer"));
        let proc = harness::start_peer(bin, &dir, "alpha", &toml, &[]);
        let addr = harness::bridge_address(&proc, WAIT)
            .parse()
            .expect("bridge address");
        proc.wait_for("peer ready", WAIT).unwrap();
        Alpha {
            proc,
            addr,
            _dir: dir,
        }
    }

    fn rss_kib(&self) -> u64 {
        harness::vm_rss_kib(&self.proc.pid().to_string()).expect("VmRSS of the peer")
    }

    /// Waits for `n` log lines containing `needle` in all.
    fn wait_count(&self, needle: &str, n: usize) {
        self.proc
            .wait_for_count(needle, n, WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// A well-behaved peer connects, its message reaches the recorder, and it
    /// leaves with a Close frame.
    fn serves_a_good_client(&self, name: &str) {
        let mut tcp = upgrade(self.addr).expect("upgrade for a good client");
        let reply = handshake(&mut tcp, name).expect("handshake reply");
        assert!(reply.contains(r#""success":true"#), "{reply}");
        let payload = format!("still-serving-{name}");
        tcp.write_all(&masked(
            0x1,
            message_to("recorder", name, &payload).as_bytes(),
            true,
        ))
        .unwrap();
        self.proc
            .wait_for(&format!("recorder.in: String(\"{payload}\")"), WAIT)
            .unwrap();
        let _ = tcp.write_all(&masked(0x8, &1000u16.to_be_bytes(), true));
        // Gone from the connection map before the next case starts.
        self.proc
            .wait_for(&format!("Lost connection to network: {name} "), WAIT)
            .unwrap();
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

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect_timeout(&addr, IO)?;
    tcp.set_read_timeout(Some(IO))?;
    tcp.set_write_timeout(Some(IO))?;
    Ok(tcp)
}

/// Opens a socket and performs the WebSocket upgrade by hand.
fn upgrade(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut tcp = connect(addr)?;
    tcp.write_all(upgrade_request(addr).as_bytes())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&head).into_owned()));
    }
    Ok(tcp)
}

fn upgrade_request(addr: SocketAddr) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// A client frame (clients must mask) with opcode `op`.
fn masked(op: u8, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 | op } else { op }];
    let len = payload.len();
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else if len < 65536 {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = [0x1f, 0x2e, 0x3d, 0x4c];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Just the header of a masked text frame announcing `len` bytes.
fn header_announcing(len: u64) -> Vec<u8> {
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header
}

/// Reads one server frame (unmasked): opcode and payload.
fn read_frame(tcp: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head)?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            tcp.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            tcp.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    if len > 1 << 20 {
        return Err(std::io::Error::other("server frame too large"));
    }
    let mut payload = vec![0u8; len as usize];
    tcp.read_exact(&mut payload)?;
    Ok((head[0] & 0x0f, payload))
}

/// Sends the handshake request as network `name` and returns the reply text.
fn handshake(tcp: &mut TcpStream, name: &str) -> std::io::Result<String> {
    let request = serde_json::json!({
        "network_id": name, "instance_id": format!("{name}-1"),
        "protocol_version": "1.0", "auth_token": null, "capabilities": ["actor_messaging"],
    });
    tcp.write_all(&masked(0x1, request.to_string().as_bytes(), true))?;
    loop {
        let (op, payload) = read_frame(tcp)?;
        match op {
            0x1 => return Ok(String::from_utf8_lossy(&payload).into_owned()),
            0x8 => return Err(ErrorKind::ConnectionAborted.into()),
            _ => continue,
        }
    }
}

/// A connected and handshaken raw client named `name`.
fn mallory(addr: SocketAddr, name: &str) -> TcpStream {
    let mut tcp = upgrade(addr).expect("upgrade");
    let reply = handshake(&mut tcp, name).expect("handshake reply");
    assert!(reply.contains(r#""success":true"#), "{reply}");
    tcp
}

fn message_to(actor: &str, from: &str, text: &str) -> String {
    serde_json::json!({
        "message_id": "6f1c0000-0000-4000-8000-000000000000", "source_network": from,
        "source_actor": "unknown", "target_network": "alpha", "target_actor": actor,
        "target_port": "in", "payload": {"type": "String", "data": text},
        "timestamp": "2026-04-28T22:48:33.001Z",
    })
    .to_string()
}

/// True once the bridge has closed `tcp` (EOF, reset or a Close frame),
/// within `within`.
fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tcp.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn random_bytes_before_and_after_the_upgrade_are_refused() {
    let alpha = Alpha::start("");
    alpha.serves_a_good_client("warmup");
    let before = alpha.rss_kib();
    let mut rng = Rng(0x5eed_0001);

    // Random bytes instead of an upgrade request, some after a plausible start.
    let garbage = 300;
    for i in 0..garbage {
        let Ok(mut tcp) = connect(alpha.addr) else {
            continue;
        };
        let mut bytes = if i % 3 == 0 {
            b"GET / HTTP/1.1\r\n".to_vec()
        } else {
            Vec::new()
        };
        let n = 1 + rng.below(4096) as usize;
        bytes.extend(rng.bytes(n));
        bytes.extend_from_slice(b"\r\n\r\n");
        let _ = tcp.write_all(&bytes);
        assert!(closed_within(&mut tcp, WAIT), "garbage {i} was not closed");
    }
    // Random bytes after a successful handshake, where frames are expected.
    let after = 60;
    for i in 0..after {
        let mut tcp = mallory(alpha.addr, &format!("noise{i}"));
        let n = 1 + rng.below(2048) as usize;
        let _ = tcp.write_all(&rng.bytes(n));
        // Random bytes may form a frame that waits for more: leaving ends it.
        drop(tcp);
    }
    alpha.wait_count("Refused connection from", garbage / 2);
    alpha.wait_count("Lost connection to network: noise", after);
    alpha.serves_a_good_client("good");
    alpha.assert_rss_bounded(before, "random bytes");
}

#[test]
fn huge_length_headers_truncated_frames_and_bad_utf8_close_their_connection() {
    let alpha = Alpha::start("heartbeat_interval_ms = 300");
    alpha.serves_a_good_client("warmup");
    let before = alpha.rss_kib();

    // Frames announcing absurd lengths: 2^63 bytes, 2^32, one over the limit.
    let lengths = [1u64 << 63, u64::MAX >> 1, 1 << 32, MAX_FRAME as u64 + 1];
    for round in 0..25 {
        for (i, len) in lengths.iter().enumerate() {
            let name = format!("huge{round}x{i}");
            let mut tcp = mallory(alpha.addr, &name);
            tcp.write_all(&header_announcing(*len)).unwrap();
            let _ = tcp.write_all(&[0u8; 512]);
            assert!(closed_within(&mut tcp, WAIT), "{name}: {len} not refused");
        }
    }
    alpha.wait_count("(max_frame_bytes = 1048576)", 100);
    // The same as the very first frame, before any handshake.
    for _ in 0..20 {
        let mut tcp = upgrade(alpha.addr).unwrap();
        tcp.write_all(&header_announcing(1 << 63)).unwrap();
        assert!(closed_within(&mut tcp, WAIT));
    }
    alpha.wait_count("Refused connection from", 20);

    // A frame cut short by a vanishing client.
    for i in 0..20 {
        let mut tcp = mallory(alpha.addr, &format!("cut{i}"));
        let frame = masked(0x1, message_to("recorder", "cut", "never").as_bytes(), true);
        tcp.write_all(&frame[..frame.len() / 2]).unwrap();
    }
    alpha.wait_count("Lost connection to network: cut", 20);
    // A frame cut short by a client that then stays silent: evicted after
    // three heartbeat intervals.
    let mut stalled = mallory(alpha.addr, "stalled");
    stalled.write_all(&header_announcing(100)).unwrap();
    stalled.write_all(b"{\"mess").unwrap();
    alpha.wait_count("Evicted connection to network: stalled", 1);
    assert!(closed_within(&mut stalled, WAIT));

    // Invalid UTF-8 in a text frame, after and during the handshake.
    for (i, bad) in [&b"\xff\xfe\xfd"[..], b"{\"a\": \"\xc3\x28\"}", b"\xed\xa0\x80"]
        .into_iter()
        .enumerate()
    {
        let mut tcp = mallory(alpha.addr, &format!("badutf8-{i}"));
        tcp.write_all(&masked(0x1, bad, true)).unwrap();
        assert!(closed_within(&mut tcp, WAIT));
        let mut tcp = upgrade(alpha.addr).unwrap();
        tcp.write_all(&masked(0x1, bad, true)).unwrap();
        assert!(closed_within(&mut tcp, WAIT));
    }
    alpha.wait_count("Lost connection to network: badutf8", 3);

    alpha.serves_a_good_client("good");
    alpha.assert_rss_bounded(before, "huge lengths, truncated frames, bad UTF-8");
}

#[test]
fn pathological_json_is_counted_and_the_connection_kept() {
    let alpha = Alpha::start("");
    alpha.serves_a_good_client("warmup");
    let before = alpha.rss_kib();
    let mut tcp = mallory(alpha.addr, "mallory");

    let nested_arrays = "[".repeat(100_000);
    let nested_objects = "{\"a\":".repeat(100_000);
    let nested_payload = format!(
        r#"{{"message_id":"m","target_actor":"recorder","payload":{{"type":"Any","data":{}}}}}"#,
        "[".repeat(100_000)
    );
    // Just under the frame limit: a huge object of the wrong shape, and a huge
    // well-formed message for an actor that does not exist.
    let mut wide = String::from("{");
    let mut i = 0;
    while wide.len() < MAX_FRAME - 64 {
        wide.push_str(&format!("\"k{i}\":{i},"));
        i += 1;
    }
    wide.push_str("\"end\":0}");
    let filler = "x".repeat(MAX_FRAME - 400);
    let huge_message = message_to("nobody", "mallory", &filler);
    assert!(huge_message.len() < MAX_FRAME);
    let wrong_shapes = [
        "null",
        "\"a string\"",
        "[]",
        "3.5e308",
        "{}",
        r#"{"message_id": 5}"#,
        r#"{"target_actor": ["recorder"], "payload": null}"#,
        r#"{"network_id": 1, "timestamp": []}"#,
        r#"{"request_id": null, "requesting_network": 7}"#,
        r#"{"request_id": "r", "network_id": "alpha", "actors": "none"}"#,
        r#"{"message_id":"m","source_network":"s","source_actor":"a","target_network":"alpha","target_actor":"recorder","target_port":"in","payload":{"type":"Bytes","data":[256]},"timestamp":"t"}"#,
    ];

    let rounds = 10;
    let mut unrecognised = 0;
    let mut malformed = 0;
    let mut unknown = 0;
    for _ in 0..rounds {
        for text in [&nested_arrays, &nested_objects, &wide] {
            tcp.write_all(&masked(0x1, text.as_bytes(), true)).unwrap();
            unrecognised += 1;
        }
        tcp.write_all(&masked(0x1, nested_payload.as_bytes(), true))
            .unwrap();
        malformed += 1;
        tcp.write_all(&masked(0x1, huge_message.as_bytes(), true))
            .unwrap();
        unknown += 1;
        for text in wrong_shapes {
            tcp.write_all(&masked(0x1, text.as_bytes(), true)).unwrap();
        }
        // The same, fragmented into continuation frames.
        let half = nested_arrays.len() / 2;
        tcp.write_all(&masked(0x1, &nested_arrays.as_bytes()[..half], false))
            .unwrap();
        tcp.write_all(&masked(0x0, &nested_arrays.as_bytes()[half..], true))
            .unwrap();
        unrecognised += 1;
    }
    // Then a good message on the same connection: it was kept.
    tcp.write_all(&masked(
        0x1,
        message_to("recorder", "mallory", "after-the-junk").as_bytes(),
        true,
    ))
    .unwrap();
    alpha
        .proc
        .wait_for("recorder.in: String(\"after-the-junk\")", WAIT)
        .unwrap();
    alpha.wait_count("Ignored unrecognised frame from network mallory", unrecognised);
    alpha.wait_count("Dropped malformed message for actor", malformed);
    alpha.wait_count(
        "Dropped message from network mallory for actor nobody.in",
        unknown,
    );
    assert_eq!(alpha.proc.count("Lost connection to network: mallory"), 0);

    // As the first frame, nesting is refused like any non-handshake.
    let mut first = upgrade(alpha.addr).unwrap();
    first
        .write_all(&masked(0x1, nested_arrays.as_bytes(), true))
        .unwrap();
    assert!(closed_within(&mut first, WAIT));
    alpha.wait_count("Refused connection from", 1);

    alpha.serves_a_good_client("good");
    alpha.assert_rss_bounded(before, "pathological JSON");
}

#[test]
fn thousands_of_messages_for_unknown_actors_are_dropped_and_counted() {
    let alpha = Alpha::start("");
    alpha.serves_a_good_client("warmup");
    let before = alpha.rss_kib();
    let mut tcp = mallory(alpha.addr, "mallory");
    let total = 2000;
    let mut batch = Vec::new();
    for i in 0..total {
        let text = message_to(&format!("ghost{i}"), "mallory", "boo");
        batch.extend(masked(0x1, text.as_bytes(), true));
        if batch.len() > 64 * 1024 {
            tcp.write_all(&batch).unwrap();
            batch.clear();
        }
    }
    batch.extend(masked(
        0x1,
        message_to("recorder", "mallory", "after-the-ghosts").as_bytes(),
        true,
    ));
    tcp.write_all(&batch).unwrap();
    alpha
        .proc
        .wait_for("recorder.in: String(\"after-the-ghosts\")", WAIT)
        .unwrap();
    alpha.wait_count("Dropped message from network mallory for actor", total);
    assert_eq!(alpha.proc.count("Lost connection to network: mallory"), 0);
    alpha.serves_a_good_client("good");
    alpha.assert_rss_bounded(before, "messages for unknown actors");
}

/// Sends a heartbeat on each held connection until `stop`, so that they stay
/// live for the whole burst however long it takes.
fn keep_alive(mut held: Vec<TcpStream>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<TcpStream>> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            for tcp in &mut held {
                let beat = r#"{"network_id":"holder","timestamp":"2026-04-28T22:48:34.000Z"}"#;
                let _ = tcp.write_all(&masked(0x1, beat.as_bytes(), true));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        held
    })
}

#[test]
fn thousands_of_dialers_past_max_connections_are_refused() {
    let alpha = Alpha::start("max_connections = 2");
    alpha.serves_a_good_client("warmup");
    let before = alpha.rss_kib();
    let held = vec![mallory(alpha.addr, "holder1"), mallory(alpha.addr, "holder2")];
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = keep_alive(held, Arc::clone(&stop));

    let attempts = 2000;
    let threads = 4;
    let refused = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(AtomicUsize::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    let addr = alpha.addr;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (refused, cut, admitted) = (refused.clone(), cut.clone(), admitted.clone());
            std::thread::spawn(move || {
                for i in 0..attempts / threads {
                    if started.elapsed() > Duration::from_secs(40) {
                        break;
                    }
                    // One in four only opens a socket and leaves.
                    if i % 4 == 3 {
                        drop(connect(addr));
                        cut.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let outcome = upgrade(addr).and_then(|mut tcp| handshake(&mut tcp, &format!("d{t}x{i}")));
                    match outcome {
                        Ok(reply) if reply.contains("max_connections reached") => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(reply) => {
                            eprintln!("unexpected reply {reply}");
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            cut.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let (refused, cut) = (refused.load(Ordering::Relaxed), cut.load(Ordering::Relaxed));
    eprintln!(
        "{refused} refused, {cut} cut or dropped in {:?}",
        started.elapsed()
    );
    assert_eq!(admitted.load(Ordering::Relaxed), 0, "a dialer got past the limit");
    assert_eq!(refused + cut, attempts, "every attempt ended");
    assert!(refused >= attempts / 2, "only {refused} refusals");
    alpha.wait_count("max_connections reached", refused);

    stop.store(true, Ordering::SeqCst);
    let held = keeper.join().unwrap();
    assert_eq!(alpha.proc.count("Lost connection to network: holder"), 0);
    drop(held);
    alpha.wait_count("Lost connection to network: holder", 2);
    alpha.serves_a_good_client("good");
    alpha.assert_rss_bounded(before, "dialers past max_connections");
}

#[test]
fn byte_at_a_time_handshakes_are_cut_at_the_deadline_and_others_still_connect() {
    let alpha = Alpha::start("");
    alpha.serves_a_good_client("warmup");
    let before = alpha.rss_kib();
    let addr = alpha.addr;
    // The bridge's default handshake_timeout, and slack for a loaded machine.
    let deadline = Duration::from_secs(5) + Duration::from_secs(5);
    let slow: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let (mut tcp, bytes) = if i % 2 == 0 {
                    // Trickle the upgrade request itself.
                    (
                        connect(addr).expect("connect"),
                        upgrade_request(addr).into_bytes(),
                    )
                } else {
                    // Upgrade at once, then trickle the handshake frame.
                    let request = r#"{"network_id":"slow","instance_id":"slow-1","protocol_version":"1.0"}"#;
                    (
                        upgrade(addr).expect("upgrade"),
                        masked(0x1, request.repeat(4).as_bytes(), true),
                    )
                };
                // Writing to a socket the bridge closed fails soon after.
                for b in bytes.iter().cycle().take(400) {
                    if tcp.write_all(&[*b]).is_err() || started.elapsed() > 3 * deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let cut = closed_within(&mut tcp, 3 * deadline);
                (cut, started.elapsed())
            })
        })
        .collect();
    // While the slow ones hold their handshake threads, a good client gets in.
    std::thread::sleep(Duration::from_millis(300));
    let served = Instant::now();
    alpha.serves_a_good_client("meanwhile");
    assert!(
        served.elapsed() < Duration::from_secs(5),
        "{:?}",
        served.elapsed()
    );
    for s in slow {
        let (cut, took) = s.join().unwrap();
        assert!(cut, "a slow client was never cut");
        assert!(took < deadline, "a slow client lasted {took:?}");
    }
    alpha.wait_count("Refused connection from", 8);
    alpha.serves_a_good_client("good");
    alpha.assert_rss_bounded(before, "byte-at-a-time handshakes");
}
