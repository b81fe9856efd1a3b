//! The durable outbox: with `outbox_dir` set, every outbox keeps its
//! messages in the journal too, and a bridge that starts again takes back
//! its incarnation and every unacknowledged message from it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::outbox::Store;
use crate::bridge::journal::{Journal, Options, Stored, Sync};

impl Store for Journal {
    fn append(&self, network: &str, seq: u64, target: &str, frame: &[u8]) -> Result<(), String> {
        Journal::append(self, network, seq, target, frame).map_err(|err| err.to_string())
    }

    fn acknowledge(&self, network: &str, through: u64) -> Result<(), String> {
        Journal::acknowledge(self, network, through).map_err(|err| err.to_string())
    }
}

/// What a durable outbox held when the bridge started.
pub(crate) struct Reopened {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) incarnation: u64,
    /// Per network that ever had a message: the next seq to assign.
    pub(crate) next_seq: HashMap<String, u64>,
    /// Unacknowledged messages (SEQUENCED frames), by network, in seq order.
    pub(crate) entries: Vec<Stored>,
}

/// Opens the journal in `dir`; `fsync`: flush every append to the disk.
///
/// # Errors
/// The journal's own text: the directory cannot be made, another process
/// holds it, or its log is damaged beyond a torn tail.
pub(crate) fn reopen(dir: &Path, fsync: bool) -> Result<Reopened, String> {
    let options = Options {
        sync: if fsync { Sync::Always } else { Sync::OnKillOnly },
        ..Options::default()
    };
    let (journal, recovered) = Journal::open_with(dir, options).map_err(|err| err.to_string())?;
    Ok(Reopened {
        store: Arc::new(journal),
        incarnation: recovered.incarnation,
        next_seq: recovered.next_seq,
        entries: recovered.entries,
    })
}
