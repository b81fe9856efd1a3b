//! The durable outbox's storage: the unacknowledged messages of one sending
//! process, kept in a directory so that they outlive a restart or a `kill -9`
//! (and, with [`Sync::Always`], a power loss).
//!
//! The directory holds two files:
//!
//! - `outbox.lock`: held with an exclusive advisory lock while a [`Journal`]
//!   is open (it holds the owner's pid, for the error a second opener gets).
//!   The operating system drops the lock when the process dies, however it
//!   dies.
//! - `outbox.journal`: an append-only log of records. Each record is framed
//!   as its body's length (u32, little-endian), a CRC-32 of that length and
//!   the body (u32, little-endian), then the body: one MessagePack value
//!   (rmp-serde, fields in order). The first record is a header with the
//!   format and the incarnation; then messages, acknowledgements, and the
//!   per-network counters a compaction writes.
//!
//! A `write` that has returned is in the kernel's page cache, which survives
//! the death of the process, so the default mode ([`Sync::OnKillOnly`]) costs
//! one system call per message; [`Sync::Always`] adds an `fdatasync`. The
//! journal keeps only the position of each live record in memory; the
//! messages themselves are read back once, at open.
//!
//! - `record.rs`: the records and their framing;
//! - `replay.rs`: reading a log at open; the first record that is incomplete
//!   or fails its checksum ends it, and it and whatever follows are cut off
//!   (a warn line says where and why), since only the tail can be torn by a
//!   crash;
//! - `compact.rs`: once at least half of a log of
//!   [`Options::compact_min_bytes`] or more is acknowledged messages, the
//!   live records are copied into a new file, flushed and renamed over the
//!   old one;
//! - `error.rs`: [`JournalError`].
//!
//! `docs/delivery-journal.md` gives the guarantees, the figures and the
//! reasons for an append-only file.

mod compact;
mod error;
mod record;
mod replay;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub(crate) use error::JournalError;
use error::io_error;
use record::{FORMAT, Record, encode};
use replay::{Replay, Torn};

/// The log's file name inside the outbox directory.
pub(crate) const LOG_FILE: &str = "outbox.journal";
/// The lock file's name inside the outbox directory.
pub(crate) const LOCK_FILE: &str = "outbox.lock";
/// Where a compaction writes the new log before renaming it over the old.
const COMPACT_FILE: &str = "outbox.journal.compact";
/// Default of [`Options::compact_min_bytes`]: 1 MiB.
pub(crate) const DEFAULT_COMPACT_MIN_BYTES: u64 = 1 << 20;

/// When an appended message reaches the disk itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Sync {
    /// `fdatasync` after every append: an accepted message survives a power
    /// loss too. Costs one disk flush per message (measured in
    /// `docs/delivery-journal.md`).
    Always,
    /// The default: an accepted message is in the kernel's page cache, which
    /// survives a crash or `kill -9` of the process but not of the machine
    /// (the kernel writes it back within its dirty-page interval, about 30 s
    /// on Linux by default).
    #[default]
    OnKillOnly,
}

/// How a journal is opened; [`Default`] gives the documented defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// When appends reach the disk. Default [`Sync::OnKillOnly`].
    pub(crate) sync: Sync,
    /// The log's length in bytes from which a compaction is considered (it
    /// runs once at least half the log is acknowledged messages). Default
    /// [`DEFAULT_COMPACT_MIN_BYTES`] (1 MiB). The log thus stays under about
    /// the larger of this and twice the unacknowledged messages' size.
    pub(crate) compact_min_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: Sync::default(),
            compact_min_bytes: DEFAULT_COMPACT_MIN_BYTES,
        }
    }
}

/// One stored, unacknowledged message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    /// The remote network id it is for.
    pub(crate) network: String,
    /// Its sequence number (unique and increasing per network).
    pub(crate) seq: u64,
    /// The actor it is for, in that network.
    pub(crate) target_actor: String,
    /// The encoded message, opaque to the journal.
    pub(crate) bytes: Vec<u8>,
}

/// What a journal held when it was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// The sender's sequence space: drawn at random (never 0) when the
    /// journal is created, then the same on every open.
    pub(crate) incarnation: u64,
    /// Per network the journal has seen: the next seq to assign. A network
    /// that is absent starts at 1.
    pub(crate) next_seq: HashMap<String, u64>,
    /// The unacknowledged messages, sorted by (network, seq).
    pub(crate) entries: Vec<Stored>,
}

/// The unacknowledged messages of one sending process, on disk. `Send +
/// Sync`: appends for different networks may come from different threads.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    path: PathBuf,
    options: Options,
    incarnation: u64,
    // Read by the tests (and the benchmark) only so far.
    #[cfg_attr(not(test), allow(dead_code))]
    torn_bytes: u64,
    state: Mutex<State>,
    /// Held (and so locked) for as long as the journal is open.
    _lock: File,
}

