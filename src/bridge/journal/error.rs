//! The journal's errors: each names the path and the operating system's
//! error where there is one, and says what to do.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::names::escaped;

use super::LOCK_FILE;

/// Why the journal could not do what was asked. The text names the path and
/// the operating system's error where there is one.
#[derive(Debug)]
pub(crate) enum JournalError {
    /// A file operation failed (`action` says which, e.g. "append to").
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Another process (or another open in this one) holds the directory.
    Locked {
        dir: PathBuf,
        /// The pid the lock file names, if it could be read.
        holder: Option<String>,
    },
    /// The log does not start with a readable header of a known format: it is
    /// damaged at its start, or not an outbox journal. Nothing is changed.
    Damaged { path: PathBuf, reason: String },
    /// An earlier write or sync failed and left the log's state uncertain;
    /// the journal refuses further writes until it is opened again.
    Broken { path: PathBuf, reason: String },
    /// `seq` is not above the network's last stored one.
    OutOfOrder {
        network: String,
        seq: u64,
        next_seq: u64,
    },
    /// A message too large for one record.
    TooLarge { bytes: usize },
    /// A record could not be encoded (not expected: every field is a
    /// string, a number or bytes).
    Encode(String),
    /// The operating system gave no random number for a new incarnation.
    Random(getrandom::Error),
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { action, path, source } => {
                write!(f, "cannot {action} {}: {source}", path.display())
            }
            JournalError::Locked { dir, holder } => {
                write!(f, "the outbox directory {} is in use", dir.display())?;
                if let Some(pid) = holder {
                    write!(f, " by process {}", escaped(pid))?;
                }
                write!(
                    f,
                    " (lock file {LOCK_FILE}); only one process at a time may use an outbox_dir"
                )
            }
            JournalError::Damaged { path, reason } => write!(
                f,
                "the outbox journal {} is damaged or not an outbox journal ({}); move it aside to \
                 start with an empty outbox",
                path.display(),
                escaped(reason)
            ),
            JournalError::Broken { path, reason } => write!(
                f,
                "the outbox journal {} refuses writes after an earlier failure ({reason}); \
                 restart the process to reopen it",
                path.display()
            ),
            JournalError::OutOfOrder {
                network,
                seq,
                next_seq,
            } => write!(
                f,
                "seq {seq} for network {} is below its next free seq {next_seq}",
                escaped(network)
            ),
            JournalError::TooLarge { bytes } => write!(
                f,
                "a message of {bytes} bytes is too large for the outbox journal (at most {} bytes \
                 per record)",
                u32::MAX
            ),
            JournalError::Encode(err) => write!(f, "cannot encode an outbox journal record: {err}"),
            JournalError::Random(err) => write!(f, "cannot draw a random incarnation: {err}"),
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub(super) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io { action, path, source }
}
