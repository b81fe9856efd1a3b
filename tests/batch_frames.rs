//! Protocol 1.1 BATCH frames (tag 8) over real loopback sockets, every
//! wait with a deadline:
//!
//! - between two peers of this crate a stream of mixed sizes arrives whole
//!   and in order; link byte counters show a 64 B message costing a BATCH
//!   entry (~107 bytes), not a DATA frame (~280), and a bridge-level sink
//!   sees no message id except on the 100 KiB messages (DATA frames);
//! - a side with `batch_frames = false`, either one, gets DATA frames (ids
//!   back); every kind of message crosses a BATCH entry as a DATA frame;
//! - what a peer of ours writes, read with rmp alone, is the documented
//!   layout, and only toward a peer that listed `bridge-batch`;
//! - a raw peer's broken BATCH frames lose only what is broken, are
//!   counted, and leave the connection up; a frame of more messages than
//!   an inbox holds waits for room and loses none; entries on a duplicate
//!   connection are delivered while it closes;
//! - bad entries naming many actors do not leave memory behind (fails
//!   today: see that test).

mod bridge_support;
mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bridge_support::{PATIENCE, Peer, eventually, quick_config, start_peer};
use crossbeam_channel::{Receiver, unbounded};
use reflow_distributed::bridge::{Bridge, BridgeConfig, DeliveryError, RemoteMessage};
use reflow_distributed::runtime::{FnActor, Origin};
use reflow_distributed::{DistributedConfig, DistributedNetwork, Message, RemoteReference};
use serde_json::{Value, json};
use tungstenite::{Message as WsMessage, WebSocket};

/// A small message's payload, in bytes of text.
const SMALL: usize = 64;
const MEDIUM: usize = 1024;
/// Larger than a BATCH frame may be (64 KiB): goes as a DATA frame.
const BIG: usize = 100 * 1024;

/// Per 64 B String message, a BATCH entry costs about 107 bytes on the
/// wire (measured 106.5 per message to `sink`, 109 to `recorder` in
/// one-entry frames) and a DATA frame about 280 (its envelope carries an
/// id, a timestamp and both networks): anything under this bound was batched.
const BATCH_BYTES_MAX: f64 = 150.0;
/// And anything over this one went as DATA frames.
const DATA_BYTES_MIN: f64 = 200.0;

/// The text of message `i` of a stream: its number, then filler up to `size`.
fn text_of(i: usize, size: usize) -> String {
    let mut text = format!("{i:06}:");
    let fill = char::from(b'a' + (i % 26) as u8);
    while text.len() < size {
        text.push(fill);
    }
    text
}

/// The size of message `i` of a mixed stream: mostly 64 B, every fifth
/// 1 KiB, one in 500 of 100 KiB.
fn mixed_size(i: usize) -> usize {
    if i % 500 == 250 {
        BIG
    } else if i.is_multiple_of(5) {
        MEDIUM
    } else {
        SMALL
    }
}

/// Waits for `count` items, in order of arrival; fails at the deadline
/// naming how many came.
fn take<T>(inbox: &Receiver<T>, count: usize, what: &str) -> Vec<T> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        match inbox.recv_deadline(deadline) {
            Ok(item) => got.push(item),
            Err(_) => panic!("{what}: {} of {count} arrived before the deadline", got.len()),
        }
    }
    got
}

/// Checks that `got[k]` is message `first + k` with its expected text,
/// naming the first difference (not the whole 100 KiB text).
fn assert_stream(got: &[Message], first: usize, size_of: impl Fn(usize) -> usize) {
    for (k, message) in got.iter().enumerate() {
        let i = first + k;
        let expected = text_of(i, size_of(i));
        let text = message
            .as_str()
            .unwrap_or_else(|| panic!("message {i} is not a String: {message:?}"));
        if text != expected {
            let head: String = text.chars().take(12).collect();
            panic!(
                "message {i}: got {} bytes starting {head:?}, expected {} bytes starting {:?}",
                text.len(),
                expected.len(),
                &expected[..12]
            );
        }
    }
}

// ------------------------------------------------------------ two peers

fn peer_config(network: &str, batch: bool) -> DistributedConfig {
    let mut config = DistributedConfig::new(network);
    config.bridge = quick_config();
    config.bridge.batch_frames = batch;
    config.network.workers = 2;
    config
}

/// A peer `child` whose actor `sink` passes every message it gets on, with
/// its origin; an admin listener for its link byte counters.
struct SinkPeer {
    net: DistributedNetwork,
    got: Receiver<(Message, Option<Origin>)>,
}

impl SinkPeer {
    fn start(mut config: DistributedConfig) -> SinkPeer {
        bridge_support::init_logging();
        config.admin_bind = Some("127.0.0.1:0".into());
        let net = DistributedNetwork::new(config).expect("valid config");
        let (tx, got) = unbounded();
        let sink = FnActor::new(&["in"], &[], move |ctx| {
            let origin = ctx.origin("in");
            if let Some(message) = ctx.take_input("in") {
                let _ = tx.send((message, origin));
            }
            Ok(())
        });
        net.register_local_actor("sink", Box::new(sink), Value::Null)
            .unwrap();
        net.start().expect("child starts");
        SinkPeer { net, got }
    }

    fn endpoint(&self) -> String {
        self.net.local_addr().expect("started").to_string()
    }

    /// Bytes of WebSocket text and binary frames read from `network`, from
    /// the admin listener's `/links` (`Bridge::link_stats`).
    fn bytes_in_from(&self, network: &str) -> u64 {
        let admin = self.net.admin_addr().expect("admin listener").to_string();
        let (status, body) =
            common::harness::http_get(&admin, "/links", PATIENCE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 200, "{body}");
        let links: Value = serde_json::from_str(&body).expect("JSON");
        links["links"]
            .as_array()
            .and_then(|links| links.iter().find(|l| l["network_id"] == network))
            .and_then(|link| link["bytes_in"].as_u64())
            .unwrap_or_else(|| panic!("no link to {network} in {body}"))
    }

