//! Built-in actor templates, looked up by id: `recorder` and `passthrough`.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::actor::{Actor, ActorContext, ActorError};
use super::node::lock;
use crate::message::Message;

/// Makes an actor for a node from the node's metadata.
pub(crate) type ActorFactory = dyn Fn(&Value) -> Box<dyn Actor> + Send + Sync;

/// The templates every network starts with.
pub(crate) fn builtin_templates() -> Vec<(&'static str, Arc<ActorFactory>)> {
    vec![
        (
            "recorder",
            Arc::new(|meta: &Value| Box::new(Recorder::from_metadata(meta)) as Box<dyn Actor>),
        ),
        (
            "passthrough",
            Arc::new(|_: &Value| Box::new(Passthrough) as Box<dyn Actor>),
        ),
    ]
}

/// One message a recorder received.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The inport it arrived on.
    pub port: String,
    /// What arrived.
    pub message: Message,
}

/// The bounded history of a recorder, shared with the application
/// (`network.node_handle::<RecorderLog>("recorder")`).
pub struct RecorderLog {
    records: Mutex<VecDeque<Record>>,
    arrived: Condvar,
    capacity: usize,
}

impl RecorderLog {
    fn new(capacity: usize) -> Self {
        RecorderLog {
            records: Mutex::new(VecDeque::new()),
            arrived: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn push(&self, record: Record) {
        let mut records = lock(&self.records);
        if records.len() == self.capacity {
            records.pop_front();
        }
        records.push_back(record);
        drop(records);
        self.arrived.notify_all();
    }

    /// The records kept (the newest `capacity`), oldest first.
    pub fn records(&self) -> Vec<Record> {
        lock(&self.records).iter().cloned().collect()
    }

    /// How many records are kept (at most the history capacity).
    pub fn len(&self) -> usize {
        lock(&self.records).len()
    }

    /// True before the first message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until `done(records)` holds or `timeout` passes; returns whether it held.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&VecDeque<Record>) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut records = lock(&self.records);
        loop {
            if done(&records) {
                return true;
            }
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return false;
            };
            records = self
                .arrived
                .wait_timeout(records, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

/// Logs every inbound message at info as `<node>.<port>: <message>` and keeps
/// the newest ones (metadata `history_capacity`, default 1000). Accepts any port.
pub struct Recorder {
    log: Arc<RecorderLog>,
}

impl Recorder {
    /// Records kept when the metadata sets no `history_capacity`: 1000.
    pub const DEFAULT_HISTORY: usize = 1000;

    /// A recorder that keeps the newest `history_capacity` records (at least 1).
    pub fn new(history_capacity: usize) -> Self {
        Recorder {
            log: Arc::new(RecorderLog::new(history_capacity)),
        }
    }

    fn from_metadata(metadata: &Value) -> Self {
        let capacity = metadata
            .get("history_capacity")
            .and_then(Value::as_u64)
            .map_or(Self::DEFAULT_HISTORY, |c| c as usize);
        Recorder::new(capacity)
    }

    /// Its history, to read from the application while it runs.
    pub fn log(&self) -> Arc<RecorderLog> {
        self.log.clone()
    }
}

impl Actor for Recorder {
    fn inports(&self) -> Vec<String> {
        vec!["in".to_string()]
    }

    fn outports(&self) -> Vec<String> {
        Vec::new()
    }

    fn accepts_any_inport(&self) -> bool {
        true
    }

    fn handle(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(self.log.clone())
    }

    fn run(&mut self, ctx: &mut ActorContext<'_>) -> Result<(), ActorError> {
        for (port, message) in ctx.inputs() {
            log::info!("{}.{port}: {message:?}", ctx.node());
            self.log.push(Record {
                port: port.to_string(),
                message: message.clone(),
            });
        }
        Ok(())
    }
}

/// Forwards `in` to `out` unchanged.
pub struct Passthrough;

impl Actor for Passthrough {
    fn inports(&self) -> Vec<String> {
        vec!["in".to_string()]
    }

    fn outports(&self) -> Vec<String> {
        vec!["out".to_string()]
    }

    fn run(&mut self, ctx: &mut ActorContext<'_>) -> Result<(), ActorError> {
        match ctx.take_input("in") {
            Some(message) => ctx.emit("out", message),
            None => Ok(()),
        }
    }
}
