//! The sender's outbox of one remote network: messages under acknowledged
//! delivery, from `send` until the receiver acknowledges them, whatever
//! happens to the connections in between.
//!
//! Each message gets the next sequence number of this side's incarnation
//! and is kept as its encoded SEQUENCED frame. The writer of the network's
//! current session takes frames in order, at most `ack_window` ahead of the
//! acknowledgements; a new session starts again from the oldest
//! unacknowledged message (the replay). The bound in messages and bytes is
//! the backpressure of this mode: a send waits for room, never drops.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::bridge::events::lock;
use crate::bridge::frame;

/// Where a durable outbox keeps its messages (the journal, when
/// `outbox_dir` is set). Errors are texts that name the path and cause.
pub(crate) trait Store: Send + Sync {
    /// Keeps one message; once this returns Ok it survives a kill of the process.
    fn append(&self, network: &str, seq: u64, target: &str, frame: &[u8]) -> Result<(), String>;
    /// Forgets every message of `network` up to `through`.
    fn acknowledge(&self, network: &str, through: u64) -> Result<(), String>;
}

/// Limits of one outbox; see `DeliveryConfig`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
    pub(crate) ack_window: usize,
}

struct Entry {
    seq: u64,
    target: Arc<str>,
    frame: Vec<u8>,
    /// The length of the message's DATA frame, from which its credit cost
    /// is computed (`frame::message_len`).
    len: usize,
    acked: bool,
}

struct State {
    next_seq: u64,
    /// Unacknowledged messages in seq order; an entry acknowledged out of
    /// order stays (marked) until those before it go.
    entries: VecDeque<Entry>,
    unacked: usize,
    bytes: usize,
    /// The session whose writer takes frames (0: none).
    session: u64,
    /// Entries from the front already handed to that session's writer.
    sent: usize,
    /// Of those, how many are not acknowledged yet.
    in_flight: usize,
}

/// Why a message could not be put in the outbox.
#[derive(Debug)]
pub(crate) enum PushError {
    /// Still full at the deadline.
    Full,
    /// The durable journal refused it (the text names the path and cause).
    Journal(String),
}

pub(crate) struct Outbox {
    network: String,
    limits: Limits,
    journal: Option<Arc<dyn Store>>,
    state: Mutex<State>,
    /// Senders waiting for room; waiters for an empty outbox.
    changed: Condvar,
}

