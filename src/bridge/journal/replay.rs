//! Reading a log front to back at open: the incarnation, each network's
//! counter and live messages, and where a torn tail begins.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;

use super::record::{FORMAT, FRAME_HEAD, ReadProblem, Record, max_header_len, read_record};
use super::{JournalError, Network, Recovered, Span, Stored, io_error};

/// What reading a log front to back found.
#[derive(Default)]
pub(super) struct Replay {
    pub(super) incarnation: Option<u64>,
    /// Length of the whole records at its start.
    pub(super) valid_len: u64,
    pub(super) records: u64,
    networks: HashMap<String, ReplayedNetwork>,
    pub(super) torn: Option<Torn>,
}

#[derive(Default)]
struct ReplayedNetwork {
    next_seq: u64,
    acknowledged: u64,
    live: BTreeMap<u64, (Span, String, Vec<u8>)>,
}

/// The end of a log that is cut off: how long it is and why.
pub(super) struct Torn {
    pub(super) bytes: u64,
    pub(super) reason: String,
}

impl Replay {
    /// Reads the log until its end or its first bad record. Allocates no
    /// more than the file holds, whatever its length fields say.
    pub(super) fn read(file: &File, path: &Path) -> Result<Replay, JournalError> {
        let file_len = file.metadata().map_err(io_error("read", path))?.len();
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        reader.seek(SeekFrom::Start(0)).map_err(io_error("read", path))?;
        let mut replay = Replay::default();
        let mut body = Vec::new();
        while replay.valid_len < file_len {
            let offset = replay.valid_len;
            let reason = match read_record(&mut reader, file_len - offset, &mut body) {
                Ok(()) => {
                    // A record whose checksum matches was written whole: if
                    // it does not make sense, this is not a crash's doing.
                    let damaged = |reason| JournalError::Damaged {
                        path: path.to_path_buf(),
                        reason,
                    };
                    let record = rmp_serde::from_slice::<Record<'_>>(&body).map_err(|err| {
                        damaged(format!("the record at offset {offset} does not decode: {err}"))
                    })?;
                    replay
                        .apply(record, offset, FRAME_HEAD + body.len() as u64)
                        .map_err(damaged)?;
                    replay.valid_len += FRAME_HEAD + body.len() as u64;
                    replay.records += 1;
                    continue;
                }
                Err(ReadProblem::Io(err)) => return Err(io_error("read", path)(err)),
                Err(ReadProblem::Bad(reason)) => reason,
            };
            if offset == 0 && file_len >= max_header_len()? {
                // The header is flushed before the first message, so only a
                // log shorter than a header can be torn there: this one is
                // damaged, and is left for someone to look at.
                return Err(JournalError::Damaged {
                    path: path.to_path_buf(),
                    reason: format!("its header is bad: {reason}"),
                });
            }
            replay.torn = Some(Torn {
                bytes: file_len - offset,
                reason,
            });
            break;
        }
        Ok(replay)
    }

    /// Applies one record in log order; an error is a log that is not an
    /// outbox journal of this format.
    fn apply(&mut self, record: Record<'_>, offset: u64, len: u64) -> Result<(), String> {
        match (record, self.incarnation) {
            (Record::Header { format, incarnation }, None) => {
                if format != FORMAT {
                    return Err(format!("format {format}, this build reads format {FORMAT}"));
                }
                self.incarnation = Some(incarnation);
            }
            (_, None) => return Err("it does not start with a header".to_string()),
            (Record::Header { .. }, Some(_)) => return Err(format!("a second header at offset {offset}")),
            (Record::NextSeq { network, next_seq }, _) => {
                let net = self.networks.entry(network.into_owned()).or_default();
                net.next_seq = net.next_seq.max(next_seq);
            }
            (
                Record::Message {
                    network,
                    seq,
                    target_actor,
                    bytes,
                },
                _,
            ) => {
                let net = self.networks.entry(network.into_owned()).or_default();
                net.next_seq = net.next_seq.max(seq.saturating_add(1));
                let span = Span { offset, len };
                net.live
                    .insert(seq, (span, target_actor.into_owned(), bytes.into_owned()));
            }
            (Record::Acknowledged { network, through }, _) => {
                if let Some(net) = self.networks.get_mut(network.as_ref()) {
                    net.acknowledged = net.acknowledged.max(through);
                    net.live = net.live.split_off(&through.saturating_add(1));
                }
            }
        }
        Ok(())
    }

    /// What the caller gets, and what the journal keeps in memory.
    pub(super) fn into_parts(self, incarnation: u64) -> (Recovered, HashMap<String, Network>, u64) {
        let mut next_seq = HashMap::new();
        let mut networks = HashMap::new();
        let mut entries = Vec::new();
        let mut live_bytes = 0;
        for (name, replayed) in self.networks {
            let mut live = BTreeMap::new();
            for (seq, (span, target_actor, bytes)) in replayed.live {
                live.insert(seq, span);
                live_bytes += span.len;
                entries.push(Stored {
                    network: name.clone(),
                    seq,
                    target_actor,
                    bytes,
                });
            }
            let next = replayed.next_seq.max(1);
            next_seq.insert(name.clone(), next);
            networks.insert(
                name,
                Network {
                    next_seq: next,
                    acknowledged: replayed.acknowledged,
                    live,
                },
            );
        }
        entries.sort_by(|a, b| (&a.network, a.seq).cmp(&(&b.network, b.seq)));
        let recovered = Recovered {
            incarnation,
            next_seq,
            entries,
        };
        (recovered, networks, live_bytes)
    }
}