    /// Waits for `count` messages; checks each came from `parent`'s proxy
    /// node and returns the payloads.
    fn take(&self, count: usize) -> Vec<Message> {
        self.take_from(count, "parent", "sink@child")
    }

    /// Waits for `count` messages; checks each came from `actor` of
    /// `network` and returns the payloads.
    fn take_from(&self, count: usize, network: &str, actor: &str) -> Vec<Message> {
        let from = Origin::Remote {
            network: network.into(),
            actor: actor.into(),
        };
        take(&self.got, count, "messages at child's sink")
            .into_iter()
            .map(|(message, origin)| {
                assert_eq!(origin.as_ref(), Some(&from));
                message
            })
            .collect()
    }
}

/// A peer `parent` with a proxy `sink@child`, linked to `child`.
fn parent_linked_to(
    config: DistributedConfig,
    child_endpoint: &str,
    child: &DistributedNetwork,
) -> DistributedNetwork {
    let parent = DistributedNetwork::new(config).expect("valid config");
    parent.register_remote_actor("sink", "child").unwrap();
    parent.start().expect("parent starts");
    assert_eq!(parent.connect_to_network(child_endpoint).unwrap(), "child");
    assert!(
        eventually(PATIENCE, || child.is_connected_to("parent")),
        "child never listed parent"
    );
    parent
}

/// Sends messages `range` through the proxy (the parts path: BATCH entries
/// toward a peer that reads them).
fn send_stream(parent: &DistributedNetwork, range: std::ops::Range<usize>, size_of: impl Fn(usize) -> usize) {
    for i in range {
        parent
            .send_to_actor("sink@child", "in", Message::string(text_of(i, size_of(i))))
            .unwrap_or_else(|e| panic!("message {i} not sent: {e}"));
    }
}

/// Streams `count` 64 B messages from parent to child's sink, checks they
/// all arrive in order, and returns the bytes the child read per message.
fn small_stream_bytes_per_message(
    parent: &DistributedNetwork,
    child: &SinkPeer,
    first: usize,
    count: usize,
) -> f64 {
    let before = child.bytes_in_from("parent");
    send_stream(parent, first..first + count, |_| SMALL);
    let got = child.take(count);
    assert_stream(&got, first, |_| SMALL);
    let after = child.bytes_in_from("parent");
    (after - before) as f64 / count as f64
}

#[test]
fn a_stream_between_two_peers_of_ours_arrives_whole_and_in_order_in_batch_frames() {
    let child = SinkPeer::start(peer_config("child", true));
    let parent = parent_linked_to(peer_config("parent", true), &child.endpoint(), &child.net);

    // 2,000 small messages: the bytes read per message are a BATCH entry's.
    let per_message = small_stream_bytes_per_message(&parent, &child, 0, 2_000);
    assert!(
        per_message < BATCH_BYTES_MAX,
        "{per_message:.1} bytes per 64 B message: not BATCH entries"
    );

    // 3,000 more of mixed sizes, six of 100 KiB (DATA frames, fragmented)
    // among the BATCH entries: the one stream stays in order.
    send_stream(&parent, 2_000..5_000, mixed_size);
    let got = child.take(3_000);
    assert_stream(&got, 2_000, mixed_size);

    let stats = child.net.bridge_stats().expect("started");
    assert_eq!(stats.messages_received, 5_000, "{stats:?}");
    assert_eq!(stats.malformed_frames, 0, "{stats:?}");
    assert_eq!(
        stats.dropped_delivery_timeout + stats.dropped_unknown_target,
        0,
        "{stats:?}"
    );
    assert!(child.got.is_empty(), "more messages than were sent");
    parent.shutdown();
    child.net.shutdown();
}

/// The writer's linger after a write (`BridgeConfig::write_linger`) never
/// strands a stream's last messages, whatever its setting: off, the
/// longest taken as it is (1 ms), and one far past it (taken as 1 ms).
#[test]
fn a_lingering_writer_delivers_every_stream_whole_and_in_order() {
    for linger in [Duration::ZERO, Duration::from_millis(1), Duration::from_secs(60)] {
        let child = SinkPeer::start(peer_config("child", true));
        let mut config = peer_config("parent", true);
        config.bridge.write_linger = linger;
        let parent = parent_linked_to(config, &child.endpoint(), &child.net);
        // Bursts of mixed sizes with pauses between them: each burst's tail
        // is left to the writer, whose last write was moments before.
        for burst in 0..5 {
            let range = burst * 600..(burst + 1) * 600;
            send_stream(&parent, range.clone(), mixed_size);
            let got = child.take(600);
            assert_stream(&got, range.start, mixed_size);
        }
        let stats = child.net.bridge_stats().expect("started");
        assert_eq!(stats.messages_received, 3_000, "linger {linger:?}: {stats:?}");
        assert!(
            child.got.is_empty(),
            "linger {linger:?}: more messages than were sent"
        );
        parent.shutdown();
        child.net.shutdown();
    }
}

#[test]
fn a_peer_that_does_not_offer_batch_frames_gets_data_frames() {
    // The dialer (parent) without them, then the acceptor (child).
    for (parent_batch, child_batch) in [(false, true), (true, false)] {
        let child = SinkPeer::start(peer_config("child", child_batch));
        let parent = parent_linked_to(peer_config("parent", parent_batch), &child.endpoint(), &child.net);
        let per_message = small_stream_bytes_per_message(&parent, &child, 0, 1_000);
        assert!(
            per_message > DATA_BYTES_MIN,
            "parent batch_frames {parent_batch}, child {child_batch}: {per_message:.1} bytes per 64 B \
             message, not DATA frames"
        );
        // The big ones and the rest still arrive, in order.
        send_stream(&parent, 1_000..1_600, mixed_size);
        assert_stream(&child.take(600), 1_000, mixed_size);
        let stats = child.net.bridge_stats().expect("started");
        assert_eq!(stats.messages_received, 1_600, "{stats:?}");
        assert_eq!(stats.malformed_frames, 0, "{stats:?}");
        parent.shutdown();
        child.net.shutdown();
    }
}