impl Outbox {
    /// An empty outbox whose next message gets `next_seq`.
    pub(crate) fn new(
        network: &str,
        limits: Limits,
        next_seq: u64,
        journal: Option<Arc<dyn Store>>,
    ) -> Outbox {
        Outbox {
            network: network.to_string(),
            limits,
            journal,
            state: Mutex::new(State {
                next_seq: next_seq.max(1),
                entries: VecDeque::new(),
                unacked: 0,
                bytes: 0,
                session: 0,
                sent: 0,
                in_flight: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// Puts back a message recovered from the durable outbox (at start, in
    /// seq order): `frame` is its SEQUENCED frame as stored.
    pub(crate) fn restore(&self, seq: u64, target: &str, frame: Vec<u8>) {
        let mut state = lock(&self.state);
        state.bytes += frame.len();
        state.unacked += 1;
        state.next_seq = state.next_seq.max(seq + 1);
        state.entries.push_back(Entry {
            seq,
            target: Arc::from(target),
            len: frame::message_len(frame.len(), Some(seq)),
            frame,
            acked: false,
        });
    }

    /// Appends the message whose DATA frame is `data_frame`, waiting until
    /// `deadline` (`None`: not at all) for room. Returns its seq.
    pub(crate) fn push(
        &self,
        target: &str,
        data_frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<u64, PushError> {
        let mut state = lock(&self.state);
        loop {
            // What the outbox will keep: the SEQUENCED frame, not the DATA one.
            let kept = frame::sequenced_len(state.next_seq, data_frame.len());
            let fits = state.unacked < self.limits.messages
                && (state.unacked == 0 || state.bytes + kept <= self.limits.bytes);
            if fits {
                break;
            }
            let Some(left) = deadline.and_then(|d| d.checked_duration_since(Instant::now())) else {
                return Err(PushError::Full);
            };
            if left.is_zero() {
                return Err(PushError::Full);
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        let seq = state.next_seq;
        let frame = frame::encode_sequenced(seq, data_frame);
        // Under the lock, so the journal holds messages in seq order.
        if let Some(journal) = &self.journal {
            journal
                .append(&self.network, seq, target, &frame)
                .map_err(PushError::Journal)?;
        }
        state.next_seq += 1;
        state.unacked += 1;
        state.bytes += frame.len();
        state.entries.push_back(Entry {
            seq,
            target: Arc::from(target),
            frame,
            len: data_frame.len(),
            acked: false,
        });
        Ok(seq)
    }

    /// Makes `session` the one whose writer takes frames, from the oldest
    /// unacknowledged message (a replay). Returns what the unacknowledged
    /// messages of each target cost, `cost` giving a message's cost from the
    /// length of its DATA frame: credits the new session starts with used.
    pub(crate) fn attach(&self, session: u64, cost: impl Fn(usize) -> u32) -> HashMap<Arc<str>, u32> {
        let mut state = lock(&self.state);
        state.session = session;
        state.sent = 0;
        state.in_flight = 0;
        let mut used: HashMap<Arc<str>, u32> = HashMap::new();
        for entry in state.entries.iter().filter(|e| !e.acked) {
            let spent = used.entry(entry.target.clone()).or_default();
            *spent = spent.saturating_add(cost(entry.len));
        }
        used
    }

    /// The session ended: no writer takes frames until the next attaches.
    pub(crate) fn detach(&self, session: u64) {
        let mut state = lock(&self.state);
        if state.session == session {
            state.session = 0;
        }
    }

    /// The next frame for `session`'s writer, if it is the attached one and
    /// the acknowledgement window has room.
    pub(crate) fn next_frame(&self, session: u64) -> Option<Vec<u8>> {
        let mut state = lock(&self.state);
        if state.session != session || state.in_flight >= self.limits.ack_window {
            return None;
        }
        let state = &mut *state;
        while let Some(entry) = state.entries.get(state.sent) {
            state.sent += 1;
            if !entry.acked {
                state.in_flight += 1;
                return Some(entry.frame.clone());
            }
        }
        None
    }

    /// The receiver consumed every message up to `through` except those in
    /// `except` (ascending). Returns how many were newly acknowledged.
    pub(crate) fn acknowledge(&self, through: u64, except: &[u64]) -> usize {
        let mut state = lock(&self.state);
        let state = &mut *state;
        let mut newly = 0;
        for (index, entry) in state.entries.iter_mut().enumerate() {
            if entry.seq > through {
                break;
            }
            if entry.acked || except.binary_search(&entry.seq).is_ok() {
                continue;
            }
            entry.acked = true;
            newly += 1;
            state.unacked -= 1;
            state.bytes -= entry.frame.len();
            if index < state.sent {
                state.in_flight -= 1;
            }
        }
        while state.entries.front().is_some_and(|e| e.acked) {
            state.entries.pop_front();
            state.sent = state.sent.saturating_sub(1);
        }
        if newly > 0 {
            // Cumulative, so only the unbroken prefix can be forgotten for good.
            let forgotten = state.entries.front().map_or(state.next_seq - 1, |e| e.seq - 1);
            if let Some(journal) = &self.journal
                && let Err(err) = journal.acknowledge(&self.network, forgotten)
            {
                log::warn!(
                    "Outbox journal for network {}: {err} (the messages will be replayed and dropped as duplicates)",
                    self.network
                );
            }
            self.changed.notify_all();
        }
        newly
    }

    /// Messages accepted and not yet acknowledged.
    pub(crate) fn unacknowledged(&self) -> usize {
        lock(&self.state).unacked
    }

    /// Waits until every message is acknowledged or `deadline` passes;
    /// returns how many are still unacknowledged.
    pub(crate) fn wait_empty(&self, deadline: Instant) -> usize {
        let mut state = lock(&self.state);
        while state.unacked > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        state.unacked
    }

    /// Wakes every waiter (shutdown).
    pub(crate) fn wake_all(&self) {
        let _guard = lock(&self.state);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(messages: usize, ack_window: usize) -> Outbox {
        let limits = Limits {
            messages,
            bytes: 1 << 20,
            ack_window,
        };
        Outbox::new("alpha", limits, 1, None)
    }

    fn seq_of(frame: &[u8]) -> u64 {
        match frame::decode(frame) {
            Ok(frame::Frame::Sequenced { seq, .. }) => seq,
            other => panic!("not a sequenced frame: {other:?}"),
        }
    }

    fn data() -> Vec<u8> {
        let message = crate::bridge::RemoteMessage::new("beta", "a", "alpha", "r", "in", 1.into());
        frame::encode_data(&message).unwrap()
    }

    #[test]
    fn frames_go_in_order_within_the_window_and_replay_after_a_new_session() {
        let outbox = outbox(100, 2);
        for _ in 0..4 {
            outbox.push("r", &data(), None).unwrap();
        }
        outbox.attach(7, |_| 1);
        assert_eq!(outbox.next_frame(7).map(|f| seq_of(&f)), Some(1));
        assert_eq!(outbox.next_frame(7).map(|f| seq_of(&f)), Some(2));
        assert!(outbox.next_frame(7).is_none(), "the window is full");
        assert_eq!(outbox.acknowledge(1, &[]), 1);
        assert_eq!(outbox.next_frame(7).map(|f| seq_of(&f)), Some(3));
        // The connection ends; the next session replays from seq 2.
        outbox.detach(7);
        assert!(outbox.next_frame(7).is_none());
        let used = outbox.attach(8, |_| 1);
        assert_eq!(used.get("r"), Some(&3));
        assert_eq!(outbox.next_frame(8).map(|f| seq_of(&f)), Some(2));
        assert_eq!(outbox.next_frame(8).map(|f| seq_of(&f)), Some(3));
    }

    #[test]
    fn selective_acknowledgements_skip_replays_and_free_room() {
        let outbox = outbox(3, 10);
        for _ in 0..3 {
            outbox.push("r", &data(), None).unwrap();
        }
        assert!(matches!(outbox.push("r", &data(), None), Err(PushError::Full)));
        outbox.attach(1, |_| 1);
        while outbox.next_frame(1).is_some() {}
        // 1 and 3 consumed; 2 still waits in an inbox.
        assert_eq!(outbox.acknowledge(3, &[2]), 2);
        assert_eq!(outbox.unacknowledged(), 1);
        assert_eq!(outbox.push("r", &data(), None).unwrap(), 4);
        outbox.attach(2, |_| 1);
        assert_eq!(outbox.next_frame(2).map(|f| seq_of(&f)), Some(2));
        assert_eq!(outbox.next_frame(2).map(|f| seq_of(&f)), Some(4));
        assert_eq!(outbox.acknowledge(4, &[]), 2);
        assert_eq!(outbox.wait_empty(Instant::now()), 0);
    }

    #[test]
    fn a_full_outbox_waits_for_room_until_the_deadline() {
        let outbox = Arc::new(outbox(1, 10));
        outbox.push("r", &data(), None).unwrap();
        let started = Instant::now();
        let deadline = Some(started + std::time::Duration::from_millis(50));
        assert!(matches!(
            outbox.push("r", &data(), deadline),
            Err(PushError::Full)
        ));
        assert!(started.elapsed() >= std::time::Duration::from_millis(50));
        let acker = {
            let outbox = Arc::clone(&outbox);
            std::thread::spawn(move || {
                outbox.attach(1, |_| 1);
                outbox.next_frame(1);
                outbox.acknowledge(1, &[]);
            })
        };
        let deadline = Some(Instant::now() + std::time::Duration::from_secs(10));
        assert_eq!(outbox.push("r", &data(), deadline).unwrap(), 2);
        acker.join().unwrap();
    }

    #[test]
    fn the_byte_bound_counts_the_frames_kept() {
        // Room for two kept frames and one byte short of a third: the third
        // must wait, though its DATA frame alone would fit.
        let kept = frame::encode_sequenced(3, &data()).len();
        let limits = Limits {
            messages: 100,
            bytes: 3 * kept - 1,
            ack_window: 10,
        };
        let outbox = Outbox::new("alpha", limits, 1, None);
        outbox.push("r", &data(), None).unwrap();
        outbox.push("r", &data(), None).unwrap();
        assert!(matches!(outbox.push("r", &data(), None), Err(PushError::Full)));
        let held: usize = lock(&outbox.state).entries.iter().map(|e| e.frame.len()).sum();
        assert!(held <= limits.bytes, "{held} bytes kept, bound {}", limits.bytes);
        // Acknowledged, the first frees its room for the third.
        outbox.attach(1, |_| 1);
        outbox.next_frame(1);
        outbox.acknowledge(1, &[]);
        assert_eq!(outbox.push("r", &data(), None).unwrap(), 3);
    }

    #[test]
    fn a_replay_preloads_each_messages_cost_from_its_data_frame() {
        let outbox = outbox(100, 100);
        let small = data();
        let big = {
            let payload = crate::Message::string("y".repeat(5000));
            let message = crate::bridge::RemoteMessage::new("beta", "a", "alpha", "big", "in", payload);
            frame::encode_data(&message).unwrap()
        };
        outbox.push("r", &small, None).unwrap();
        outbox.push("big", &big, None).unwrap();
        let unit = Some(1024);
        let used = outbox.attach(1, |len| crate::bridge::delivery::cost(len, unit));
        assert_eq!(used.get("r"), Some(&1));
        assert_eq!(used.get("big"), Some(&(1 + big.len() as u32 / 1024)));
        // A message restored from the journal costs what it cost when sent.
        let restored = Outbox::new(
            "alpha",
            Limits {
                messages: 10,
                bytes: 1 << 20,
                ack_window: 10,
            },
            1,
            None,
        );
        restored.restore(300, "big", frame::encode_sequenced(300, &big));
        let used = restored.attach(1, |len| crate::bridge::delivery::cost(len, unit));
        assert_eq!(used.get("big"), Some(&(1 + big.len() as u32 / 1024)));
    }
}
