//! The log's records: what each holds, and its framing on disk (the body's
//! length, a CRC-32 of length and body, then the body as one MessagePack
//! value).

use std::borrow::Cow;
use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use super::JournalError;

/// The header's format number; a log of another format is refused, not read.
pub(super) const FORMAT: u32 = 1;
/// Bytes in front of each record body: its length and its checksum.
pub(super) const FRAME_HEAD: u64 = 8;

/// One record's body. Borrowed when written, owned when read back.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Record<'a> {
    /// The first record of every log.
    Header { format: u32, incarnation: u64 },
    /// A network's next seq, written by a compaction so that it outlives the
    /// network's last message.
    NextSeq { network: Cow<'a, str>, next_seq: u64 },
    /// One message, as `append` was given it.
    Message {
        network: Cow<'a, str>,
        seq: u64,
        target_actor: Cow<'a, str>,
        #[serde(with = "bin")]
        bytes: Cow<'a, [u8]>,
    },
    /// A cumulative acknowledgement: the network's messages up to `through`.
    Acknowledged { network: Cow<'a, str>, through: u64 },
}

/// The frame of one record: length, checksum, MessagePack body.
pub(super) fn encode(record: &Record<'_>) -> Result<Vec<u8>, JournalError> {
    let mut frame = vec![0; FRAME_HEAD as usize];
    rmp_serde::encode::write(&mut frame, record).map_err(|err| JournalError::Encode(err.to_string()))?;
    let body_len = frame.len() - FRAME_HEAD as usize;
    let len = u32::try_from(body_len).map_err(|_| JournalError::TooLarge { bytes: body_len })?;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    let checksum = checksum(&frame[..4], &frame[FRAME_HEAD as usize..]);
    frame[4..8].copy_from_slice(&checksum.to_le_bytes());
    Ok(frame)
}

/// CRC-32 of a record's length field and body, so that a damaged length is
/// caught as surely as a damaged body.
pub(super) fn checksum(len: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len);
    hasher.update(body);
    hasher.finalize()
}

/// The longest a header record can be: a log shorter than that may be one
/// whose creation was cut short.
pub(super) fn max_header_len() -> Result<u64, JournalError> {
    let header = encode(&Record::Header {
        format: FORMAT,
        incarnation: u64::MAX,
    })?;
    Ok(header.len() as u64)
}

/// Whether `frame` is one whole record whose checksum matches.
pub(super) fn frame_is_whole(frame: &[u8]) -> bool {
    let Some((head, body)) = frame.split_at_checked(FRAME_HEAD as usize) else {
        return false;
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let stored = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    len as usize == body.len() && checksum(&head[..4], body) == stored
}

/// A MessagePack bin for the message bytes (not an array of numbers).
mod bin {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, 'a, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Cow<'a, [u8]>, D::Error> {
        struct Bin;
        impl Visitor<'_> for Bin {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("MessagePack bin")
            }

            fn visit_bytes<E>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }

            fn visit_byte_buf<E>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
        }
        deserializer.deserialize_bytes(Bin).map(Cow::Owned)
    }
}

pub(super) enum ReadProblem {
    Io(io::Error),
    /// The record is incomplete or fails its checksum.
    Bad(String),
}

/// Reads one framed record's body into `body`; `left` is how many bytes the
/// file has from the record's start.
pub(super) fn read_record(reader: &mut impl Read, left: u64, body: &mut Vec<u8>) -> Result<(), ReadProblem> {
    if left < FRAME_HEAD {
        return Err(ReadProblem::Bad(format!(
            "incomplete record head of {left} bytes"
        )));
    }
    let mut head = [0; FRAME_HEAD as usize];
    reader.read_exact(&mut head).map_err(ReadProblem::Io)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let stored = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if u64::from(len) > left - FRAME_HEAD {
        return Err(ReadProblem::Bad(format!(
            "incomplete record: {len} bytes announced, {} left",
            left - FRAME_HEAD
        )));
    }
    body.resize(len as usize, 0);
    reader.read_exact(body).map_err(ReadProblem::Io)?;
    if checksum(&head[..4], body) != stored {
        return Err(ReadProblem::Bad("checksum mismatch".to_string()));
    }
    Ok(())
}