// ------------------------------------------------- a bridge-level sink

/// Sends `messages` from a `DistributedNetwork` `parent` to a plain
/// `Bridge` `child` whose sink collects `RemoteMessage`s (the actor
/// `recorder` need not exist there); returns what arrived, in order, with
/// the bytes the child read from parent.
fn send_to_bridge_sink(
    parent_batch: bool,
    child_config: BridgeConfig,
    messages: Vec<Message>,
) -> (Vec<RemoteMessage>, u64) {
    let child = start_peer("child", None, child_config);
    let parent = DistributedNetwork::new(peer_config("parent", parent_batch)).expect("valid config");
    parent.start().expect("parent starts");
    assert_eq!(parent.connect_to_network(&child.endpoint()).unwrap(), "child");
    let count = messages.len();
    for (i, message) in messages.into_iter().enumerate() {
        parent
            .send_to_remote_actor("child", "recorder", "in", message)
            .unwrap_or_else(|e| panic!("message {i} not sent: {e}"));
    }
    let got = take(&child.inbox, count, "messages at child's sink");
    for message in &got {
        assert_eq!(
            (
                message.source_network.as_str(),
                message.source_actor.as_str(),
                message.target_network.as_str(),
                message.target_actor.as_str(),
                message.target_port.as_str()
            ),
            ("parent", "unknown", "child", "recorder", "in")
        );
    }
    let bytes = bytes_from(&child.bridge, "parent");
    parent.shutdown();
    child.bridge.shutdown();
    (got, bytes)
}

/// [`send_to_bridge_sink`] of messages `0..count` sized by `size_of`;
/// checks they arrived whole and in order.
fn stream_to_bridge_sink(
    parent_batch: bool,
    child_config: BridgeConfig,
    count: usize,
    size_of: impl Fn(usize) -> usize,
) -> (Vec<RemoteMessage>, u64) {
    let messages = (0..count)
        .map(|i| Message::string(text_of(i, size_of(i))))
        .collect();
    let (got, bytes) = send_to_bridge_sink(parent_batch, child_config, messages);
    let payloads: Vec<Message> = got.iter().map(|m| m.payload.clone()).collect();
    assert_stream(&payloads, 0, &size_of);
    (got, bytes)
}

fn bytes_from(bridge: &Bridge, network: &str) -> u64 {
    bridge
        .link_stats()
        .into_iter()
        .find(|link| link.network_id == network)
        .map(|link| link.bytes_in)
        .unwrap_or_else(|| panic!("no link stats for {network}"))
}

#[test]
fn a_bridge_level_sink_sees_batch_entries_without_ids_and_big_messages_with_them() {
    // Small ones only first: their bytes per message.
    let (got, bytes) = stream_to_bridge_sink(true, quick_config(), 1_000, |_| SMALL);
    assert!(
        got.iter()
            .all(|m| m.message_id.is_empty() && m.timestamp.is_empty())
    );
    let per_message = bytes as f64 / 1_000.0;
    assert!(
        per_message < BATCH_BYTES_MAX,
        "{per_message:.1} bytes per 64 B message: not BATCH entries"
    );
    // Mixed: what fits a BATCH frame comes without an id or timestamp, a
    // 100 KiB message (a DATA frame) with both.
    let (got, _) = stream_to_bridge_sink(true, quick_config(), 1_500, mixed_size);
    for (i, message) in got.iter().enumerate() {
        let data_frame = mixed_size(i) == BIG;
        assert_eq!(
            !message.message_id.is_empty(),
            data_frame,
            "message {i} of {} B: id {:?}",
            mixed_size(i),
            message.message_id
        );
        assert_eq!(!message.timestamp.is_empty(), data_frame, "message {i}");
    }
}

/// One message of every kind, with edge values: what a BATCH entry must
/// carry as a DATA frame does.
fn every_kind() -> Vec<Message> {
    let wrapper_lookalike = json!({ "type": "String", "data": "not a wrapper" });
    let object = json!({ "a": 1, "nested": { "b": [true, null, 2.5] }, "type": "Integer" });
    vec![
        Message::Flow,
        Message::Event(Arc::new(json!({ "event_type": "started", "data": { "n": 1 } }))),
        Message::Boolean(true),
        Message::Boolean(false),
        Message::Integer(0),
        Message::Integer(i64::MIN),
        Message::Integer(i64::MAX),
        Message::Float(4.5e300),
        Message::Float(-0.0),
        Message::Float(f64::MIN_POSITIVE),
        Message::string(""),
        Message::string("h\u{e9}llo \u{1f600} \"quoted\" \\ \u{0}"),
        Message::Object(Arc::new(object.as_object().cloned().unwrap_or_default())),
        Message::Object(Arc::new(
            wrapper_lookalike.as_object().cloned().unwrap_or_default(),
        )),
        Message::Array(Arc::new(vec![
            json!(1),
            json!("two"),
            wrapper_lookalike.clone(),
            Value::Null,
        ])),
        Message::Array(Arc::new(Vec::new())),
        Message::Bytes(Arc::from(&[][..])),
        Message::Bytes((0..=255u8).collect::<Vec<u8>>().into()),
        Message::Optional(None),
        Message::Optional(Some(Arc::new(json!({ "x": 1 })))),
        Message::Any(Arc::new(wrapper_lookalike)),
        Message::Any(Arc::new(Value::Null)),
        Message::Any(Arc::new(json!(12.75))),
        Message::Error(Arc::from("it failed")),
        Message::RemoteReference(Arc::new(RemoteReference {
            network_id: "parent".into(),
            actor_id: "echo".into(),
            port: "out".into(),
        })),
    ]
}

