//! Protocol 1.0 stays first-class: a peer of ours talks to an acceptor that
//! speaks only 1.0 (as async Reflow does) in the forms a 1.0 reader parses,
//! refuses at the sender what 1.0 cannot carry, and reads what 1.0 writes.
//! The acceptor here is a plain tungstenite server playing Reflow 1.0.

mod bridge_support;

use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

use bridge_support::*;
use crossbeam_channel::{Receiver, Sender, unbounded};
use reflow_distributed::Message;
use reflow_distributed::bridge::{BridgeError, RemoteMessage};
use serde_json::{Value, json};
use tungstenite::{Message as WsMessage, WebSocket};

/// A 1.0 acceptor: answers the handshake as 1.0 (accepting anyone), reports
/// the dialer's first frame and every text frame after it, and sends what the
/// test hands it.
struct Reflow10 {
    endpoint: String,
    first_frame: Receiver<Value>,
    frames: Receiver<Value>,
    outbox: Sender<String>,
    _thread: JoinHandle<()>,
}

fn reflow10_acceptor(network: &str) -> Reflow10 {
    reflow10_acceptor_with_token(network, None)
}

/// As `reflow10_acceptor`, checking the plaintext token like Reflow 1.0
/// does: a dialer with another token (null counts as empty) is refused and
/// the next connection is awaited.
fn reflow10_acceptor_with_token(network: &str, token: Option<&str>) -> Reflow10 {
    let token = token.map(str::to_string);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let (first_tx, first_frame) = unbounded();
    let (frames_tx, frames) = unbounded();
    let (outbox, outbox_rx) = unbounded::<String>();
    let network = network.to_string();
    let thread = thread::spawn(move || {
        let mut ws = loop {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(std::time::Duration::from_millis(20)))
                .unwrap();
            let mut ws: WebSocket<TcpStream> = tungstenite::accept(tcp).unwrap();
            let first: Value = loop {
                match ws.read() {
                    Ok(WsMessage::Text(text)) => break serde_json::from_str(text.as_str()).unwrap(),
                    Ok(_) | Err(tungstenite::Error::Io(_)) => {}
                    Err(_) => return,
                }
            };
            let given = first["auth_token"].as_str().unwrap_or("").to_string();
            let _ = first_tx.send(first);
            let accepted = token.as_deref().is_none_or(|t| t == given);
            let reply = json!({
                "success": accepted, "network_id": network, "instance_id": format!("{network}-1"),
                "error": if accepted { Value::Null } else { json!("auth_token mismatch") },
            });
            ws.send(WsMessage::text(reply.to_string())).unwrap();
            if accepted {
                break ws;
            }
            let _ = ws.close(None);
        };
        loop {
            while let Ok(text) = outbox_rx.try_recv() {
                if ws.send(WsMessage::text(text)).is_err() {
                    return;
                }
            }
            match ws.read() {
                Ok(WsMessage::Text(text)) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    // Heartbeats are not what the test watches.
                    if value.get("message_id").is_some() {
                        let _ = frames_tx.send(value);
                    }
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(_)) => {}
                Err(_) => return,
            }
        }
    });
    Reflow10 {
        endpoint,
        first_frame,
        frames,
        outbox,
        _thread: thread,
    }
}

fn message(to: &str, payload: Message) -> RemoteMessage {
    RemoteMessage::new("beta", "unknown", to, "recorder", "in", payload)
}

#[test]
fn a_1_0_acceptor_gets_a_1_0_session_with_the_forms_it_reads() {
    let alpha = reflow10_acceptor("alpha");
    let beta = start_peer("beta", None, quick_config());
    assert_eq!(beta.bridge.connect(&alpha.endpoint).unwrap(), "alpha");

    // The offer of 1.1 rides in a valid 1.0 first frame, without a token.
    let first = alpha.first_frame.recv_timeout(PATIENCE).unwrap();
    assert_eq!(first["protocol_version"], "1.0");
    assert!(first["auth_token"].is_null());

    let object = Message::Object(std::sync::Arc::new(
        json!({"k": "v"}).as_object().unwrap().clone(),
    ));
    beta.bridge.send(message("alpha", object), PATIENCE).unwrap();
    let frame = alpha.frames.recv_timeout(PATIENCE).unwrap();
    // Reflow 1.0 reads an Object only as {"data": [bytes of the JSON text]}.
    let bytes: Vec<u8> = frame["payload"]["data"]["data"]
        .as_array()
        .expect("wrapper form")
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap(),
        json!({"k": "v"})
    );
    assert_eq!(frame["payload"]["type"], "Object");
}

