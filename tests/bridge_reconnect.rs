//! Redialing of dialed connections: a peer that restarts on the same port
//! within the backoff window is reconnected; one that stays away is redialed
//! for as long as the link is held.

mod bridge_support;

use std::time::Duration;

use bridge_support::*;
use reflow_distributed::Message;
use reflow_distributed::bridge::{BridgeConfig, BridgeEvent, ReconnectPolicy};

fn config_on_port(port: u16) -> BridgeConfig {
    let mut config = quick_config();
    config.bind_port = port;
    config
}

#[test]
fn a_restarted_peer_on_the_same_port_is_redialed() {
    let alpha = start_peer("alpha", None, quick_config());
    let port = alpha.bridge.local_addr().port();
    let beta = start_peer("beta", None, quick_config());
    beta.bridge.connect(&alpha.endpoint()).unwrap();

    alpha.bridge.shutdown();
    let lost = wait_event(&beta.events, PATIENCE, |e| {
        matches!(e, BridgeEvent::Disconnected { .. })
    });
    assert!(lost.is_some(), "beta notices alpha going away");
    // The first redial (after 200 ms) finds nobody listening.
    let failed = wait_event(&beta.events, PATIENCE, |e| {
        matches!(e, BridgeEvent::ReconnectFailed { .. })
    });
    assert!(
        matches!(failed, Some(BridgeEvent::ReconnectFailed { attempt: 1, .. })),
        "{failed:?}"
    );

    let alpha_again = start_peer("alpha", None, config_on_port(port));
    let back = wait_event(&beta.events, PATIENCE, |e| {
        matches!(e, BridgeEvent::Reconnected { .. })
    });
    match back {
        Some(BridgeEvent::Reconnected {
            network_id,
            endpoint,
            attempt,
        }) => {
            assert_eq!(network_id, "alpha");
            assert_eq!(endpoint, format!("127.0.0.1:{port}"));
            assert!((2..=5).contains(&attempt), "attempt {attempt}");
        }
        other => panic!("no reconnect: {other:?}"),
    }
    assert!(beta.bridge.is_connected_to("alpha"));
    beta.bridge
        .send(text_message("beta", "alpha", "after-restart"), PATIENCE)
        .unwrap();
    assert_eq!(
        alpha_again.inbox.recv_timeout(PATIENCE).unwrap().payload,
        Message::string("after-restart")
    );
}

#[test]
fn redialing_goes_on_past_the_numbered_attempts() {
    let alpha = start_peer("alpha", None, quick_config());
    let mut config = quick_config();
    config.reconnect = ReconnectPolicy {
        initial_delay: Duration::from_millis(20),
        multiplier: 2,
        max_delay: Duration::from_millis(80),
        max_attempts: 3,
    };
    let beta = start_peer("beta", None, config);
    beta.bridge.connect(&alpha.endpoint()).unwrap();
    alpha.bridge.shutdown();

    let mut attempts = Vec::new();
    let sixth = wait_event(&beta.events, PATIENCE, |e| {
        if let BridgeEvent::ReconnectFailed { attempt, .. } = e {
            attempts.push(*attempt);
            return *attempt == 6;
        }
        false
    });
    assert!(sixth.is_some(), "attempts so far: {attempts:?}");
    assert_eq!(attempts, vec![1, 2, 3, 4, 5, 6]);
    assert!(!beta.bridge.is_connected_to("alpha"));
}

#[test]
fn accepted_connections_are_not_redialed() {
    let alpha = start_peer("alpha", None, quick_config());
    let beta = start_peer("beta", None, quick_config());
    beta.bridge.connect(&alpha.endpoint()).unwrap();
    assert!(eventually(PATIENCE, || alpha.bridge.is_connected_to("beta")));
    beta.bridge.shutdown();
    let lost = wait_event(&alpha.events, PATIENCE, |e| {
        matches!(e, BridgeEvent::Disconnected { .. })
    });
    assert!(lost.is_some());
    // Redials would start within 200 ms; give them a full second.
    let redial = wait_event(&alpha.events, Duration::from_secs(1), |e| {
        matches!(
            e,
            BridgeEvent::ReconnectFailed { .. } | BridgeEvent::Reconnected { .. }
        )
    });
    assert_eq!(redial, None);
}