#[test]
fn every_kind_of_message_crosses_in_a_batch_entry_as_in_a_data_frame() {
    let kinds = every_kind();
    let (batched, _) = send_to_bridge_sink(true, quick_config(), kinds.clone());
    let (data, _) = send_to_bridge_sink(false, quick_config(), kinds.clone());
    for ((sent, batched), data) in kinds.iter().zip(&batched).zip(&data) {
        assert!(
            batched.message_id.is_empty(),
            "{sent:?} did not go in a BATCH entry"
        );
        assert!(!data.message_id.is_empty(), "{sent:?} did not go in a DATA frame");
        assert_eq!(&batched.payload, sent, "through a BATCH entry");
        assert_eq!(&data.payload, sent, "through a DATA frame");
    }
}

#[test]
fn with_batch_frames_off_on_either_side_an_inbound_sink_sees_message_ids() {
    let mut off = quick_config();
    off.batch_frames = false;
    for (parent_batch, child_config) in [(false, quick_config()), (true, off)] {
        let (got, bytes) = stream_to_bridge_sink(parent_batch, child_config, 500, |_| SMALL);
        let ids: std::collections::HashSet<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
        assert!(
            got.iter()
                .all(|m| !m.message_id.is_empty() && !m.timestamp.is_empty()),
            "parent batch_frames {parent_batch}: a message without id or timestamp"
        );
        assert_eq!(ids.len(), 500, "message ids are not distinct");
        let per_message = bytes as f64 / 500.0;
        assert!(
            per_message > DATA_BYTES_MIN,
            "parent batch_frames {parent_batch}: {per_message:.1} bytes per 64 B message"
        );
    }
}

// ------------------------------------------------------- a raw peer

const NONCE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A raw WebSocket client that did the 1.1 handshake by hand, listing
/// `capabilities`; returns it with the acceptor's challenge.
fn raw_v11(addr: SocketAddr, capabilities: &[&str]) -> (WebSocket<TcpStream>, Value) {
    raw_v11_as("raw", addr, capabilities)
}

/// [`raw_v11`] as network `network` (instance `<network>-1`).
fn raw_v11_as(network: &str, addr: SocketAddr, capabilities: &[&str]) -> (WebSocket<TcpStream>, Value) {
    let tcp = TcpStream::connect(addr).expect("tcp connect");
    raw_v11_on(tcp, network, capabilities, None)
}

/// [`raw_v11_as`] on a connected socket, offering the delivery features
/// when `delivery` is some (the `delivery` field of the first frame).
fn raw_v11_on(
    tcp: TcpStream,
    network: &str,
    capabilities: &[&str],
    delivery: Option<Value>,
) -> (WebSocket<TcpStream>, Value) {
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let addr = tcp.peer_addr().unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), tcp).expect("upgrade");
    let mut first = json!({
        "network_id": network, "instance_id": format!("{network}-1"), "protocol_version": "1.0",
        "auth_token": null, "capabilities": capabilities, "nonce": NONCE,
        "max_message_bytes": 1_048_576,
    });
    if let Some(delivery) = delivery {
        first["delivery"] = delivery;
    }
    ws.send(WsMessage::text(first.to_string())).unwrap();
    let challenge = read_text(&mut ws);
    assert_eq!(challenge["protocol_version"], "1.1", "{challenge}");
    ws.send(WsMessage::text(json!({ "proof": null }).to_string()))
        .unwrap();
    let result = read_text(&mut ws);
    assert_eq!(result["success"], true, "{result}");
    (ws, challenge)
}

fn read_text(ws: &mut WebSocket<TcpStream>) -> Value {
    loop {
        match ws.read().expect("a frame") {
            WsMessage::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON"),
            _ => continue,
        }
    }
}

/// A payload bin's content: DATA's payload map for a String.
fn good_payload(text: &str) -> Vec<u8> {
    rmp_serde::to_vec_named(&json!({ "type": "String", "data": text })).unwrap()
}

/// One entry `[target_actor, target_port, source_actor, payload]`; the
/// names are raw bytes, so they need not be UTF-8.
fn entry(target: &[u8], port: &[u8], source: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_array_len(&mut out, 4).unwrap();
    for name in [target, port, source] {
        rmp::encode::write_str_len(&mut out, name.len() as u32).unwrap();
        out.extend_from_slice(name);
    }
    rmp::encode::write_bin_len(&mut out, payload.len() as u32).unwrap();
    out.extend_from_slice(payload);
    out
}

fn good(text: &str) -> Vec<u8> {
    entry(b"recorder", b"in", b"writer", &good_payload(text))
}

/// A BATCH frame announcing `count` entries, then `body`.
fn batch(count: u32, body: &[Vec<u8>]) -> Vec<u8> {
    let mut frame = vec![8u8];
    rmp::encode::write_array_len(&mut frame, count).unwrap();
    for part in body {
        frame.extend_from_slice(part);
    }
    frame
}

