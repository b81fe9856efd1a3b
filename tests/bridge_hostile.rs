//! Hostile and broken input on the bridge port: none of it takes the listener
//! down or disturbs other connections.

mod bridge_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bridge_support::*;
use reflow_distributed::Message;
use reflow_distributed::bridge::BridgeConfig;
use tungstenite::Message as WsMessage;

fn short_handshake() -> BridgeConfig {
    let mut config = quick_config();
    config.handshake_timeout = Duration::from_millis(300);
    config
}

/// Reads until the bridge closes the socket; true if it did within `within`.
fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        tcp.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn http_garbage_silence_and_vanishing_clients_leave_the_listener_working() {
    let alpha = start_peer("alpha", None, short_handshake());
    let addr = alpha.bridge.local_addr();

    let mut http = TcpStream::connect(addr).unwrap();
    http.write_all(b"GET /networks HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage
        .write_all(&[
            0x16, 0x03, 0x01, 0xff, 0x00, 0x13, 0x37, b'\r', b'\n', b'\r', b'\n',
        ])
        .unwrap();
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut vanishing = TcpStream::connect(addr).unwrap();
    vanishing
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websock")
        .unwrap();
    drop(vanishing);

    // A good peer gets in while the silent one is still pending.
    let beta = start_peer("beta", None, quick_config());
    assert_eq!(beta.bridge.connect(&alpha.endpoint()).unwrap(), "alpha");
    beta.bridge
        .send(text_message("beta", "alpha", "still-serving"), PATIENCE)
        .unwrap();
    assert_eq!(
        alpha.inbox.recv_timeout(PATIENCE).unwrap().payload,
        Message::string("still-serving")
    );

    assert!(closed_within(&mut http, PATIENCE), "plain HTTP is closed");
    assert!(closed_within(&mut garbage, PATIENCE), "garbage is closed");
    let started = Instant::now();
    assert!(closed_within(&mut silent, PATIENCE), "silent client is closed");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "handshake_timeout applies"
    );
    assert!(eventually(PATIENCE, || alpha.bridge.stats().refused_handshakes >= 4));

    // And after all that, yet another peer connects.
    let gamma = start_peer("gamma", None, quick_config());
    assert_eq!(gamma.bridge.connect(&alpha.endpoint()).unwrap(), "alpha");
    assert_eq!(alpha.bridge.connection_count(), 2);
}

#[test]
fn a_first_frame_that_is_not_a_handshake_closes_the_connection() {
    let alpha = start_peer("alpha", None, short_handshake());
    let addr = alpha.bridge.local_addr();
    let (mut ws, _) =
        tungstenite::client(format!("ws://{addr}/"), TcpStream::connect(addr).unwrap()).unwrap();
    ws.send(WsMessage::text(r#"{"hello": "world"}"#)).unwrap();
    assert!(closed_by_bridge(&mut ws, PATIENCE));
    assert_eq!(alpha.bridge.connection_count(), 0);
}

#[test]
fn an_oversized_frame_closes_that_connection_only() {
    let mut config = quick_config();
    config.max_frame_bytes = 4096;
    let alpha = start_peer("alpha", None, config);
    let beta = start_peer("beta", None, quick_config());
    beta.bridge.connect(&alpha.endpoint()).unwrap();

    let (mut ws, reply) = raw_peer(alpha.bridge.local_addr(), "mallory", None);
    assert!(reply.contains(r#""success":true"#));
    ws.send(WsMessage::text("y".repeat(64 * 1024))).unwrap();
    assert!(
        closed_by_bridge(&mut ws, PATIENCE),
        "oversized frame closes the connection"
    );
    assert!(eventually(PATIENCE, || !alpha.bridge.is_connected_to("mallory")));
    assert_eq!(alpha.bridge.stats().oversized_frames, 1);

    beta.bridge
        .send(text_message("beta", "alpha", "unaffected"), PATIENCE)
        .unwrap();
    assert_eq!(
        alpha.inbox.recv_timeout(PATIENCE).unwrap().payload,
        Message::string("unaffected")
    );
}

#[test]
fn frames_of_unknown_shape_are_counted_and_the_connection_kept() {
    let alpha = start_peer("alpha", None, quick_config());
    let (mut ws, _) = raw_peer(alpha.bridge.local_addr(), "sloppy", None);
    let bad_payload = serde_json::json!({
        "message_id": "m-1", "source_network": "sloppy", "source_actor": "unknown",
        "target_network": "alpha", "target_actor": "recorder", "target_port": "in",
        "payload": {"type": "Integer", "data": "not a number"}, "timestamp": "2026-04-28T22:48:33.001Z",
    });
    let good = serde_json::json!({
        "message_id": "m-2", "source_network": "sloppy", "source_actor": "unknown",
        "target_network": "alpha", "target_actor": "recorder", "target_port": "in",
        "payload": {"type": "String", "data": "fine"}, "timestamp": "2026-04-28T22:48:33.002Z",
        "future_field": {"ignored": true},
    });
    ws.send(WsMessage::text("not json at all")).unwrap();
    ws.send(WsMessage::text(r#"{"hello": "world"}"#)).unwrap();
    ws.send(WsMessage::text(bad_payload.to_string())).unwrap();
    ws.send(WsMessage::binary(vec![1u8, 2, 3])).unwrap();
    ws.send(WsMessage::text(
        r#"{"request_id": "r1", "requesting_network": "sloppy"}"#,
    ))
    .unwrap();
    ws.send(WsMessage::Ping(vec![7u8].into())).unwrap();
    ws.send(WsMessage::text(good.to_string())).unwrap();

    let got = alpha
        .inbox
        .recv_timeout(PATIENCE)
        .expect("the good message arrives");
    assert_eq!(got.payload, Message::string("fine"));
    assert_eq!(alpha.bridge.stats().malformed_frames, 4);
    assert!(alpha.bridge.is_connected_to("sloppy"));
    // The Ping was answered (through the writer).
    ws.get_mut().set_read_timeout(Some(PATIENCE)).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut ponged = false;
    while Instant::now() < deadline && !ponged {
        ponged = matches!(ws.read(), Ok(WsMessage::Pong(data)) if data.as_ref() == [7u8]);
    }
    assert!(ponged);
}
