//! The owner of the bridge's short- and long-lived threads (handshakes,
//! connection readers). Each thread reports its id on a channel as it ends;
//! `reap` joins the ones that reported, `wait_all` waits for them with a
//! deadline, and `join_all` joins whatever is left at shutdown.
//!
//! A shutdown may run on one of these threads: a reader runs short actor
//! turns itself, and an actor may stop its network. Neither wait counts the
//! calling thread, which ends once the call returns to it.
//!
//! A handle is inserted under the same lock that is held while spawning, so a
//! thread that ends at once cannot report before its handle is in the map.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::events::lock;

/// Stack of every bridge thread, set explicitly so `RUST_MIN_STACK` does
/// not change it: a reader runs short actor turns (docs/runtime.md), and
/// the runtime does so only when this is at least its `thread_stack_bytes`
/// (512 KiB by default). 2 MiB: Rust's own default for a spawned thread.
pub(crate) const STACK_BYTES: usize = 2 * 1024 * 1024;

pub(crate) struct ThreadSet {
    handles: Mutex<Handles>,
    done_tx: Sender<u64>,
    done_rx: Receiver<u64>,
}

#[derive(Default)]
struct Handles {
    next_id: u64,
    running: HashMap<u64, JoinHandle<()>>,
}

/// Reports the end of a thread, even one that panicked.
struct DoneGuard(Sender<u64>, u64);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

impl ThreadSet {
    pub(crate) fn new() -> Self {
        // Holds at most one id per thread that ended since the last `reap`,
        // which the heartbeat thread runs every interval.
        let (done_tx, done_rx) = unbounded();
        ThreadSet {
            handles: Mutex::new(Handles::default()),
            done_tx,
            done_rx,
        }
    }

    /// Starts a named thread owned by this set.
    pub(crate) fn spawn(&self, name: String, body: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let mut handles = lock(&self.handles);
        let id = handles.next_id;
        handles.next_id += 1;
        let guard = DoneGuard(self.done_tx.clone(), id);
        let handle = thread::Builder::new()
            .name(name)
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let _guard = guard;
                body();
            })?;
        handles.running.insert(id, handle);
        Ok(())
    }

    /// Joins the threads that have reported their end.
    pub(crate) fn reap(&self) {
        while let Ok(id) = self.done_rx.try_recv() {
            self.join_one(id);
        }
    }

    fn join_one(&self, id: u64) {
        let handle = lock(&self.handles).running.remove(&id);
        if let Some(handle) = handle {
            join_quietly(handle);
        }
    }

    /// Waits until every thread has ended or `deadline` passes; true if all ended.
    pub(crate) fn wait_all(&self, deadline: Instant) -> bool {
        self.reap();
        let me = thread::current().id();
        while lock(&self.handles)
            .running
            .values()
            .any(|h| h.thread().id() != me)
        {
            match self.done_rx.recv_deadline(deadline) {
                Ok(id) => self.join_one(id),
                Err(_) => return false,
            }
        }
        true
    }

    /// Names of the threads still running (for a shutdown that has to wait).
    pub(crate) fn running(&self) -> Vec<String> {
        let handles = lock(&self.handles);
        handles
            .running
            .values()
            .map(|h| h.thread().name().unwrap_or("?").to_string())
            .collect()
    }

    /// Joins every thread, including ones started while joining; the
    /// calling thread's own handle is let go instead (joining itself would fail).
    pub(crate) fn join_all(&self) {
        let me = thread::current().id();
        loop {
            let handles: Vec<JoinHandle<()>> = lock(&self.handles).running.drain().map(|(_, h)| h).collect();
            if handles.is_empty() {
                break;
            }
            handles
                .into_iter()
                .filter(|h| h.thread().id() != me)
                .for_each(join_quietly);
        }
        self.done_rx.try_iter().for_each(drop);
    }
}

pub(crate) fn join_quietly(handle: JoinHandle<()>) {
    let name = handle.thread().name().unwrap_or("bridge thread").to_string();
    if handle.join().is_err() {
        log::error!("Thread {name} panicked (a bug in the bridge)");
    }
}
