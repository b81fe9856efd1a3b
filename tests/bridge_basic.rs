//! Two and three bridges in one process over 127.0.0.1: delivery both ways,
//! authentication, capacity, routing errors and shutdown.

mod bridge_support;

use std::time::Duration;

use bridge_support::*;
use reflow_distributed::Message;
use reflow_distributed::bridge::{BridgeError, BridgeEvent, HandshakeError};

#[test]
fn messages_flow_both_ways_once_connected() {
    let alpha = start_peer("alpha", None, quick_config());
    let beta = start_peer("beta", None, quick_config());

    assert_eq!(beta.bridge.connect(&alpha.endpoint()).unwrap(), "alpha");
    assert!(beta.bridge.is_connected_to("alpha"));
    assert!(eventually(PATIENCE, || alpha.bridge.is_connected_to("beta")));
    assert_eq!(alpha.bridge.connected_networks(), vec!["beta".to_string()]);

    beta.bridge
        .send(text_message("beta", "alpha", "hello-from-beta"), PATIENCE)
        .unwrap();
    let got = alpha.inbox.recv_timeout(PATIENCE).expect("alpha receives");
    assert_eq!(got.payload, Message::string("hello-from-beta"));
    assert_eq!(
        (got.source_network.as_str(), got.target_actor.as_str()),
        ("beta", "recorder")
    );

    alpha
        .bridge
        .try_send(text_message("alpha", "beta", "hello-from-alpha"))
        .unwrap();
    let got = beta.inbox.recv_timeout(PATIENCE).expect("beta receives");
    assert_eq!(got.payload, Message::string("hello-from-alpha"));

    assert!(eventually(PATIENCE, || beta.bridge.stats().messages_sent == 1));
    assert_eq!(alpha.bridge.stats().messages_received, 1);
}

#[test]
fn many_messages_arrive_in_order() {
    let alpha = start_peer("alpha", None, quick_config());
    let beta = start_peer("beta", None, quick_config());
    beta.bridge.connect(&alpha.endpoint()).unwrap();
    for i in 0..2000 {
        let message = text_message("beta", "alpha", &format!("m{i}"));
        beta.bridge.send(message, PATIENCE).unwrap();
    }
    for i in 0..2000 {
        let got = alpha.inbox.recv_timeout(PATIENCE).expect("message arrives");
        assert_eq!(got.payload, Message::string(format!("m{i}")));
    }
}

/// Sends on an idle session are written by the sending thread, sends close
/// together are queued for the writer, and messages over one fragment always
/// are: two threads mixing all three keep their own order, and nothing is
/// lost or counted twice.
#[test]
fn written_through_and_queued_sends_keep_each_threads_order() {
    const PER_THREAD: usize = 1500;
    let alpha = start_peer("alpha", None, quick_config());
    let beta = std::sync::Arc::new(start_peer("beta", None, quick_config()));
    beta.bridge.connect(&alpha.endpoint()).unwrap();
    let big = "x".repeat(100 * 1024);
    let senders: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|tag| {
            let beta = beta.clone();
            let big = big.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    // Bursts of 20, a pause (the next send finds the session
                    // idle), and now and then a message over one fragment.
                    let pad = if i % 97 == 0 { big.as_str() } else { "" };
                    let text = format!("{tag}{i}:{pad}");
                    beta.bridge
                        .send(text_message("beta", "alpha", &text), PATIENCE)
                        .unwrap();
                    if i % 20 == 19 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            })
        })
        .collect();
    let mut next = std::collections::HashMap::from([('a', 0usize), ('b', 0usize)]);
    for _ in 0..2 * PER_THREAD {
        let got = alpha.inbox.recv_timeout(PATIENCE).expect("message arrives");
        let Message::String(text) = &got.payload else {
            panic!("not a string: {:?}", got.payload);
        };
        let tag = text.chars().next().expect("tagged");
        let n: usize = text[1..text.find(':').expect("numbered")]
            .parse()
            .expect("a number");
        assert_eq!(n, next[&tag], "thread {tag}: message {n} out of order");
        *next.get_mut(&tag).expect("known tag") += 1;
    }
    for sender in senders {
        sender.join().expect("sender");
    }
    assert!(
        alpha.inbox.recv_timeout(Duration::from_millis(200)).is_err(),
        "a message twice"
    );
    assert!(eventually(PATIENCE, || beta.bridge.stats().messages_sent
        == (2 * PER_THREAD) as u64));
    assert_eq!(beta.bridge.lost_messages("alpha"), 0);
}

#[test]
fn both_sides_report_connected_with_who_dialed() {
    let alpha = start_peer("alpha", None, quick_config());
    let beta = start_peer("beta", None, quick_config());
    beta.bridge.connect(&alpha.endpoint()).unwrap();
    let on_beta = wait_event(&beta.events, PATIENCE, |e| {
        matches!(e, BridgeEvent::Connected { .. })
    });
    assert_eq!(
        on_beta,
        Some(BridgeEvent::Connected {
            network_id: "alpha".into(),
            endpoint: alpha.endpoint(),
            dialed: true
        })
    );
    let on_alpha = wait_event(&alpha.events, PATIENCE, |e| {
        matches!(e, BridgeEvent::Connected { .. })
    });
    assert!(
        matches!(on_alpha, Some(BridgeEvent::Connected { network_id, dialed: false, .. }) if network_id == "beta")
    );
}