#[test]
fn a_raw_peer_sending_bad_batch_entries_loses_only_those() {
    let alpha = start_peer("alpha", None, quick_config());
    let (mut ws, challenge) = raw_v11(
        alpha.bridge.local_addr(),
        &["actor_messaging", "bridge-1.1", "bridge-batch"],
    );
    assert_eq!(challenge["capabilities"], json!(["bridge-batch"]), "{challenge}");
    assert!(eventually(PATIENCE, || alpha.bridge.is_connected_to("raw")));

    let strong = rmp_serde::to_vec_named(&json!({ "type": "Strong", "data": "x" })).unwrap();
    // A structure broken inside the second entry: an array of 3 fields.
    let mut three_fields = Vec::new();
    rmp::encode::write_array_len(&mut three_fields, 3).unwrap();
    rmp::encode::write_str(&mut three_fields, "recorder").unwrap();
    rmp::encode::write_str(&mut three_fields, "in").unwrap();
    rmp::encode::write_str(&mut three_fields, "writer").unwrap();
    let mut trailing = batch(1, &[good("d1")]);
    trailing.push(0xc0);
    // (what it is, the frame): one malformed_frames each, two for the first.
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "a payload of an unknown kind and one that is no MessagePack, between good ones",
            batch(
                4,
                &[
                    good("a1"),
                    entry(b"recorder", b"in", b"writer", &strong),
                    entry(b"recorder", b"in", b"writer", &[0xc1]),
                    good("a2"),
                ],
            ),
        ),
        (
            "an entry of 3 fields after a good one (the rest of the frame is lost)",
            batch(3, &[good("b1"), three_fields, good("lost-b")]),
        ),
        (
            "a target name that is not UTF-8 after a good one",
            batch(
                3,
                &[
                    good("c1"),
                    entry(&[0xff, 0xfe], b"in", b"writer", &good_payload("lost-c1")),
                    good("lost-c2"),
                ],
            ),
        ),
        (
            "a port and a source name that are not UTF-8",
            batch(
                2,
                &[
                    entry(b"recorder", &[0xc3, 0x28], b"writer", &good_payload("lost-c3")),
                    entry(b"recorder", b"in", &[0xe2, 0x82], &good_payload("lost-c4")),
                ],
            ),
        ),
        ("no entries", batch(0, &[])),
        ("a tag without an array", vec![8u8]),
        ("a byte after the last entry", trailing),
        (
            "more entries announced than there are",
            batch(u32::MAX, &[good("e1")]),
        ),
        (
            "a payload bin longer than the frame",
            batch(
                1,
                &[{
                    let mut cut = good("lost-f");
                    cut.truncate(cut.len() - 3);
                    cut
                }],
            ),
        ),
    ];
    let bad_frames = frames.len() as u64;
    for (what, frame) in frames {
        ws.send(WsMessage::binary(frame))
            .unwrap_or_else(|e| panic!("sending {what}: {e}"));
    }
    // A later good frame: the reader read everything before it.
    ws.send(WsMessage::binary(batch(2, &[good("z1"), good("z2")])))
        .unwrap();

    let expected = ["a1", "a2", "b1", "c1", "d1", "e1", "z1", "z2"];
    let got = take(&alpha.inbox, expected.len(), "good messages of the raw peer");
    let texts: Vec<&str> = got.iter().map(|m| m.payload.as_str().unwrap_or("?")).collect();
    assert_eq!(texts, expected);
    for message in &got {
        assert_eq!(
            (
                message.source_network.as_str(),
                message.source_actor.as_str(),
                message.target_actor.as_str(),
                message.target_port.as_str(),
                message.message_id.as_str()
            ),
            ("raw", "writer", "recorder", "in", "")
        );
    }
    let stats = alpha.bridge.stats();
    // One for each bad payload (two) and one for each other bad frame.
    assert_eq!(stats.malformed_frames, bad_frames + 1, "{stats:?}");
    assert_eq!(stats.messages_received, expected.len() as u64, "{stats:?}");
    assert!(alpha.inbox.is_empty());
    assert!(alpha.bridge.is_connected_to("raw"), "the raw peer was cut off");

    // And the connection still carries messages.
    ws.send(WsMessage::binary(batch(1, &[good("after")]))).unwrap();
    let after = take(&alpha.inbox, 1, "a message after the bad frames");
    assert_eq!(after[0].payload.as_str(), Some("after"));
    assert!(alpha.bridge.is_connected_to("raw"));
    drop(ws);
    alpha.bridge.shutdown();
}

#[test]
fn a_frame_of_more_messages_than_the_inbox_holds_waits_for_room_and_loses_none() {
    // A raw peer without the delivery features: the reader waits for room
    // in the sink's inbox (4 messages) while each BATCH frame brings 400.
    // The turns it put off must run meanwhile, or each wait ends in a drop
    // after delivery_timeout.
    let mut config = peer_config("child", true);
    config.network.inbox_capacity = 4;
    config.bridge.delivery_timeout = Duration::from_secs(2);
    let child = SinkPeer::start(config);
    let addr = child.net.local_addr().expect("started");
    let (mut ws, challenge) = raw_v11(addr, &["bridge-1.1", "bridge-batch"]);
    assert!(challenge["delivery"].is_null(), "{challenge}");
    const FRAMES: usize = 3;
    const ENTRIES: usize = 400;
    for f in 0..FRAMES {
        let entries: Vec<Vec<u8>> = (0..ENTRIES)
            .map(|e| {
                let text = text_of(f * ENTRIES + e, SMALL);
                entry(b"sink", b"in", b"writer", &good_payload(&text))
            })
            .collect();
        ws.send(WsMessage::binary(batch(ENTRIES as u32, &entries)))
            .unwrap();
    }
    let got = child.take_from(FRAMES * ENTRIES, "raw", "writer");
    assert_stream(&got, 0, |_| SMALL);
    let stats = child.net.bridge_stats().expect("started");
    assert_eq!(stats.messages_received, (FRAMES * ENTRIES) as u64, "{stats:?}");
    assert_eq!(stats.dropped_delivery_timeout, 0, "{stats:?}");
    drop(ws);
    child.net.shutdown();
}

/// Set in the copy of this test binary that measures a flood alone.
const MEASURE_ENV: &str = "BATCH_FRAMES_MEASURE_FLOOD";
const FLOOD_TEST: &str = "bad_entries_naming_many_actors_do_not_grow_the_receiver";

