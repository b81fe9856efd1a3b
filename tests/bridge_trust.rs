//! Trust at the bridge, over real sockets: the token never reaches a peer
//! that cannot prove it knows it, the dialer checks who answered, odd ids in
//! a handshake are refused without forging log lines, no log level prints the
//! token, a message over the peer's size limit is refused at the sender, and a
//! large frame trickling through a slow link keeps that link alive.
//!
//! Tests 1–5 run the real `reflow-peer` (and `reflow-discovery`) binaries;
//! the size-limit and slow-link cases also run in process. Every wait is on
//! a log line, an exit or a condition, with a deadline.

mod bridge_support;
mod common;
mod relay_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bridge_support::{PATIENCE, quick_config, start_peer as start_bridge, text_message};
use common::harness::{Echo, Proc, TempDir, address_in, bridge_address, http_get, wait_until};
use reflow_distributed::Message;
use reflow_distributed::bridge::{BridgeError, BridgeEvent, RemoteMessage};
use relay_support::{Relay, Shape};
use serde_json::{Value, json};
use tungstenite::{Message as WsMessage, WebSocket};

/// Deadline for what should happen soon (a start, a handshake, a log line).
const WAIT: Duration = Duration::from_secs(30);
/// A `--send` to a network that never links waits 10 s (plus a discovery
/// refresh) before the peer gives up and exits.
const GIVE_UP: Duration = Duration::from_secs(40);
const TOKEN: &str = "s3cret-5f2c9e07d41b8a36";
/// The first line a forged id would print, if it reached a log unescaped.
const FORGED: &str = "2026-01-01T00:00:00.000Z INFO  [x] forged";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn peer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-peer"))
}

/// A `reflow-discovery` on a free port, and its `host:port`.
fn start_discovery() -> (Proc, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_reflow-discovery"));
    let discovery = Proc::spawn("discovery", bin, &["--bind", "127.0.0.1:0"], &[], Echo::Quiet);
    let line = discovery.wait_for("listening on", WAIT).unwrap();
    (discovery, address_in(&line, "listening on "))
}

fn toml(network: &str, extra: &str) -> String {
    format!(
        "network_id = \"{network}\"\nbind_address = \"127.0.0.1\"\nbind_port = 0\n\
         heartbeat_interval_ms = 500\n{extra}\n"
    )
}

/// Starts `reflow-peer` on `toml` with `env` on top of the harness's.
fn spawn_peer(dir: &TempDir, name: &str, toml: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let path = dir.write(&format!("{name}.toml"), toml);
    let path = path.to_string_lossy().to_string();
    let mut all = vec!["--config", path.as_str()];
    all.extend_from_slice(args);
    Proc::spawn(name, peer_bin(), &all, env, Echo::Quiet)
}

/// A plain HTTP/1.1 POST of a JSON body: the status code.
fn http_post(address: &str, path: &str, body: &str) -> u16 {
    let mut stream = TcpStream::connect(address).expect("connect to discovery");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

fn register(discovery: &str, network: &str, endpoint: &str) {
    let body = json!({
        "network_id": network, "instance_id": format!("{network}-1"),
        "endpoint": endpoint, "capabilities": ["actor_messaging"],
    });
    assert_eq!(http_post(discovery, "/register", &body.to_string()), 200);
}

/// Waits until discovery lists `network` at `endpoint`.
fn listed_at(discovery: &str, network: &str, endpoint: &str) {
    wait_until(WAIT, Duration::from_millis(20), || {
        let (_, body) = http_get(discovery, "/networks", WAIT)?;
        let roster: Vec<Value> = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let found = roster
            .iter()
            .any(|e| e["network_id"] == network && e["endpoint"] == endpoint);
        if found { Ok(()) } else { Err(body) }
    })
    .unwrap_or_else(|e| panic!("discovery never listed {network} at {endpoint}: {e}"));
}

fn exit_code(peer: &mut Proc, within: Duration) -> Option<i32> {
    peer.wait_exit(within).unwrap_or_else(|e| panic!("{e}")).code()
}

// ------------------------------------------------------------- a stranger

/// How the stranger answers a dialer's first frame.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// A 1.0 acceptor that accepts anyone.
    V10,
    /// A 1.1 challenge with no proof, or with a made-up one.
    V11 { made_up_proof: bool },
}