#[test]
fn connecting_again_to_a_connected_network_returns_at_once() {
    let alpha = start_peer("alpha", None, quick_config());
    let beta = start_peer("beta", None, quick_config());
    beta.bridge.connect(&alpha.endpoint()).unwrap();
    assert_eq!(beta.bridge.connect(&alpha.endpoint()).unwrap(), "alpha");
    assert_eq!(beta.bridge.connection_count(), 1);
    assert!(eventually(PATIENCE, || alpha.bridge.connection_count() == 1));
}

#[test]
fn sending_to_an_unconnected_network_names_it() {
    let alpha = start_peer("alpha", None, quick_config());
    let err = alpha
        .bridge
        .send(text_message("alpha", "nowhere", "x"), Duration::from_millis(10))
        .unwrap_err();
    assert_eq!(err.to_string(), "No connection to network: nowhere");
    let err = alpha
        .bridge
        .try_send(text_message("alpha", "nowhere", "x"))
        .unwrap_err();
    assert!(matches!(err.error(), BridgeError::NoConnection(_)));
    // The message comes back whole.
    assert_eq!(err.into_message().payload, Message::string("x"));
}

#[test]
fn matching_token_connects() {
    let alpha = start_peer("alpha", Some("shared-secret"), quick_config());
    let beta = start_peer("beta", Some("shared-secret"), quick_config());
    assert_eq!(beta.bridge.connect(&alpha.endpoint()).unwrap(), "alpha");
}

#[test]
fn mismatched_token_is_refused_with_the_protocol_text() {
    let alpha = start_peer("alpha", Some("shared-secret"), quick_config());
    let beta = start_peer("beta", Some("wrong-secret"), quick_config());
    let err = beta.bridge.connect(&alpha.endpoint()).unwrap_err();
    // The dialer checks the acceptor's proof first: a different token reads
    // as a mismatch on this side, and the acceptor is told so and counts it.
    assert!(
        err.to_string()
            .starts_with("handshake refused: auth_token mismatch"),
        "{err}"
    );
    assert!(matches!(err, BridgeError::Handshake(HandshakeError::Unproven(_))));
    assert!(!beta.bridge.is_connected_to("alpha"));
    assert_eq!(alpha.bridge.connection_count(), 0);
    assert!(eventually(PATIENCE, || alpha.bridge.stats().refused_handshakes == 1));
}

#[test]
fn missing_token_is_refused_and_a_token_is_never_offered_to_an_acceptor_without_one() {
    let guarded = start_peer("alpha", Some("shared-secret"), quick_config());
    let open = start_peer("gamma", None, quick_config());
    let tokenless = start_peer("beta", None, quick_config());
    let err = tokenless.bridge.connect(&guarded.endpoint()).unwrap_err();
    assert_eq!(err.to_string(), "handshake refused: auth_token mismatch");
    assert_eq!(tokenless.bridge.connect(&open.endpoint()).unwrap(), "gamma");

    // An acceptor that cannot prove the token may be a stranger: refused.
    let with_token = start_peer("delta", Some("anything"), quick_config());
    let err = with_token.bridge.connect(&open.endpoint()).unwrap_err();
    assert!(
        matches!(err, BridgeError::Handshake(HandshakeError::Unproven(_))),
        "{err}"
    );
    assert!(!open.bridge.is_connected_to("delta"));
}

#[test]
fn max_connections_refuses_the_next_peer_clearly() {
    let mut config = quick_config();
    config.max_connections = 1;
    let alpha = start_peer("alpha", None, config);
    let beta = start_peer("beta", None, quick_config());
    let gamma = start_peer("gamma", None, quick_config());
    beta.bridge.connect(&alpha.endpoint()).unwrap();
    let err = gamma.bridge.connect(&alpha.endpoint()).unwrap_err();
    assert_eq!(err.to_string(), "handshake refused: max_connections reached");
    assert_eq!(alpha.bridge.connected_networks(), vec!["beta".to_string()]);
    // The connection that got in still works.
    beta.bridge
        .send(text_message("beta", "alpha", "still-here"), PATIENCE)
        .unwrap();
    assert_eq!(
        alpha.inbox.recv_timeout(PATIENCE).unwrap().payload,
        Message::string("still-here")
    );
}

#[test]
fn shutdown_closes_peers_and_the_other_side_notices() {
    let alpha = start_peer("alpha", None, quick_config());
    let beta = start_peer("beta", None, quick_config());
    alpha.bridge.connect(&beta.endpoint()).unwrap();
    assert!(eventually(PATIENCE, || beta.bridge.is_connected_to("alpha")));
    alpha.bridge.shutdown();
    assert_eq!(alpha.bridge.connection_count(), 0);
    let gone = wait_event(&beta.events, PATIENCE, |e| {
        matches!(e, BridgeEvent::Disconnected { .. })
    });
    assert!(matches!(gone, Some(BridgeEvent::Disconnected { network_id, .. }) if network_id == "alpha"));
    assert!(!beta.bridge.is_connected_to("alpha"));
    assert!(matches!(
        alpha.bridge.connect(&beta.endpoint()),
        Err(BridgeError::ShuttingDown)
    ));
    alpha.bridge.shutdown();
}
