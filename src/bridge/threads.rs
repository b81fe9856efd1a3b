//! The owner of the bridge's short- and long-lived threads (handshakes,
//! connection readers). Finished threads are joined by `reap`, the rest by
//! `join_all` at shutdown. Each thread reports its end on a channel, so a
//! shutdown can wait for them with a deadline instead of polling.

use std::io;
use std::sync::Mutex;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::events::lock;

pub(crate) struct ThreadSet {
    handles: Mutex<Vec<JoinHandle<()>>>,
    done_tx: Sender<()>,
    done_rx: Receiver<()>,
}

/// Reports the end of a thread, even one that panicked.
struct DoneGuard(Sender<()>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl ThreadSet {
    pub(crate) fn new() -> Self {
        let (done_tx, done_rx) = unbounded();
        ThreadSet {
            handles: Mutex::new(Vec::new()),
            done_tx,
            done_rx,
        }
    }

    /// Starts a named thread owned by this set.
    pub(crate) fn spawn(&self, name: String, body: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let guard = DoneGuard(self.done_tx.clone());
        let handle = thread::Builder::new().name(name).spawn(move || {
            let _guard = guard;
            body();
        })?;
        lock(&self.handles).push(handle);
        Ok(())
    }

    /// Joins the threads that have finished.
    pub(crate) fn reap(&self) {
        self.done_rx.try_iter().for_each(drop);
        let finished: Vec<JoinHandle<()>> = {
            let mut handles = lock(&self.handles);
            let (done, running) = handles.drain(..).partition(|h| h.is_finished());
            *handles = running;
            done
        };
        finished.into_iter().for_each(join_quietly);
    }

    /// Waits until every thread has finished or `deadline` passes; true if all finished.
    pub(crate) fn wait_all(&self, deadline: Instant) -> bool {
        loop {
            self.reap();
            if lock(&self.handles).is_empty() {
                return true;
            }
            if self.done_rx.recv_deadline(deadline).is_err() {
                return false;
            }
        }
    }

    /// Joins every thread, including ones started while joining.
    pub(crate) fn join_all(&self) {
        loop {
            let handles: Vec<JoinHandle<()>> = lock(&self.handles).drain(..).collect();
            if handles.is_empty() {
                return;
            }
            handles.into_iter().for_each(join_quietly);
        }
    }
}

pub(crate) fn join_quietly(handle: JoinHandle<()>) {
    let name = handle.thread().name().unwrap_or("bridge thread").to_string();
    if handle.join().is_err() {
        log::error!("Thread {name} panicked (a bug in the bridge)");
    }
}