/// What appends, acknowledgements and compactions share.
#[derive(Debug)]
struct State {
    /// The log, opened for reading and appending; an `Arc` so that a sync
    /// can run outside the mutex.
    file: Arc<File>,
    /// The log's length in bytes.
    len: u64,
    networks: HashMap<String, Network>,
    /// Bytes of the live message records, framing included.
    live_bytes: u64,
    /// After a failed compaction: the length from which to try again.
    retry_compaction_at: u64,
    /// Why writes are refused, after a failure that left the log uncertain.
    broken: Option<String>,
}

#[derive(Debug, Default)]
struct Network {
    next_seq: u64,
    acknowledged: u64,
    /// Live message records by seq.
    live: BTreeMap<u64, Span>,
}

/// Where a whole record (framing included) sits in the log.
#[derive(Clone, Copy, Debug)]
struct Span {
    offset: u64,
    len: u64,
}

impl Journal {
    /// Opens the journal in `dir` with the default [`Options`]; see
    /// [`Journal::open_with`].
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn open(dir: &Path) -> Result<(Journal, Recovered), JournalError> {
        Journal::open_with(dir, Options::default())
    }

    /// Opens (creating the directory and files if needed) the journal in
    /// `dir` and returns what it holds. One process at a time: a second open
    /// of the same directory while the first is alive fails with
    /// [`JournalError::Locked`]. A torn tail is cut off and logged at warn.
    pub(crate) fn open_with(dir: &Path, options: Options) -> Result<(Journal, Recovered), JournalError> {
        fs::create_dir_all(dir).map_err(io_error("create the outbox directory", dir))?;
        let lock = lock(dir)?;
        let compact = dir.join(COMPACT_FILE);
        match fs::remove_file(&compact) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("remove the unfinished compaction", &compact)(err));
            }
            _ => {}
        }
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_error("open the outbox journal", &path))?;
        let replay = Replay::read(&file, &path)?;
        if let Some(torn) = &replay.torn {
            cut_torn_tail(&file, &path, &replay, torn)?;
        }
        let (incarnation, len) = match replay.incarnation {
            Some(incarnation) => (incarnation, replay.valid_len),
            None => start_log(&file, dir, &path)?,
        };
        let torn_bytes = replay.torn.as_ref().map_or(0, |torn| torn.bytes);
        let (recovered, networks, live_bytes) = replay.into_parts(incarnation);
        log::info!(
            "outbox journal {}: {} unacknowledged messages for {} networks (incarnation {incarnation:016x})",
            path.display(),
            recovered.entries.len(),
            recovered.next_seq.len()
        );
        let journal = Journal {
            dir: dir.to_path_buf(),
            path,
            options,
            incarnation,
            torn_bytes,
            state: Mutex::new(State {
                file: Arc::new(file),
                len,
                networks,
                live_bytes,
                retry_compaction_at: 0,
                broken: None,
            }),
            _lock: lock,
        };
        journal.maybe_compact(&mut journal.state());
        Ok((journal, recovered))
    }

    /// Stores one message; when this returns Ok the message survives a
    /// `kill -9` of the process (and, with [`Sync::Always`], a power loss).
    /// `seq` must be at least the network's next seq (the caller assigns them
    /// in order; else [`JournalError::OutOfOrder`]); the network's next seq
    /// is then `seq + 1`, even once the message is acknowledged. On an error
    /// the message may or may not be recovered at the next open.
    pub(crate) fn append(
        &self,
        network: &str,
        seq: u64,
        target_actor: &str,
        bytes: &[u8],
    ) -> Result<(), JournalError> {
        let record = encode(&Record::Message {
            network: Cow::Borrowed(network),
            seq,
            target_actor: Cow::Borrowed(target_actor),
            bytes: Cow::Borrowed(bytes),
        })?;
        let file = {
            let mut state = self.state();
            state.check_usable(&self.path)?;
            let next_seq = state.networks.get(network).map_or(1, |net| net.next_seq);
            let after = seq.checked_add(1).filter(|_| seq >= next_seq);
            let Some(after) = after else {
                return Err(JournalError::OutOfOrder {
                    network: network.to_string(),
                    seq,
                    next_seq,
                });
            };
            let offset = state.write(&self.path, &record)?;
            let len = record.len() as u64;
            let net = state.networks.entry(network.to_string()).or_default();
            net.next_seq = after;
            net.live.insert(seq, Span { offset, len });
            state.live_bytes += len;
            Arc::clone(&state.file)
        };
        if self.options.sync == Sync::Always {
            // Outside the mutex, so that appends for other networks are not
            // queued behind this flush (the kernel may merge theirs with it).
            if let Err(err) = file.sync_data() {
                // After a failed flush the kernel may have dropped the pages:
                // a later flush could report success for data that is gone.
                self.state().broken = Some(format!("fdatasync failed: {err}"));
                return Err(io_error("flush", &self.path)(err));
            }
        }
        Ok(())
    }

    /// Forgets every message of `network` with seq <= `through` (a
    /// cumulative acknowledgement). Not flushed: a lost acknowledgement only
    /// causes a replay that the receiver drops as a duplicate. May compact
    /// the log. An acknowledgement beyond the last stored seq counts up to
    /// that seq; one for an unknown network is ignored.
    pub(crate) fn acknowledge(&self, network: &str, through: u64) -> Result<(), JournalError> {
        let mut state = self.state();
        state.check_usable(&self.path)?;
        let Some(net) = state.networks.get_mut(network) else {
            return Ok(());
        };
        let through = through.min(net.next_seq.saturating_sub(1));
        if through <= net.acknowledged {
            return Ok(());
        }
        net.acknowledged = through;
        let kept = net.live.split_off(&(through + 1));
        let gone = std::mem::replace(&mut net.live, kept);
        state.live_bytes -= gone.values().map(|span| span.len).sum::<u64>();
        let record = encode(&Record::Acknowledged {
            network: Cow::Borrowed(network),
            through,
        })?;
        state.write(&self.path, &record)?;
        self.maybe_compact(&mut state);
        Ok(())
    }

    /// Bytes the journal occupies on disk: the log's length (the lock file
    /// holds a pid, a few bytes more, not counted).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn disk_bytes(&self) -> u64 {
        self.state().len
    }

    /// Bytes cut off the log's end at open because they were torn or damaged
    /// (0 after a clean stop); for metrics.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn torn_bytes(&self) -> u64 {
        self.torn_bytes
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; if something did, the state is
        // still whole (every change is made after the write it reflects).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn check_usable(&self, path: &Path) -> Result<(), JournalError> {
        match &self.broken {
            Some(reason) => Err(JournalError::Broken {
                path: path.to_path_buf(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Appends one framed record and returns its offset. A partly written
    /// record is cut off again, so that no torn record can sit in front of
    /// later ones; if even that fails, the journal refuses further writes.
    fn write(&mut self, path: &Path, record: &[u8]) -> Result<u64, JournalError> {
        let offset = self.len;
        if let Err(err) = (&*self.file).write_all(record) {
            if let Err(undo) = self.file.set_len(offset) {
                self.broken = Some(format!(
                    "a failed append could not be cut off at offset {offset}: {undo}"
                ));
            }
            return Err(io_error("append to", path)(err));
        }
        self.len += record.len() as u64;
        Ok(offset)
    }
}

/// Cuts a torn or damaged tail off the log, with a warn line that says what
/// and why.
fn cut_torn_tail(file: &File, path: &Path, replay: &Replay, torn: &Torn) -> Result<(), JournalError> {
    log::warn!(
        "outbox journal {}: discarded {} bytes from offset {} ({}); the {} records before it are kept",
        path.display(),
        torn.bytes,
        replay.valid_len,
        torn.reason,
        replay.records
    );
    file.set_len(replay.valid_len)
        .map_err(io_error("cut the torn tail off", path))
}

/// Writes a new log's header with a new incarnation, flushed (with the
/// directory entry) before any message can follow it: the incarnation must
/// never change under a stored message. Returns it and the log's length.
fn start_log(file: &File, dir: &Path, path: &Path) -> Result<(u64, u64), JournalError> {
    let incarnation = new_incarnation()?;
    let header = encode(&Record::Header {
        format: FORMAT,
        incarnation,
    })?;
    let mut writer = file;
    writer
        .write_all(&header)
        .and_then(|()| file.sync_data())
        .map_err(io_error("write the header of", path))?;
    sync_dir(dir)?;
    Ok((incarnation, header.len() as u64))
}

/// How long an open waits for a lock that this very process seems to hold:
/// a fork of it (another thread spawning a program) keeps a copy of the
/// lock's descriptor until its exec, which takes moments.
const OWN_LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// Takes the directory's lock file, or says who holds it.
fn lock(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error("open the lock file", &path))?;
    let own = std::process::id().to_string();
    let deadline = Instant::now() + OWN_LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => {
                // The pid is only for the message a second opener gets.
                let _ = file.set_len(0).and_then(|()| file.write_all(own.as_bytes()));
                return Ok(file);
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = (&file).seek(SeekFrom::Start(0));
                let _ = (&file).take(32).read_to_string(&mut holder);
                let holder = Some(holder.trim().to_string()).filter(|pid| !pid.is_empty());
                // Our own pid: a Journal of this process not yet dropped
                // (the caller's mistake: it stays locked) or a fork on its
                // way to exec (gone in moments).
                if holder.as_deref() == Some(own.as_str()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                return Err(JournalError::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(err)) => return Err(io_error("lock", &path)(err)),
        }
    }
}

fn new_incarnation() -> Result<u64, JournalError> {
    loop {
        let drawn = getrandom::u64().map_err(JournalError::Random)?;
        if drawn != 0 {
            return Ok(drawn);
        }
    }
}

/// Makes a file's creation or rename in `dir` survive a power loss.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("flush the directory", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