#[test]
fn bad_entries_naming_many_actors_do_not_grow_the_receiver() {
    // A peer with the delivery features sends BATCH entries whose payloads
    // do not decode, each naming another actor (60 KB names). Each is
    // dropped and counted; what the receiver keeps per target actor must
    // not stay behind, as for a message to an unknown actor, whose slot is
    // forgotten (`Targets::forget_if_idle`). Before that rule held here,
    // the reader's `deliver_entry` made a slot for a bad entry's target (to
    // give its credit back) and never forgot it, so the session kept two
    // copies of every name until it ended (about 35 MiB kept for 17 MiB of
    // names). The same entries as DATA frames keep nothing. Measured in a copy of this binary running this test alone,
    // so that no other test's memory counts.
    if std::env::var_os(MEASURE_ENV).is_some() {
        measure_bad_entry_flood();
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new(exe)
        .args([FLOOD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(MEASURE_ENV, "1")
        .output()
        .expect("the measuring copy runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "measuring copy failed:\n{stdout}\n{stderr}"
    );
    let measured: Vec<u64> = stdout
        .lines()
        .find_map(|line| line.split_once("MEASURED ").map(|(_, numbers)| numbers))
        .unwrap_or_else(|| panic!("no measurement in:\n{stdout}\n{stderr}"))
        .split_whitespace()
        .map(|n| n.parse().expect("a number"))
        .collect();
    let (growth_kib, names_kib) = (measured[0], measured[1]);
    assert!(
        growth_kib < names_kib / 2,
        "the receiver grew by {} MiB and kept it, after dropping bad BATCH entries whose actor \
         names came to {} MiB: a slot per named actor stays behind",
        growth_kib / 1024,
        names_kib / 1024
    );
}

/// The flood of [`bad_entries_naming_many_actors_do_not_grow_the_receiver`],
/// in rounds of other names: two warm the allocator up, the growth over
/// the next two is what stays. Prints `MEASURED <resident growth KiB>
/// <names sent in the measured rounds KiB>`.
fn measure_bad_entry_flood() {
    const FRAMES: usize = 10;
    const ENTRIES: usize = 15;
    const NAME_BYTES: usize = 60_000;
    let mut config = quick_config();
    // Credits go back with the next heartbeat at the latest.
    config.heartbeat_interval = Duration::from_millis(200);
    let alpha = start_peer("alpha", None, config);
    let tcp = TcpStream::connect(alpha.bridge.local_addr()).expect("tcp connect");
    let mut drain = tcp.try_clone().unwrap();
    let offer = json!({ "incarnation": 1, "target_window": 64 });
    let (mut ws, challenge) = raw_v11_on(tcp, "raw", &["bridge-1.1", "bridge-batch"], Some(offer));
    assert!(
        challenge["delivery"].is_object(),
        "no delivery features: {challenge}"
    );
    // What alpha writes back (a credit per named actor) is read and
    // dropped, so that nothing waits in its writer.
    let drained = thread::spawn(move || {
        let mut buffer = vec![0u8; 1 << 16];
        while let Ok(n) = drain.read(&mut buffer) {
            if n == 0 {
                break;
            }
        }
    });
    let strong = rmp_serde::to_vec_named(&json!({ "type": "Strong", "data": "x" })).unwrap();
    let mut flood = |round: usize| {
        for f in 0..FRAMES {
            let entries: Vec<Vec<u8>> = (0..ENTRIES)
                .map(|e| {
                    let mut name = format!("actor-{round}-{f:04}-{e:03}-").into_bytes();
                    name.resize(NAME_BYTES, b'x');
                    entry(&name, b"in", b"writer", &strong)
                })
                .collect();
            ws.send(WsMessage::binary(batch(ENTRIES as u32, &entries)))
                .unwrap();
        }
        ws.send(WsMessage::binary(batch(1, &[good("end")]))).unwrap();
        let got = take(&alpha.inbox, 1, "the message after the flood");
        assert_eq!(got[0].payload.as_str(), Some("end"));
        // Every credit written back (each names its actor): nothing of the
        // round waits in alpha's writer. Pings keep the raw peer heard.
        let names_out = (round * FRAMES * ENTRIES * NAME_BYTES) as u64;
        let written = eventually(PATIENCE, || {
            let _ = ws.send(WsMessage::Ping(Default::default()));
            bytes_to(&alpha.bridge, "raw") >= names_out
        });
        assert!(
            written,
            "credits not written back: {:?}",
            alpha.bridge.link_stats()
        );
    };
    flood(1);
    flood(2);
    let before = common::harness::vm_rss_kib("self").expect("VmRSS");
    flood(3);
    flood(4);
    let after = common::harness::vm_rss_kib("self").expect("VmRSS");
    let stats = alpha.bridge.stats();
    assert_eq!(stats.malformed_frames, (4 * FRAMES * ENTRIES) as u64, "{stats:?}");
    assert!(alpha.bridge.is_connected_to("raw"));
    let names_kib = (2 * FRAMES * ENTRIES * NAME_BYTES / 1024) as u64;
    println!("MEASURED {} {names_kib}", after.saturating_sub(before));
    // Ends the drain too (it reads a copy of the socket).
    let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
    drop(ws);
    alpha.bridge.shutdown();
    drained.join().unwrap();
}

fn bytes_to(bridge: &Bridge, network: &str) -> u64 {
    bridge
        .link_stats()
        .into_iter()
        .find(|link| link.network_id == network)
        .map_or(0, |link| link.bytes_out)
}

#[test]
fn the_acceptor_lists_bridge_batch_only_when_the_dialer_did_and_it_reads_them() {
    let on = start_peer("alpha", None, quick_config());
    let mut config = quick_config();
    config.batch_frames = false;
    let off = start_peer("beta", None, config);
    let cases: [(&Peer, &[&str], Value); 3] = [
        (&on, &["bridge-1.1", "bridge-batch"], json!(["bridge-batch"])),
        (&on, &["bridge-1.1"], Value::Null),
        (&off, &["bridge-1.1", "bridge-batch"], Value::Null),
    ];
    for (peer, capabilities, listed) in cases {
        let (ws, challenge) = raw_v11(peer.bridge.local_addr(), capabilities);
        assert_eq!(
            challenge["capabilities"], listed,
            "dialer listed {capabilities:?}: {challenge}"
        );
        drop(ws);
    }
    on.bridge.shutdown();
    off.bridge.shutdown();
}

/// A bridge `alpha` whose sink is the closure `sink` (which implements
/// only `deliver`).
fn closure_bridge(
    sink: impl Fn(RemoteMessage) -> Result<(), DeliveryError> + Send + Sync + 'static,
) -> Bridge {
    Bridge::start(
        bridge_support::identity("alpha", None),
        quick_config(),
        Arc::new(sink),
    )
    .expect("bridge starts")
}

#[test]
fn a_sink_closure_gets_batch_entries_through_the_default_deliver_arrival() {
    // A closure sink implements only `deliver`: BATCH entries reach it as
    // RemoteMessages with empty id and timestamp.
    let (tx, inbox) = unbounded();
    let bridge = closure_bridge(move |message| {
        let _ = tx.send(message);
        Ok(())
    });
    let (mut ws, _) = raw_v11(bridge.local_addr(), &["bridge-1.1", "bridge-batch"]);
    ws.send(WsMessage::binary(batch(2, &[good("one"), good("two")])))
        .unwrap();
    let got = take(&inbox, 2, "messages at the closure");
    let texts: Vec<Option<&str>> = got.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(texts, [Some("one"), Some("two")]);
    assert!(
        got.iter()
            .all(|m| m.message_id.is_empty() && m.timestamp.is_empty())
    );
    assert_eq!(got[0].source_network, "raw");
    assert_eq!(got[0].target_network, "alpha");
    drop(ws);
    bridge.shutdown();
}

#[test]
fn a_session_cut_in_the_middle_of_a_frame_delivers_no_more_of_it() {
    // A sink that refuses every message after holding it 300 ms (an inbox
    // that stays full, `delivery_timeout` later). A frame of 100 entries
    // would keep the reader 30 s; once the session is cut (here by the
    // shutdown) the reader delivers no further entry of the frame, as it
    // delivers no further frame, and the shutdown returns.
    let (entered_tx, entered) = unbounded();
    let bridge = closure_bridge(move |_| {
        let _ = entered_tx.send(());
        thread::sleep(Duration::from_millis(300));
        Err(DeliveryError::Full)
    });
    // No delivery features: each entry waits for room as in 1.0.
    let (mut ws, _) = raw_v11(bridge.local_addr(), &["bridge-1.1", "bridge-batch"]);
    let entries: Vec<Vec<u8>> = (0..100).map(|i| good(&format!("m{i}"))).collect();
    ws.send(WsMessage::binary(batch(100, &entries))).unwrap();
    entered
        .recv_timeout(PATIENCE)
        .expect("the reader reaches the sink");
    let started = Instant::now();
    bridge.shutdown();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "shutdown took {took:?}: the reader went on through the cut session's frame"
    );
    let handed = entered.try_iter().count() + 1;
    assert!(handed < 30, "{handed} entries reached the sink after the cut");
    drop(ws);
}

// ------------------------------------------- a raw acceptor, our dialer

/// Plays the acceptor's side of a 1.1 handshake as network `zzz` for the
/// next connection to `listener`, listing `bridge-batch` in its challenge
/// when `offer_batch`; returns the socket with the dialer's first frame.
fn raw_acceptor(listener: TcpListener, offer_batch: bool) -> JoinHandle<(WebSocket<TcpStream>, Value)> {
    thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("a dialer");
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut ws = tungstenite::accept(tcp).expect("upgrade");
        let request = read_text(&mut ws);
        let capabilities = if offer_batch {
            json!(["bridge-batch"])
        } else {
            json!([])
        };
        let challenge = json!({
            "protocol_version": "1.1", "network_id": "zzz", "instance_id": "zzz-1", "nonce": NONCE,
            "proof": null, "max_message_bytes": 1_048_576, "capabilities": capabilities,
        });
        ws.send(WsMessage::text(challenge.to_string())).unwrap();
        let proof = read_text(&mut ws);
        assert_eq!(proof["proof"], Value::Null, "{proof}");
        let result = json!({ "success": true, "network_id": "zzz", "instance_id": "zzz-1" });
        ws.send(WsMessage::text(result.to_string())).unwrap();
        (ws, request)
    })
}

