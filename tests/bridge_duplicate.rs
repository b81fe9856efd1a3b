//! Two peers dialing each other at the same moment end with exactly one
//! connection, and neither redials the one that was dropped.

mod bridge_support;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use bridge_support::*;
use reflow_distributed::Message;
use reflow_distributed::bridge::BridgeEvent;

#[test]
fn simultaneous_dials_leave_one_connection() {
    for round in 0..5 {
        let alpha = Arc::new(start_peer("alpha", None, quick_config()));
        let beta = Arc::new(start_peer("beta", None, quick_config()));
        let barrier = Arc::new(Barrier::new(2));
        let dial = |from: &Arc<Peer>, to: &Arc<Peer>| {
            let (from, endpoint, barrier) = (Arc::clone(from), to.endpoint(), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                from.bridge.connect(&endpoint)
            })
        };
        let a = dial(&alpha, &beta);
        let b = dial(&beta, &alpha);
        assert_eq!(a.join().unwrap().unwrap(), "beta", "round {round}");
        assert_eq!(b.join().unwrap().unwrap(), "alpha", "round {round}");

        assert!(
            eventually(PATIENCE, || alpha.bridge.connection_count() == 1
                && beta.bridge.connection_count() == 1
                && alpha.bridge.is_connected_to("beta")
                && beta.bridge.is_connected_to("alpha")),
            "round {round}"
        );
        // Settled: no redial churn, and messages flow both ways.
        let churn = wait_event(&beta.events, Duration::from_millis(300), |e| {
            matches!(
                e,
                BridgeEvent::ReconnectFailed { .. } | BridgeEvent::Reconnected { .. }
            )
        });
        assert_eq!(churn, None, "round {round}");
        alpha
            .bridge
            .send(text_message("alpha", "beta", "a"), PATIENCE)
            .unwrap();
        beta.bridge
            .send(text_message("beta", "alpha", "b"), PATIENCE)
            .unwrap();
        assert_eq!(
            beta.inbox.recv_timeout(PATIENCE).unwrap().payload,
            Message::string("a")
        );
        assert_eq!(
            alpha.inbox.recv_timeout(PATIENCE).unwrap().payload,
            Message::string("b")
        );
        assert_eq!(
            (alpha.bridge.connection_count(), beta.bridge.connection_count()),
            (1, 1)
        );
    }
}
