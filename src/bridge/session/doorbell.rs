//! How a session's writer sleeps and is woken: an eventcount of one flag.
//! Whoever gives the writer work (a frame on the data lane, a gathering's
//! first entry, a control frame, an abort) rings after making it visible;
//! the writer, with nothing left to do, parks until a ring or its tick.
//!
//! Both sides use sequentially consistent order: the writer marks itself
//! parked and then looks at `rung`, a ringer sets `rung` and then looks at
//! `parked`, so at least one of them sees the other, and a ring is never
//! lost. A ring while the writer is busy costs a store and a load, no
//! system call: a writer woken through a channel took a lock and a system
//! call per wake on both sides.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, Thread};
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Doorbell {
    rung: AtomicBool,
    parked: AtomicBool,
    /// The writer's thread, set by the writer itself before it first waits.
    writer: OnceLock<Thread>,
}

impl Doorbell {
    /// Called on the writer's thread before its first [`Doorbell::wait`].
    pub(crate) fn attach(&self) {
        let _ = self.writer.set(thread::current());
    }

    /// Work is waiting for the writer (made visible before this call).
    pub(crate) fn ring(&self) {
        self.rung.store(true, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst)
            && let Some(writer) = self.writer.get()
        {
            writer.unpark();
        }
    }

    /// The writer waits up to `timeout` for a ring; at once if one came
    /// since the last wait. The writer looks at all its work after this,
    /// so the ring is consumed here. Wake-ups may be spurious.
    pub(crate) fn wait(&self, timeout: Duration) {
        self.parked.store(true, Ordering::SeqCst);
        if !self.rung.load(Ordering::SeqCst) {
            thread::park_timeout(timeout);
        }
        self.parked.store(false, Ordering::SeqCst);
        self.rung.store(false, Ordering::SeqCst);
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

    #[test]
    fn a_ring_wakes_a_parked_writer() {
        let bell = Arc::new(Doorbell::default());
        let (ready_tx, ready) = crossbeam_channel::bounded(0);
        let writer = {
            let bell = Arc::clone(&bell);
            thread::spawn(move || {
                bell.attach();
                ready_tx.send(()).unwrap();
                let started = Instant::now();
                bell.wait(Duration::from_secs(30));
                started.elapsed()
            })
        };
        ready.recv().unwrap();
        // Ring whether or not it is parked yet: either way it wakes.
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