#[test]
fn a_kind_1_0_cannot_carry_is_an_error_at_the_sender_that_hands_it_back() {
    let alpha = reflow10_acceptor("alpha");
    let beta = start_peer("beta", None, quick_config());
    beta.bridge.connect(&alpha.endpoint).unwrap();
    // serde_json would write NaN as null, which a 1.0 reader drops silently.
    let err = beta
        .bridge
        .send(message("alpha", Message::Float(f64::NAN)), PATIENCE)
        .unwrap_err();
    assert!(
        matches!(err.error(), BridgeError::Unrepresentable { .. }),
        "{err}"
    );
    assert!(matches!(err.into_message().payload, Message::Float(x) if x.is_nan()));
    // The connection is untouched: the next message goes through.
    beta.bridge
        .send(message("alpha", Message::string("next")), PATIENCE)
        .unwrap();
    let frame = alpha.frames.recv_timeout(PATIENCE).unwrap();
    assert_eq!(frame["payload"], json!({"type": "String", "data": "next"}));
}

#[test]
fn what_reflow_1_0_writes_is_read_including_stream_and_wrapped_array_elements() {
    let alpha = reflow10_acceptor("alpha");
    let beta = start_peer("beta", None, quick_config());
    beta.bridge.connect(&alpha.endpoint).unwrap();
    let wrapped = |v: Value| json!({"data": serde_json::to_vec(&v).unwrap()});
    for payload in [
        json!({"type": "Stream", "data": [1, 2, 3]}),
        json!({"type": "Array", "data": [wrapped(json!(1)), wrapped(json!({"a": true}))]}),
    ] {
        let frame = json!({
            "message_id": "m", "source_network": "alpha", "source_actor": "",
            "target_network": "beta", "target_actor": "recorder", "target_port": "in",
            "payload": payload, "timestamp": "2026-04-28T22:48:33.001000000Z"
        });
        alpha.outbox.send(frame.to_string()).unwrap();
    }
    let first = beta.inbox.recv_timeout(PATIENCE).unwrap();
    assert_eq!(first.payload, Message::Bytes(vec![1u8, 2, 3].into()));
    let second = beta.inbox.recv_timeout(PATIENCE).unwrap();
    assert_eq!(
        second.payload,
        Message::Array(std::sync::Arc::new(vec![json!(1), json!({"a": true})]))
    );
}

#[test]
fn a_token_goes_in_clear_to_a_1_0_acceptor_only_where_legacy_auth_is_set() {
    use reflow_distributed::bridge::{HandshakeError, HoldOptions};
    // Without legacy_auth: refused, and the token never left the dialer.
    let strict = reflow10_acceptor_with_token("alpha", Some("s3cret"));
    let beta = start_peer("beta", Some("s3cret"), quick_config());
    let err = beta.bridge.connect(&strict.endpoint).unwrap_err();
    assert!(
        matches!(err, BridgeError::Handshake(HandshakeError::Refused(ref why)) if why == "auth_token mismatch"),
        "{err}"
    );
    let first = strict.first_frame.recv_timeout(PATIENCE).unwrap();
    assert!(first["auth_token"].is_null());
    assert!(
        strict.first_frame.try_recv().is_err(),
        "no second, plaintext attempt"
    );

    // With legacy_auth on that endpoint: a second dial carries the token.
    let legacy = reflow10_acceptor_with_token("alpha", Some("s3cret"));
    let gamma = start_peer("gamma", Some("s3cret"), quick_config());
    let options = HoldOptions::expecting("alpha").with_legacy_auth(true);
    assert_eq!(
        gamma.bridge.connect_with(&legacy.endpoint, options).unwrap(),
        "alpha"
    );
    let offer = legacy.first_frame.recv_timeout(PATIENCE).unwrap();
    assert!(offer["auth_token"].is_null());
    let plaintext = legacy.first_frame.recv_timeout(PATIENCE).unwrap();
    assert_eq!(plaintext["auth_token"], "s3cret");
    gamma
        .bridge
        .send(message("alpha", Message::string("over 1.0")), PATIENCE)
        .unwrap();
    let frame = legacy.frames.recv_timeout(PATIENCE).unwrap();
    assert_eq!(frame["payload"]["data"], "over 1.0");
}