/// What a raw reader makes of our frames, read with rmp alone (not the
/// crate's reader): each message's target, port, source and payload map,
/// and how it came.
#[derive(Debug, Default)]
struct Wire {
    messages: Vec<(String, String, String, Value)>,
    batch_frames: usize,
    /// Messages that came as DATA frames, whole or in fragments.
    data_messages: usize,
    fragments: usize,
    largest_batch: usize,
}

impl Wire {
    fn read(&mut self, frame: &[u8]) {
        match frame.first() {
            Some(8) => self.read_batch(frame),
            Some(1) => self.read_data(frame),
            Some(2) => self.fragments += 1,
            _ => {}
        }
    }

    fn read_batch(&mut self, frame: &[u8]) {
        self.batch_frames += 1;
        self.largest_batch = self.largest_batch.max(frame.len());
        let mut rest = &frame[1..];
        let count = rmp::decode::read_array_len(&mut rest).expect("an array of entries");
        assert!(count >= 1, "a BATCH frame without entries");
        for _ in 0..count {
            assert_eq!(rmp::decode::read_array_len(&mut rest).expect("an entry"), 4);
            let mut name = || {
                let len = rmp::decode::read_str_len(&mut rest).expect("a str") as usize;
                let (bytes, after) = rest.split_at(len);
                rest = after;
                String::from_utf8(bytes.to_vec()).expect("UTF-8")
            };
            let (target, port, source) = (name(), name(), name());
            let len = rmp::decode::read_bin_len(&mut rest).expect("a bin") as usize;
            let (payload, after) = rest.split_at(len);
            rest = after;
            let payload: Value = rmp_serde::from_slice(payload).expect("one MessagePack value");
            self.messages.push((target, port, source, payload));
        }
        assert!(rest.is_empty(), "{} bytes after the entries", rest.len());
    }

    fn read_data(&mut self, frame: &[u8]) {
        let body: Value = rmp_serde::from_slice(&frame[1..]).expect("a DATA body");
        self.data_messages += 1;
        let field = |key: &str| body[key].as_str().unwrap_or_default().to_string();
        let message = (field("target_actor"), field("target_port"), field("source_actor"));
        self.messages
            .push((message.0, message.1, message.2, body["payload"].clone()));
    }
}