/// Everything one dialer sent the stranger.
#[derive(Clone, Default)]
struct Conversation {
    /// Every byte read from the socket: the HTTP upgrade, then masked frames.
    raw: Vec<u8>,
    /// Text frames, unmasked.
    texts: Vec<String>,
    binaries: Vec<Vec<u8>>,
}

/// The socket as the stranger's WebSocket reads it, copying every byte read.
struct Tap {
    tcp: TcpStream,
    seen: Arc<Mutex<Conversation>>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tcp.read(buf)?;
        lock(&self.seen).raw.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// A WebSocket server that says it is `network` and records all it hears.
struct Stranger {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    heard: Arc<Mutex<Vec<Arc<Mutex<Conversation>>>>>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Stranger {
    fn start(network: &'static str, answer: Answer) -> Stranger {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stranger");
        let addr = listener.local_addr().unwrap();
        let stopping = Arc::new(AtomicBool::new(false));
        let heard = Arc::new(Mutex::new(Vec::new()));
        let threads = Arc::new(Mutex::new(Vec::new()));
        let (stop, h, t) = (stopping.clone(), heard.clone(), threads.clone());
        let acceptor = std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let Ok(tcp) = tcp else { continue };
                let seen = Arc::new(Mutex::new(Conversation::default()));
                lock(&h).push(seen.clone());
                lock(&t).push(std::thread::spawn(move || serve(tcp, network, answer, &seen)));
            }
        });
        Stranger {
            addr,
            stopping,
            heard,
            threads,
            acceptor: Some(acceptor),
        }
    }

    fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Stops listening, waits for every conversation to end, returns them.
    fn stop(&mut self) -> Vec<Conversation> {
        self.stopping.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = TcpStream::connect(self.addr);
            let _ = acceptor.join();
        }
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let heard = lock(&self.heard);
        // The wake-up connection of `stop` said nothing.
        heard
            .iter()
            .map(|c| lock(c).clone())
            .filter(|c| !c.raw.is_empty())
            .collect()
    }
}

