//! Credits counted in bytes: between two bridges over loopback, a receiver
//! that never consumes holds at most `target_window × credit_bytes` of large
//! messages per target, while small messages still get the whole window of
//! `target_window` messages; a peer that does not state `credit_bytes` keeps
//! one credit per message; a message larger than the whole window still goes
//! when nothing else is outstanding.

mod bridge_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_support::*;
use reflow_distributed::Message;
use reflow_distributed::bridge::{
    BridgeConfig, BridgeError, DeliveryError, InboundSink, RemoteMessage, Tracking,
};

const WINDOW: u32 = 64;
const UNIT: u32 = 4096;
const BIG: usize = 64 * 1024;
const SMALL: usize = 64;

/// Keeps every message it is handed, unconsumed, until `release`: an actor
/// that has stopped.
#[derive(Default)]
struct HoldingSink {
    held: Mutex<Vec<(String, usize, Tracking)>>,
    /// Messages handed over without room past the inbox: a sender that
    /// overran its window.
    past_window: Mutex<usize>,
}

impl HoldingSink {
    /// Payload bytes held for `target`, and how many messages.
    fn holding(&self, target: &str) -> (usize, usize) {
        let held = self.held.lock().unwrap();
        let mine = held.iter().filter(|(t, _, _)| t == target);
        mine.fold((0, 0), |(bytes, n), (_, len, _)| (bytes + len, n + 1))
    }

    /// Consumes every held message: its credits go back to the sender.
    fn release(&self) {
        for (_, _, tracking) in self.held.lock().unwrap().drain(..) {
            tracking.consumed();
        }
    }
}

impl InboundSink for HoldingSink {
    fn deliver(&self, _: RemoteMessage) -> Result<(), DeliveryError> {
        unreachable!("both bridges offer the delivery features")
    }

    fn deliver_tracked(&self, message: RemoteMessage, tracking: Tracking) -> Result<(), DeliveryError> {
        if !tracking.may_overfill() {
            *self.past_window.lock().unwrap() += 1;
        }
        let len = message.payload.as_str().map_or(0, str::len);
        self.held
            .lock()
            .unwrap()
            .push((message.target_actor, len, tracking));
        Ok(())
    }
}

fn config(window: u32, credit_bytes: u32) -> BridgeConfig {
    let mut config = quick_config();
    config.delivery.target_window = window;
    config.delivery.credit_bytes = credit_bytes;
    config
}

/// A receiver `alpha` holding what it gets, and a sender `beta` connected to it.
fn pair(receiver: BridgeConfig, sender: BridgeConfig) -> (Peer, Arc<HoldingSink>, Peer) {
    let sink = Arc::new(HoldingSink::default());
    let (_, inbox) = crossbeam_channel::unbounded();
    let alpha = start_with_sink("alpha", None, receiver, sink.clone(), inbox);
    let beta = start_peer("beta", None, sender);
    beta.bridge.connect(&alpha.endpoint()).expect("beta connects");
    (alpha, sink, beta)
}

fn message(target: &str, len: usize) -> RemoteMessage {
    RemoteMessage::new(
        "beta",
        "source",
        "alpha",
        target,
        "in",
        Message::string("x".repeat(len)),
    )
}

/// Sends `len`-byte messages to `target` without waiting until its window
/// is used up; returns how many went.
fn fill(beta: &Peer, target: &str, len: usize) -> usize {
    let mut sent = 0;
    loop {
        match beta.bridge.send(message(target, len), Duration::ZERO) {
            Ok(()) => sent += 1,
            Err(err) if matches!(err.error(), BridgeError::WindowFull { .. }) => return sent,
            Err(err) => panic!("message {sent} to {target}: {err}"),
        }
        assert!(sent <= 10 * WINDOW as usize, "{target}'s window never filled");
    }
}

/// Waits until the receiver holds `n` messages for `target`; returns their bytes.
fn held(sink: &HoldingSink, target: &str, n: usize) -> usize {
    assert!(
        eventually(PATIENCE, || sink.holding(target).1 >= n),
        "{target}: {n} messages never arrived (holding {:?})",
        sink.holding(target)
    );
    let (bytes, count) = sink.holding(target);
    assert_eq!(count, n, "{target}: more arrived than were sent");
    bytes
}

#[test]
fn a_stopped_receiver_of_large_messages_holds_at_most_the_byte_bound() {
    let (alpha, sink, beta) = pair(config(WINDOW, UNIT), config(WINDOW, UNIT));

    // A 64 KiB message's DATA frame is a little over 16 units: it costs 17.
    let big = fill(&beta, "big", BIG);
    assert_eq!(big, WINDOW as usize / 17);
    let bytes = held(&sink, "big", big);
    assert!(
        bytes <= (WINDOW * UNIT) as usize,
        "{bytes} bytes held past the bound of {}",
        WINDOW * UNIT
    );
    // Small messages to another actor get the whole window in messages.
    assert_eq!(fill(&beta, "small", SMALL), WINDOW as usize);
    held(&sink, "small", WINDOW as usize);

    // Consumed, the big messages' costs come back (in one grant or in
    // several, as the receiver's writer sends them): as many go again, and
    // not one more.
    sink.release();
    let mut again = 0;
    assert!(
        eventually(PATIENCE, || {
            while again < big && beta.bridge.send(message("big", BIG), Duration::ZERO).is_ok() {
                again += 1;
            }
            again == big
        }),
        "credits came back for {again} of {big} messages"
    );
    assert_eq!(fill(&beta, "big", BIG), 0, "more went than the window holds");
    held(&sink, "big", big);
    assert_eq!(
        *sink.past_window.lock().unwrap(),
        0,
        "no message went past its window"
    );
    sink.release();
    beta.bridge.shutdown();
    alpha.bridge.shutdown();
}

/// A receiver or a sender that does not state `credit_bytes` (0: as an
/// older peer) keeps one credit per message, whatever the other states.
#[test]
fn without_credit_bytes_on_either_side_a_message_costs_one_credit() {
    for (receiver, sender) in [(0, UNIT), (UNIT, 0)] {
        let (alpha, sink, beta) = pair(config(WINDOW, receiver), config(WINDOW, sender));
        assert_eq!(
            fill(&beta, "big", BIG),
            WINDOW as usize,
            "receiver {receiver}, sender {sender}"
        );
        held(&sink, "big", WINDOW as usize);
        assert_eq!(*sink.past_window.lock().unwrap(), 0);
        sink.release();
        beta.bridge.shutdown();
        alpha.bridge.shutdown();
    }
}

/// A message costing more than the whole window goes when little else is
/// outstanding (here: nothing, the window being 8): never a deadlock.
#[test]
fn a_message_larger_than_the_window_goes_when_nothing_is_outstanding() {
    let window = 8;
    let (alpha, sink, beta) = pair(config(window, UNIT), config(window, UNIT));
    assert_eq!(
        fill(&beta, "big", BIG),
        1,
        "one message over the window goes alone"
    );
    held(&sink, "big", 1);
    assert_eq!(fill(&beta, "big", SMALL), 0, "nothing joins it");
    sink.release();
    assert!(
        eventually(PATIENCE, || beta
            .bridge
            .send(message("big", BIG), Duration::ZERO)
            .is_ok()),
        "the window never came back"
    );
    held(&sink, "big", 1);
    assert_eq!(*sink.past_window.lock().unwrap(), 0);
    sink.release();
    beta.bridge.shutdown();
    alpha.bridge.shutdown();
}