/// A FRAGMENT body, the map `{more: bool, chunk: bin}`, read with rmp.
fn fragment(mut body: &[u8]) -> (bool, &[u8]) {
    let fields = rmp::decode::read_map_len(&mut body).expect("a map");
    let (mut more, mut chunk) = (None, None);
    for _ in 0..fields {
        let len = rmp::decode::read_str_len(&mut body).expect("a key") as usize;
        let (key, rest) = body.split_at(len);
        body = rest;
        match key {
            b"more" => more = Some(rmp::decode::read_bool(&mut body).expect("a bool")),
            b"chunk" => {
                let len = rmp::decode::read_bin_len(&mut body).expect("a bin") as usize;
                let (bytes, rest) = body.split_at(len);
                body = rest;
                chunk = Some(bytes);
            }
            other => panic!("unexpected key {other:?} in a FRAGMENT body"),
        }
    }
    (more.expect("more"), chunk.expect("chunk"))
}

/// Reads binary frames from `ws` until `count` messages came; FRAGMENT
/// chunks are joined and read as the frame they make.
fn read_messages(ws: &mut WebSocket<TcpStream>, count: usize) -> Wire {
    let mut wire = Wire::default();
    let mut joined: Vec<u8> = Vec::new();
    while wire.messages.len() < count {
        let frame = match ws.read() {
            Ok(WsMessage::Binary(frame)) => frame,
            Ok(_) => continue,
            Err(e) => panic!("after {} messages: {e}", wire.messages.len()),
        };
        wire.read(&frame);
        if frame.first() == Some(&2) {
            let (more, chunk) = fragment(&frame[1..]);
            joined.extend_from_slice(chunk);
            if !more {
                wire.read(&std::mem::take(&mut joined));
            }
        }
    }
    wire
}

#[test]
fn a_peer_of_ours_writes_the_documented_batch_layout_only_to_a_peer_that_listed_it() {
    for offer_batch in [true, false] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = raw_acceptor(listener, offer_batch);
        let parent = DistributedNetwork::new(peer_config("parent", true)).expect("valid config");
        parent.start().expect("parent starts");
        assert_eq!(parent.connect_to_network(&addr.to_string()).unwrap(), "zzz");
        let (ws, request) = acceptor.join().expect("raw acceptor");
        let listed: Vec<&str> = request["capabilities"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            listed.contains(&"bridge-1.1") && listed.contains(&"bridge-batch"),
            "{request}"
        );

        let count = 1_500;
        // Read while the parent sends, so that no send waits for room.
        let reader = thread::spawn(move || {
            let mut ws = ws;
            let wire = read_messages(&mut ws, count);
            (ws, wire)
        });
        for i in 0..count {
            parent
                .send_to_remote_actor("zzz", "sink", "in", Message::string(text_of(i, mixed_size(i))))
                .unwrap_or_else(|e| panic!("message {i} not sent: {e}"));
        }
        let (ws, wire) = reader.join().expect("raw reader");
        for (i, (target, port, source, payload)) in wire.messages.iter().enumerate() {
            assert_eq!(
                (target.as_str(), port.as_str(), source.as_str()),
                ("sink", "in", "unknown")
            );
            let expected = json!({ "type": "String", "data": text_of(i, mixed_size(i)) });
            assert!(
                *payload == expected,
                "message {i}: not the payload map of its text"
            );
        }
        let big = (0..count).filter(|&i| mixed_size(i) == BIG).count();
        if offer_batch {
            assert_eq!(
                wire.data_messages, big,
                "only the 100 KiB messages go as DATA frames"
            );
            assert!(wire.batch_frames >= 1);
            assert!(
                wire.largest_batch <= 64 * 1024,
                "a BATCH frame of {} bytes",
                wire.largest_batch
            );
        } else {
            assert_eq!(
                wire.batch_frames, 0,
                "BATCH frames to a peer that did not list them"
            );
            assert_eq!(wire.data_messages, count);
        }
        assert!(
            wire.fragments >= 2 * big,
            "a 100 KiB message in fewer than two fragments"
        );
        drop(ws);
        parent.shutdown();
    }
}

#[test]
fn batch_entries_that_come_on_a_duplicate_connection_are_delivered_while_it_closes() {
    let mut config = quick_config();
    // The first connection must not look half-open while the second comes.
    config.heartbeat_interval = Duration::from_secs(5);
    let alpha = start_peer("alpha", None, config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = raw_acceptor(listener, true);
    assert_eq!(alpha.bridge.connect(&addr.to_string()).unwrap(), "zzz");
    let (first, _) = acceptor.join().expect("raw acceptor");

    // zzz dials back, as the same instance: alpha keeps the connection it
    // dialed (its network id sorts first) and closes this one, delivering
    // what arrives before zzz's Close.
    let (mut second, _) = raw_v11_as("zzz", alpha.bridge.local_addr(), &["bridge-1.1", "bridge-batch"]);
    let strong = rmp_serde::to_vec_named(&json!({ "type": "Strong", "data": "x" })).unwrap();
    second
        .send(WsMessage::binary(batch(
            3,
            &[
                good("dup1"),
                entry(b"recorder", b"in", b"writer", &strong),
                good("dup2"),
            ],
        )))
        .unwrap();
    second.send(WsMessage::binary(batch(1, &[good("dup3")]))).unwrap();
    let reason = loop {
        match second.read() {
            Ok(WsMessage::Close(frame)) => break frame.map(|f| f.reason.to_string()),
            Ok(_) => continue,
            Err(e) => panic!("no Close from alpha: {e}"),
        }
    };
    assert_eq!(reason.as_deref(), Some("duplicate connection"));
    // Reading on sends the answering Close and sees the socket end.
    while second.read().is_ok() {}

    let got = take(&alpha.inbox, 3, "messages of the duplicate connection");
    let texts: Vec<Option<&str>> = got.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(texts, [Some("dup1"), Some("dup2"), Some("dup3")]);
    assert!(
        got.iter()
            .all(|m| m.source_network == "zzz" && m.source_actor == "writer")
    );
    let stats = alpha.bridge.stats();
    assert_eq!(stats.malformed_frames, 1, "{stats:?}");
    assert_eq!(stats.messages_received, 3, "{stats:?}");
    assert_eq!(alpha.bridge.connection_count(), 1);
    assert!(alpha.bridge.is_connected_to("zzz"));
    drop(first);
    alpha.bridge.shutdown();
}