fn serve(tcp: TcpStream, network: &str, answer: Answer, seen: &Arc<Mutex<Conversation>>) {
    let _ = tcp.set_read_timeout(Some(WAIT));
    let tap = Tap {
        tcp,
        seen: seen.clone(),
    };
    let Ok(mut ws) = tungstenite::accept(tap) else {
        return;
    };
    let instance = format!("{network}-1");
    loop {
        match ws.read() {
            Ok(WsMessage::Text(text)) => {
                let n = {
                    let mut seen = lock(seen);
                    seen.texts.push(text.as_str().to_string());
                    seen.texts.len()
                };
                // First a handshake answer; to anything after it, success,
                // to tempt the dialer into going on; then the stranger leaves.
                let success =
                    json!({"success": true, "network_id": network, "instance_id": instance, "error": null});
                let reply = match (n, answer) {
                    (1, Answer::V11 { made_up_proof }) => json!({
                        "protocol_version": "1.1", "network_id": network, "instance_id": instance,
                        "nonce": "ab".repeat(32),
                        "proof": if made_up_proof { Value::from("cd".repeat(32)) } else { Value::Null },
                        "max_message_bytes": 1 << 20,
                    }),
                    _ => success,
                };
                if ws.send(WsMessage::text(reply.to_string())).is_err() {
                    return;
                }
                if n >= 2 {
                    let _ = ws.close(None);
                }
            }
            Ok(WsMessage::Binary(bytes)) => lock(seen).binaries.push(bytes.to_vec()),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What a dialer with a token may say to an acceptor that has not proved it
/// knows the token: its offer (ids, a nonce, no token); then an explicit
/// refusal (`{"proof": null, "declined": true}`) only to one that showed a
/// wrong proof, so that its operator sees the tokens differ.
fn assert_told_nothing(who: &str, heard: &[Conversation], showed_proof: bool, secret_payload: &str) {
    assert!(
        !heard.is_empty(),
        "{who}: beta never dialed it, so this proves nothing"
    );
    for (i, c) in heard.iter().enumerate() {
        // Raw bytes catch the token in the upgrade request; client frames are
        // masked, so the frames are checked unmasked as well.
        assert!(
            !contains(&c.raw, TOKEN.as_bytes()),
            "{who} #{i}: token in the raw bytes"
        );
        for text in &c.texts {
            assert!(!text.contains(TOKEN), "{who} #{i}: token in {text}");
            assert!(!text.contains(secret_payload), "{who} #{i}: message in {text}");
        }
        assert!(c.binaries.is_empty(), "{who} #{i}: binary frames sent");
        let expected = if showed_proof { 2 } else { 1 };
        assert_eq!(c.texts.len(), expected, "{who} #{i}: {:?}", c.texts);
        let offer: Value = serde_json::from_str(&c.texts[0]).unwrap();
        assert_eq!(offer["auth_token"], Value::Null, "{who} #{i}: {offer}");
        let nonce = offer["nonce"].as_str().unwrap_or_default();
        assert!(
            nonce.len() == 64 && nonce.chars().all(|c| c.is_ascii_hexdigit()),
            "{who} #{i}: {offer}"
        );
        if showed_proof {
            let decline: Value = serde_json::from_str(&c.texts[1]).unwrap();
            assert_eq!(decline, json!({"proof": null, "declined": true}), "{who} #{i}");
        }
    }
}

/// Case 1: Beta has a token and finds its peers through discovery, but each
/// is a stranger: "alpha" answers as a 1.0 acceptor (success, no proof),
/// "delta" as 1.1 with no proof, "epsilon" as 1.1 with a made-up proof.
/// Before protocol 1.1 a dialer put its token in clear in its first frame,
/// so whoever registered a network id got the token (and then the traffic).
#[test]
fn the_token_is_never_handed_to_a_stranger() {
    let (_discovery, discovery) = start_discovery();
    let mut strangers = [
        ("alpha", Answer::V10),
        ("delta", Answer::V11 { made_up_proof: false }),
        ("epsilon", Answer::V11 { made_up_proof: true }),
    ]
    .map(|(network, answer)| (network, answer, Stranger::start(network, answer)));
    for (network, _, stranger) in &strangers {
        register(&discovery, network, &stranger.endpoint());
    }
    let dir = TempDir::new("trust-stranger");
    let secret_payload = "for-alpha-eyes-only";
    let extra = format!(
        "auth_token = \"{TOKEN}\"\ndiscovery_endpoints = [\"http://{discovery}\"]\ndiscovery_refresh_ms = 200\n"
    );
    let send = format!("alpha:recorder:in:{secret_payload}");
    let mut beta = spawn_peer(
        &dir,
        "beta",
        &toml("beta", &extra),
        &["--send", &send, "--once"],
        &[],
    );
    for reason in [
        "(it speaks protocol 1.0 and cannot prove that it knows the auth_token)",
        "(it has no auth_token to prove)",
        "(its proof does not match our auth_token)",
    ] {
        let line = beta.wait_for(reason, WAIT).unwrap();
        assert!(
            line.contains("handshake refused: auth_token mismatch: the acceptor did not prove"),
            "{line}"
        );
    }
    // Beta gives up on its --send: it never had a link to alpha.
    assert_eq!(exit_code(&mut beta, GIVE_UP), Some(1), "{}", beta.output());
    beta.wait_for(
        "could not send to alpha/recorder.in: no connection to network alpha",
        WAIT,
    )
    .unwrap();
    assert_eq!(beta.count("Established connection"), 0, "{}", beta.output());
    assert!(!beta.output().contains(TOKEN));
    for (network, answer, stranger) in &mut strangers {
        let heard = stranger.stop();
        println!("stranger {network}: {} dial(s) recorded", heard.len());
        let showed_proof = matches!(answer, Answer::V11 { made_up_proof: true });
        assert_told_nothing(network, &heard, showed_proof, secret_payload);
    }
}

/// Case 2a: A `[[connect]]` that names network alpha but points at gamma:
/// beta refuses gamma, although gamma proves the same token, and its message
/// for alpha goes nowhere. Before, a dialer could not say whom it meant to
/// reach and linked to whoever answered (here gamma).
#[test]
fn a_connect_entry_naming_alpha_refuses_gamma() {
    let dir = TempDir::new("trust-identity");
    let token = format!("auth_token = \"{TOKEN}\"\n");
    let gamma = spawn_peer(&dir, "gamma", &toml("gamma", &token), &[], &[]);
    let gamma_at = bridge_address(&gamma, WAIT);
    gamma.wait_for("peer ready", WAIT).unwrap();
    let extra = format!("{token}[[connect]]\nendpoint = \"{gamma_at}\"\nnetwork_id = \"alpha\"\n");
    let payload = "meant-for-alpha-via-connect";
    let send = format!("alpha:recorder:in:{payload}");
    let mut beta = spawn_peer(
        &dir,
        "beta",
        &toml("beta", &extra),
        &["--send", &send, "--once"],
        &[],
    );
    let line = beta.wait_for("expected network alpha", WAIT).unwrap();
    assert!(line.contains("the endpoint answered as gamma"), "{line}");
    assert_eq!(exit_code(&mut beta, GIVE_UP), Some(1), "{}", beta.output());
    assert_eq!(beta.count("Established connection"), 0, "{}", beta.output());
    assert_eq!(gamma.count(payload), 0, "{}", gamma.output());
    assert_eq!(gamma.count("Established connection"), 0, "{}", gamma.output());
}

/// Case 2b: Discovery lists alpha at gamma's endpoint (a fake entry
/// registered after the real alpha's, replacing it): beta dials it expecting
/// alpha and refuses gamma, so no message for alpha reaches gamma. Before,
/// beta dialed the roster's endpoint and linked to whoever answered there.
#[test]
fn a_discovery_entry_for_alpha_at_gammas_endpoint_is_refused() {
    let (_discovery, discovery) = start_discovery();
    let dir = TempDir::new("trust-roster");
    let token = format!("auth_token = \"{TOKEN}\"\n");
    // Alpha registers once and does not come back within the test (refresh
    // 10 min), and dials nobody: only the fake entry speaks for it.
    let alpha_extra = format!(
        "{token}auto_connect = false\ndiscovery_endpoints = [\"http://{discovery}\"]\ndiscovery_refresh_ms = 600000\n"
    );
    let alpha = spawn_peer(&dir, "alpha", &toml("alpha", &alpha_extra), &[], &[]);
    let alpha_at = bridge_address(&alpha, WAIT);
    listed_at(&discovery, "alpha", &alpha_at);
    let gamma = spawn_peer(&dir, "gamma", &toml("gamma", &token), &[], &[]);
    let gamma_at = bridge_address(&gamma, WAIT);
    gamma.wait_for("peer ready", WAIT).unwrap();
    register(&discovery, "alpha", &gamma_at);
    listed_at(&discovery, "alpha", &gamma_at);

    let payload = "meant-for-alpha-via-discovery";
    let send = format!("alpha:recorder:in:{payload}");
    let beta_extra =
        format!("{token}discovery_endpoints = [\"http://{discovery}\"]\ndiscovery_refresh_ms = 200\n");
    let mut beta = spawn_peer(
        &dir,
        "beta",
        &toml("beta", &beta_extra),
        &["--send", &send, "--once"],
        &[],
    );
    let line = beta.wait_for("expected network alpha", WAIT).unwrap();
    assert!(line.contains("the endpoint answered as gamma"), "{line}");
    assert_eq!(exit_code(&mut beta, GIVE_UP), Some(1), "{}", beta.output());
    assert_eq!(beta.count("Established connection"), 0, "{}", beta.output());
    for peer in [&alpha, &gamma] {
        assert_eq!(peer.count(payload), 0, "{}", peer.output());
        assert_eq!(peer.count("Established connection"), 0, "{}", peer.output());
    }
}

// ------------------------------------------------------------- raw dialers

/// A WebSocket client on a fresh socket to `addr`.
fn ws_client(addr: &str) -> WebSocket<TcpStream> {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.set_write_timeout(Some(WAIT)).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}/"), tcp).expect("upgrade");
    ws
}

fn next_text(ws: &mut WebSocket<TcpStream>) -> String {
    loop {
        match ws.read().expect("a frame") {
            WsMessage::Text(text) => return text.as_str().to_string(),
            _ => continue,
        }
    }
}

/// Closes and reads until the socket ends, so the acceptor's close completes.
fn finish(mut ws: WebSocket<TcpStream>) {
    let _ = ws.close(None);
    while ws.read().is_ok() {}
}

/// A first frame as network `network`, instance `instance`: a plain 1.0
/// request carrying `token`, or a 1.1 offer (token null, a nonce).
fn first_frame(network: &str, instance: &str, v11: bool, token: Option<&str>) -> String {
    let mut request = json!({
        "network_id": network, "instance_id": instance, "protocol_version": "1.0",
        "auth_token": token, "capabilities": ["actor_messaging"],
    });
    if v11 {
        request["auth_token"] = Value::Null;
        request["capabilities"] = json!(["actor_messaging", "bridge-1.1"]);
        request["nonce"] = json!("0f".repeat(32));
        request["max_message_bytes"] = json!(1 << 20);
    }
    request.to_string()
}

/// Case 3: Ids that break a rule, in a 1.0 request and in a 1.1 offer, as
/// network_id and as instance_id, against a peer with a token and one
/// without: each is refused with the rule named, and the peer's log
/// (at trace) gains no forged line, no raw U+202E and no huge line. Before,
/// ids were logged as sent: a newline in an id wrote a line of the sender's
/// choosing, U+202E reordered the line, and 100 KB went into one line.
#[test]
fn odd_ids_in_a_handshake_are_refused_and_logged_harmlessly() {
    let huge = "x".repeat(100 * 1024);
    let forged = format!("x\n{FORGED}");
    let cases: [(&str, &str); 7] = [
        (&forged, "control character (U+000A)"),
        ("x@y", "'@'"),
        ("x:y", "':'"),
        ("x/y", "'/'"),
        ("x y", "whitespace (U+0020)"),
        ("x\u{202E}y", "U+202E"),
        (&huge, "the limit is 256"),
    ];
    let dir = TempDir::new("trust-ids");
    let trace = [("RUST_LOG", "trace")];
    let token_line = format!("auth_token = \"{TOKEN}\"\n");
    let peers = [
        (spawn_peer(&dir, "open", &toml("open", ""), &[], &trace), None),
        (
            spawn_peer(&dir, "locked", &toml("locked", &token_line), &[], &trace),
            Some(TOKEN),
        ),
    ];
    let mut failures = Vec::new();
    for (peer, token) in &peers {
        let addr = bridge_address(peer, WAIT);
        peer.wait_for("peer ready", WAIT).unwrap();
        for (bad, rule) in &cases {
            for field in ["network_id", "instance_id"] {
                for v11 in [false, true] {
                    let (network, instance) = match field {
                        "network_id" => (*bad, "mallory-1"),
                        _ => ("mallory", *bad),
                    };
                    let mut ws = ws_client(&addr);
                    ws.send(WsMessage::text(first_frame(network, instance, v11, *token)))
                        .unwrap();
                    let reply: Value = serde_json::from_str(&next_text(&mut ws)).unwrap();
                    finish(ws);
                    let error = reply["error"].as_str().unwrap_or_default();
                    let named = error.contains(&format!("{field} is not valid: ")) && error.contains(rule);
                    if reply["success"] != false || !named {
                        let shown: String = bad.escape_debug().take(40).collect();
                        failures.push(format!("{}: {field}={shown} (v1.1 {v11}): {reply}", peer.name));
                    }
                }
            }
        }
        // A well-behaved dialer is still served afterwards.
        let mut ws = ws_client(&addr);
        ws.send(WsMessage::text(first_frame(
            "mallory",
            "mallory-1",
            false,
            *token,
        )))
        .unwrap();
        let reply = next_text(&mut ws);
        assert!(reply.contains(r#""success":true"#), "{}: {reply}", peer.name);
        finish(ws);
    }
    assert!(
        failures.is_empty(),
        "not refused as expected:\n{}",
        failures.join("\n")
    );
    for (peer, _) in &peers {
        peer.wait_for_count("Refused handshake from network", 28, WAIT)
            .unwrap();
        peer.wait_for("Established connection with network: mallory", WAIT)
            .unwrap();
        let output = peer.output();
        for line in output.lines() {
            assert!(
                !line.starts_with(FORGED),
                "{}: forged line in the log: {line}",
                peer.name
            );
            assert!(
                line.len() <= 4096,
                "{}: a line of {} bytes: {}…",
                peer.name,
                line.len(),
                line.chars().take(200).collect::<String>()
            );
        }
        assert!(
            !output.contains('\u{202E}'),
            "{}: raw U+202E in the log",
            peer.name
        );
    }
}

/// Case 4: At trace, neither a 1.1 link with a token nor a 1.0 dialer that sends
/// the token in clear puts the token in any log line. Before, tungstenite's
/// trace lines printed whole frames, and a 1.0 first frame holds the token.
#[test]
fn no_log_level_prints_the_token() {
    let dir = TempDir::new("trust-logs");
    let trace = [("RUST_LOG", "trace")];
    let token_line = format!("auth_token = \"{TOKEN}\"\n");
    let mut alpha = spawn_peer(&dir, "alpha", &toml("alpha", &token_line), &[], &trace);
    let alpha_at = bridge_address(&alpha, WAIT);
    alpha.wait_for("peer ready", WAIT).unwrap();
    let beta_extra = format!("{token_line}[[connect]]\nendpoint = \"{alpha_at}\"\nnetwork_id = \"alpha\"\n");
    let mut beta = spawn_peer(
        &dir,
        "beta",
        &toml("beta", &beta_extra),
        &["--send", "alpha:recorder:in:hello-at-trace"],
        &trace,
    );
    beta.wait_for("Established connection with network: alpha (protocol 1.1)", WAIT)
        .unwrap();
    alpha
        .wait_for("recorder.in: String(\"hello-at-trace\")", WAIT)
        .unwrap();

    // A 1.0 dialer (async Reflow) sends the token in clear; alpha accepts it
    // (accept_legacy_auth defaults to true) and must not log it.
    let mut ws = ws_client(&alpha_at);
    ws.send(WsMessage::text(first_frame(
        "legacy",
        "legacy-1",
        false,
        Some(TOKEN),
    )))
    .unwrap();
    let reply = next_text(&mut ws);
    assert!(reply.contains(r#""success":true"#), "{reply}");
    let message = json!({
        "message_id": "6f1c0000-0000-4000-8000-000000000001", "source_network": "legacy",
        "source_actor": "unknown", "target_network": "alpha", "target_actor": "recorder",
        "target_port": "in", "payload": {"type": "String", "data": "hello-from-1.0"},
        "timestamp": "2026-04-28T22:48:33.001Z",
    });
    ws.send(WsMessage::text(message.to_string())).unwrap();
    alpha
        .wait_for("recorder.in: String(\"hello-from-1.0\")", WAIT)
        .unwrap();
    finish(ws);
    alpha
        .wait_for("Lost connection to network: legacy", WAIT)
        .unwrap();

    // Heartbeats are logged at trace: proof that trace is on. Both are seen
    // before either peer stops: once alpha is gone, beta sends none.
    for peer in [&mut alpha, &mut beta] {
        peer.wait_for("TRACE", WAIT).unwrap();
    }
    for peer in [&mut alpha, &mut beta] {
        peer.signal("TERM");
        peer.wait_exit(WAIT).unwrap();
        assert!(
            !peer.output().contains(TOKEN),
            "{}: the token is in the log",
            peer.name
        );
    }
}

// ------------------------------------------------------------- size limits

/// Case 5a: Both sides accept at most 1024 bytes: beta's first `--send` is over
/// the limit and refused at beta with the limit named; the second still
/// goes, and alpha never closes the link. Before, the large frame went out,
/// alpha closed the connection as oversized, and what followed was lost
/// (and `--send` stopped at the first failure).
#[test]
fn an_oversized_send_is_refused_at_the_sender_and_the_next_one_goes() {
    let dir = TempDir::new("trust-size");
    let limit = "max_frame_bytes = 1024\n";
    let alpha = spawn_peer(&dir, "alpha", &toml("alpha", limit), &[], &[]);
    let alpha_at = bridge_address(&alpha, WAIT);
    alpha.wait_for("peer ready", WAIT).unwrap();
    let big = format!("alpha:recorder:in:{}", "x".repeat(2000));
    let extra = format!("{limit}[[connect]]\nendpoint = \"{alpha_at}\"\nnetwork_id = \"alpha\"\n");
    let mut beta = spawn_peer(
        &dir,
        "beta",
        &toml("beta", &extra),
        &["--send", &big, "--send", "alpha:recorder:in:small", "--once"],
        &[],
    );
    assert_eq!(exit_code(&mut beta, WAIT), Some(1), "{}", beta.output());
    let refused = beta
        .wait_for("could not send to alpha/recorder.in", WAIT)
        .unwrap();
    assert!(
        refused.contains("larger than network alpha accepts (1024 bytes"),
        "{refused}"
    );
    beta.wait_for("sent test message to alpha/recorder.in: \"small\"", WAIT)
        .unwrap();
    alpha.wait_for("recorder.in: String(\"small\")", WAIT).unwrap();
    // The link ends when beta exits (its Close says "shutdown"), not before.
    let lost = alpha.wait_for("Lost connection to network: beta", WAIT).unwrap();
    assert!(lost.contains("peer closed the connection: shutdown"), "{lost}");
    assert_eq!(alpha.count("max_frame_bytes"), 0, "{}", alpha.output());
    assert_eq!(alpha.count("xxxxxxxxxx"), 0, "{}", alpha.output());
}

/// Case 5b: In process: the error is `TooLarge` with the peer's limit, the
/// message comes back intact, and the link carries the next message.
#[test]
fn an_oversized_send_hands_the_message_back() {
    let mut config = quick_config();
    config.max_frame_bytes = 1024;
    let alpha = start_bridge("alpha", None, config.clone());
    let beta = start_bridge("beta", None, config);
    assert_eq!(beta.bridge.connect(&alpha.endpoint()).unwrap(), "alpha");
    let big = text_message("beta", "alpha", &"y".repeat(2000));
    let err = beta.bridge.send(big.clone(), Duration::from_secs(1)).unwrap_err();
    match err.error() {
        BridgeError::TooLarge {
            network_id,
            size,
            limit,
        } => {
            assert_eq!((network_id.as_str(), *limit), ("alpha", 1024));
            assert!(*size > 2000, "{size}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(err.into_message(), big);
    let small = text_message("beta", "alpha", "small");
    beta.bridge.send(small.clone(), PATIENCE).unwrap();
    assert_eq!(alpha.inbox.recv_timeout(PATIENCE).unwrap(), small);
    assert_eq!(alpha.bridge.stats().oversized_frames, 0);
    assert!(
        alpha
            .events
            .try_iter()
            .all(|e| matches!(e, BridgeEvent::Connected { .. }))
    );
    assert!(alpha.bridge.is_connected_to("beta") && beta.bridge.is_connected_to("alpha"));
}

// ------------------------------------------------------------- a slow link

/// Case 6: 100 KB through a relay that forwards 20 KB/s in 1 KB chunks, with
/// 500 ms heartbeats (eviction after 1.5 s of silence): the message takes
/// about 5 s, its first 64 KiB fragment alone over 3 s with no whole frame
/// arriving meanwhile, and yet neither side evicts: bytes mid-frame count as
/// life. Before, liveness counted whole frames and the receiver evicted.
#[test]
fn a_large_frame_on_a_slow_link_is_not_taken_for_silence() {
    let beat = Duration::from_millis(500);
    let mut config = quick_config();
    config.heartbeat_interval = beat;
    let alpha = start_bridge("alpha", None, config.clone());
    let beta = start_bridge("beta", None, config);
    let shape = Shape {
        chunk: 1000,
        every: Duration::from_millis(50),
    };
    let relay = Relay::start(alpha.bridge.local_addr(), Some(shape));
    assert_eq!(beta.bridge.connect(&relay.endpoint()).unwrap(), "alpha");
    for peer in [&alpha, &beta] {
        let connected = peer.events.recv_timeout(PATIENCE).expect("a Connected event");
        assert!(
            matches!(connected, BridgeEvent::Connected { .. }),
            "{connected:?}"
        );
    }

    let big = RemoteMessage::new(
        "beta",
        "unknown",
        "alpha",
        "recorder",
        "in",
        Message::string("z".repeat(100 * 1024)),
    );
    let started = Instant::now();
    let up_before = relay.forwarded_up();
    beta.bridge.send(big.clone(), PATIENCE).unwrap();
    // Fails at once if either side drops the link while the message trickles.
    let deadline = crossbeam_channel::after(Duration::from_secs(60));
    let arrived = crossbeam_channel::select! {
        recv(alpha.inbox) -> message => message.unwrap(),
        recv(alpha.events) -> event => panic!("alpha after {:?}: {event:?}", started.elapsed()),
        recv(beta.events) -> event => panic!("beta after {:?}: {event:?}", started.elapsed()),
        recv(deadline) -> _ => panic!("the large message never arrived"),
    };
    let took = started.elapsed();
    let bytes = relay.forwarded_up() - up_before;
    println!(
        "slow link: {bytes} bytes in {} ms ({:.1} KB/s, shaped at {:.1} KB/s); eviction after {} ms of silence",
        took.as_millis(),
        bytes as f64 / took.as_secs_f64() / 1000.0,
        shape.rate() / 1000.0,
        (3 * beat).as_millis()
    );
    assert_eq!(arrived, big);
    // Shorter than twice the eviction window, and the test proves nothing.
    assert!(took >= 6 * beat, "the transfer took only {} ms", took.as_millis());
    for (name, peer, other) in [("alpha", &alpha, "beta"), ("beta", &beta, "alpha")] {
        assert_eq!(peer.bridge.stats().evictions, 0, "{name} evicted");
        let events: Vec<BridgeEvent> = peer.events.try_iter().collect();
        assert!(events.is_empty(), "{name}: {events:?}");
        assert!(peer.bridge.is_connected_to(other), "{name} lost {other}");
    }
    assert_eq!(relay.accepted(), 1, "beta dialed again");
}
