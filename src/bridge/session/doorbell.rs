//! How a session's writer sleeps and is woken: an eventcount of two flags.
//! Whoever gives the writer work (a frame on the data lane, a gathering's
//! first entry, a control frame, an abort) rings after making it visible;
//! the writer, with nothing left to do, parks until a ring or its tick.
//!
//! Both sides use sequentially consistent order: the writer marks itself
//! parked and then looks at the flags, a ringer sets its flag and then
//! looks at `parked`, so at least one of them sees the other, and a ring is
//! never lost. A ring while the writer is busy costs a store and a load, no
//! system call: a writer woken through a channel took a lock and a system
//! call per wake on both sides.
//!
//! After a write the writer may linger, waiting a few microseconds for more
//! of a stream to gather (`BridgeConfig::write_linger`). A stream's next
//! message does not end that wait ([`Doorbell::ring_for_stream`]); anything
//! else does ([`Doorbell::ring`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, Thread};
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Doorbell {
    /// Rung by [`Doorbell::ring`]: ends a wait and a linger.
    rung: AtomicBool,
    /// Rung by [`Doorbell::ring_for_stream`]: ends a wait only.
    stream_rung: AtomicBool,
    parked: AtomicBool,
    lingering: AtomicBool,
    /// The writer's thread, set by the writer itself before it first waits.
    writer: OnceLock<Thread>,
}

impl Doorbell {
    /// Called on the writer's thread before its first wait.
    pub(crate) fn attach(&self) {
        let _ = self.writer.set(thread::current());
    }

    /// Work is waiting for the writer (made visible before this call).
    pub(crate) fn ring(&self) {
        self.rung.store(true, Ordering::SeqCst);
        self.unpark_if_parked();
    }

    /// A stream's next message is waiting (made visible before this call):
    /// it wakes a waiting writer, and leaves a lingering one to take it at
    /// the end of its linger.
    pub(crate) fn ring_for_stream(&self) {
        if self.lingering.load(Ordering::SeqCst) {
            return;
        }
        self.stream_rung.store(true, Ordering::SeqCst);
        self.unpark_if_parked();
    }

    fn unpark_if_parked(&self) {
        if self.parked.load(Ordering::SeqCst)
            && let Some(writer) = self.writer.get()
        {
            writer.unpark();
        }
    }

    /// The writer waits up to `timeout` for any ring; at once if one came
    /// since the last wait. The writer looks at all its work after this, so
    /// the rings are consumed here. Wake-ups may be spurious.
    pub(crate) fn wait(&self, timeout: Duration) {
        self.parked.store(true, Ordering::SeqCst);
        if !self.rung.load(Ordering::SeqCst) && !self.stream_rung.load(Ordering::SeqCst) {
            thread::park_timeout(timeout);
        }
        self.settle();
    }

    /// The writer waits `timeout` for more of a stream to gather, ended
    /// early only by [`Doorbell::ring`]. A sender that did not ring because
    /// of the linger had pushed its message before it looked, so the
    /// writer, which looks at its work after this, finds it.
    pub(crate) fn linger(&self, timeout: Duration) {
        self.lingering.store(true, Ordering::SeqCst);
        self.parked.store(true, Ordering::SeqCst);
        if !self.rung.load(Ordering::SeqCst) {
            thread::park_timeout(timeout);
        }
        self.lingering.store(false, Ordering::SeqCst);
        self.settle();
    }

    fn settle(&self) {
        self.parked.store(false, Ordering::SeqCst);
        self.rung.store(false, Ordering::SeqCst);
        self.stream_rung.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_ring_before_the_wait_is_not_lost() {
        let bell = Doorbell::default();
        bell.attach();
        bell.ring();
        let started = Instant::now();
        bell.wait(Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    /// A writer thread that attaches to `bell`, says it is ready, then
    /// waits as `wait` does; it returns how long the wait took.
    fn writer(bell: &Arc<Doorbell>, wait: fn(&Doorbell)) -> thread::JoinHandle<Duration> {
        let (ready_tx, ready) = crossbeam_channel::bounded(0);
        let bell = Arc::clone(bell);
        let writer = thread::spawn(move || {
            bell.attach();
            ready_tx.send(()).unwrap();
            let started = Instant::now();
            wait(&bell);
            started.elapsed()
        });
        ready.recv().unwrap();
        writer
    }

    #[test]
    fn a_ring_wakes_a_parked_writer() {
        let bell = Arc::new(Doorbell::default());
        let writer = writer(&bell, |bell| bell.wait(Duration::from_secs(30)));
        // Ring whether or not it is parked yet: either way it wakes.
        bell.ring();
        assert!(writer.join().unwrap() < Duration::from_secs(10));
    }

    #[test]
    fn a_stream_ring_wakes_a_wait_but_not_a_linger() {
        let bell = Doorbell::default();
        bell.attach();
        bell.ring_for_stream();
        let started = Instant::now();
        bell.wait(Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(10));
        // Rung before the linger (during a write): the linger still runs its course.
        bell.ring_for_stream();
        let started = Instant::now();
        bell.linger(Duration::from_millis(20));
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn a_ring_ends_a_linger() {
        let bell = Arc::new(Doorbell::default());
        let writer = writer(&bell, |bell| bell.linger(Duration::from_secs(30)));
        // A stream's message leaves it lingering; a ring ends the linger,
        // whether it came before the writer parked or after.
        bell.ring_for_stream();
        bell.ring();
        assert!(writer.join().unwrap() < Duration::from_secs(10));
    }

    #[test]
    fn without_a_ring_the_wait_ends_at_its_timeout() {
        let bell = Doorbell::default();
        bell.attach();
        let started = Instant::now();
        bell.wait(Duration::from_millis(20));
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
