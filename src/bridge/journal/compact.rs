//! Compaction: the live records are copied into a new log, which is flushed
//! and renamed over the old one, so that a crash at any point leaves one
//! whole log or the other.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use super::record::{FORMAT, Record, encode, frame_is_whole};
use super::{COMPACT_FILE, Journal, JournalError, Span, State, io_error, sync_dir};

impl Journal {
    /// Compacts when at least half of a log of `compact_min_bytes` or more is
    /// acknowledged messages. A failure is logged and retried once the log
    /// has grown by another `compact_min_bytes`: the log stays valid.
    pub(super) fn maybe_compact(&self, state: &mut State) {
        let min = self.options.compact_min_bytes;
        let dead = state.len.saturating_sub(state.live_bytes);
        if state.len < min.max(state.retry_compaction_at) || dead < state.len / 2 {
            return;
        }
        let before = state.len;
        match self.compact(state) {
            Ok(()) => log::debug!(
                "outbox journal {}: compacted from {before} to {} bytes",
                self.path.display(),
                state.len
            ),
            Err(err) => {
                state.retry_compaction_at = before.saturating_add(min);
                log::warn!("outbox journal: compaction failed, the log is kept as it is: {err}");
            }
        }
    }

    /// Writes the header, each network's counter and its live records into
    /// a new file, syncs it and renames it over the log.
    fn compact(&self, state: &mut State) -> Result<(), JournalError> {
        let temp = self.dir.join(COMPACT_FILE);
        let written = self.write_compacted(state, &temp);
        let renamed = written.and_then(|compacted| {
            fs::rename(&temp, &self.path)
                .map_err(io_error("rename the compacted journal over", &self.path))?;
            Ok(compacted)
        });
        let Compacted { file, len, spans } = match renamed {
            Ok(compacted) => compacted,
            Err(err) => {
                let _ = fs::remove_file(&temp);
                return Err(err);
            }
        };
        if let Err(err) = sync_dir(&self.dir) {
            // The rename is done; only its durability across a power loss is
            // in doubt, and the next compaction syncs the directory again.
            log::warn!("outbox journal: {err}");
        }
        state.file = Arc::new(file);
        state.len = len;
        state.retry_compaction_at = 0;
        for (name, live) in spans {
            if let Some(net) = state.networks.get_mut(&name) {
                net.live = live;
            }
        }
        Ok(())
    }

    fn write_compacted(&self, state: &State, temp: &Path) -> Result<Compacted, JournalError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(temp)
            .map_err(io_error("create", temp))?;
        let mut out = Output {
            writer: BufWriter::new(&file),
            len: 0,
        };
        let header = encode(&Record::Header {
            format: FORMAT,
            incarnation: self.incarnation,
        })?;
        out.put(&header).map_err(io_error("write", temp))?;
        let mut names: Vec<&String> = state.networks.keys().collect();
        names.sort();
        let mut spans = Vec::with_capacity(names.len());
        let mut source = &*state.file;
        let mut record = Vec::new();
        for name in names {
            let net = &state.networks[name];
            let counter = encode(&Record::NextSeq {
                network: Cow::Borrowed(name),
                next_seq: net.next_seq,
            })?;
            out.put(&counter).map_err(io_error("write", temp))?;
            let mut live = BTreeMap::new();
            for (&seq, span) in &net.live {
                record.resize(span.len as usize, 0);
                source
                    .seek(SeekFrom::Start(span.offset))
                    .and_then(|_| source.read_exact(&mut record))
                    .map_err(io_error("read back a record from", &self.path))?;
                if !frame_is_whole(&record) {
                    return Err(JournalError::Damaged {
                        path: self.path.clone(),
                        reason: format!(
                            "the record at offset {} no longer matches its checksum",
                            span.offset
                        ),
                    });
                }
                let offset = out.put(&record).map_err(io_error("write", temp))?;
                live.insert(
                    seq,
                    Span {
                        offset,
                        len: span.len,
                    },
                );
            }
            spans.push((name.clone(), live));
        }
        let len = out.len;
        out.writer.flush().map_err(io_error("write", temp))?;
        drop(out);
        file.sync_data().map_err(io_error("flush", temp))?;
        Ok(Compacted { file, len, spans })
    }
}

/// A compaction's new log, synced but not yet renamed.
struct Compacted {
    file: File,
    len: u64,
    /// Per network, where its live records now sit.
    spans: Vec<(String, BTreeMap<u64, Span>)>,
}

/// The new log while a compaction writes it.
struct Output<'f> {
    writer: BufWriter<&'f File>,
    len: u64,
}

impl Output<'_> {
    /// Writes one record and returns its offset.
    fn put(&mut self, record: &[u8]) -> io::Result<u64> {
        self.writer.write_all(record)?;
        let offset = self.len;
        self.len += record.len() as u64;
        Ok(offset)
    }
}
