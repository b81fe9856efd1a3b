//! Protocol 1.1's frames after the handshake, without I/O.
//!
//! Every WebSocket binary frame is one type-tag byte, then one MessagePack
//! value: its body. Tags 0x01..=0x7f are MessagePack positive fixints, so a
//! whole frame also reads as a MessagePack stream of two values. No frame is
//! recognised by guessing its fields, and an unknown tag is an error that the
//! reader counts and skips, so later frame types can be added.
//!
//! | tag | frame     | body (a MessagePack map, keys as strings)          |
//! |-----|-----------|----------------------------------------------------|
//! | 1   | DATA      | the [`RemoteMessage`], with its field names        |
//! | 2   | FRAGMENT  | `more`: bool, `chunk`: bin (at most 64 KiB)        |
//! | 3   | HEARTBEAT | `network_id`: str, `timestamp_ms`: uint            |
//! | 4   | ACK       | `through`: uint, `except`: [uint]                  |
//! | 5   | CREDIT    | `target`: str, `grant`: uint                       |
//! | 6   | CLOSE     | `reason`: str (longer than a Close frame allows)   |
//! | 7   | SEQUENCED | `seq`: uint, `message`: a DATA body                |
//! | 8   | BATCH     | an array of messages (`batch.rs`), not a map        |
//!
//! ACK, CREDIT and SEQUENCED belong to the delivery features
//! (docs/delivery.md) and go only to a peer that offered them in its
//! handshake. A DATA or SEQUENCED frame longer than one fragment travels as
//! FRAGMENT frames whose chunks concatenate to the whole frame, tag
//! included; control frames may go between them. Unknown keys in a body are
//! ignored, as in 1.0.
//!
//! MessagePack (rmp-serde) because it is self-describing like the 1.0 JSON
//! and measured smaller and faster than both JSON and CBOR for the message
//! envelope (docs/protocol.md).

use std::fmt;
use std::io::ErrorKind;

use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer};

use crate::message::Message;
use crate::message::inline::Inline;

use super::protocol::RemoteMessage;

/// Most chunk bytes in one FRAGMENT frame.
pub(crate) const FRAGMENT_BYTES: usize = 64 * 1024;

const DATA: u8 = 1;
const FRAGMENT: u8 = 2;
const HEARTBEAT: u8 = 3;
const ACK: u8 = 4;
const CREDIT: u8 = 5;
const CLOSE: u8 = 6;
const SEQUENCED: u8 = 7;

/// Most sequence numbers an ACK lists as not yet consumed; the receiver's
/// credit windows keep the real count far below (docs/delivery.md).
pub(crate) const MAX_ACK_EXCEPTIONS: usize = 65_536;

/// Deepest nesting of arrays and maps in a body: serde_json's default, so a
/// message the 1.0 text frames accept is accepted here too, and a hostile
/// body cannot recurse deep enough to overflow a reader's stack (rmp-serde's
/// own default is 1024).
const MAX_DEPTH: usize = 128;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    Data(Box<RemoteMessage>),
    /// A message under acknowledged delivery: `seq` in its sender's incarnation.
    Sequenced {
        seq: u64,
        message: Box<RemoteMessage>,
    },
    /// A piece of a DATA frame; give it to a [`Reassembly`].
    Fragment {
        more: bool,
        chunk: Vec<u8>,
    },
    Control(Control),
}

/// Frames that are never queued behind data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    Heartbeat {
        network_id: String,
        timestamp_ms: u64,
    },
    /// Every SEQUENCED message up to `through` was consumed, except those
    /// in `except` (ascending), which arrived and wait in an inbox.
    Ack {
        through: u64,
        except: Vec<u64>,
    },
    /// `grant` more credits may be spent on actor `target` (docs/protocol.md, section 5).
    Credit {
        target: String,
        grant: u64,
    },
    Close {
        reason: String,
    },
}

/// What is wrong with a frame, or with a message being reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A binary frame with no bytes, so no tag.
    Empty,
    /// A tag this peer does not know: count it and skip the frame.
    UnknownTag(u8),
    /// The body does not match the frame type `tag`.
    BadBody { tag: u8, reason: String },
    /// A remote message could not be encoded.
    Encode(String),
    /// A FRAGMENT chunk over [`FRAGMENT_BYTES`].
    FragmentTooLarge(usize),
    /// The message being reassembled went over the receiver's limit.
    OverLimit { limit: usize },
    /// Reassembled fragments begin with this tag instead of DATA's or SEQUENCED's.
    NotData(u8),
    /// An ACK listing more than [`MAX_ACK_EXCEPTIONS`] exceptions.
    TooManyExceptions(usize),
    /// Reassembled fragments begin with FRAGMENT's tag.
    NestedFragment,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Empty => f.write_str("empty frame"),
            FrameError::UnknownTag(tag) => write!(f, "unknown frame tag {tag}"),
            FrameError::BadBody { tag, reason } => write!(f, "bad body for frame tag {tag}: {reason}"),
            FrameError::Encode(why) => write!(f, "message could not be encoded: {why}"),
            FrameError::FragmentTooLarge(len) => write!(
                f,
                "fragment chunk of {len} bytes, over the maximum of {FRAGMENT_BYTES}"
            ),
            FrameError::OverLimit { limit } => {
                write!(f, "reassembled message over the limit of {limit} bytes")
            }
            FrameError::NotData(tag) => write!(
                f,
                "fragment reassembly yielded a frame with tag {tag}, not a DATA frame"
            ),
            FrameError::NestedFragment => f.write_str("fragment reassembly yielded a nested fragment"),
            FrameError::TooManyExceptions(n) => write!(
                f,
                "acknowledgement lists {n} exceptions, over the maximum of {MAX_ACK_EXCEPTIONS}"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// The DATA frame of `message`. Its length is what the peer's stated largest
/// message is compared with.
pub(crate) fn encode_data(message: &RemoteMessage) -> Result<Vec<u8>, FrameError> {
    let mut frame = Vec::with_capacity(data_len_hint(message));
    frame.push(DATA);
    let body = DataBody {
        message_id: &message.message_id,
        source_network: &message.source_network,
        source_actor: &message.source_actor,
        target_network: &message.target_network,
        target_actor: &message.target_actor,
        target_port: &message.target_port,
        payload: Inline(&message.payload),
        timestamp: &message.timestamp,
    };
    rmp_serde::encode::write_named(&mut frame, &body).map_err(|err| FrameError::Encode(err.to_string()))?;
    Ok(frame)
}

/// About the length of `message`'s DATA frame, at least as long for a text
/// or bytes payload: the frame is written into one allocation, not grown
/// (and copied) on the way, which at 64 B took a second allocation per
/// message and at 64 KiB most of the encoding's time.
fn data_len_hint(message: &RemoteMessage) -> usize {
    // Tag, map header, the eight keys (89 bytes) and the markers of the
    // values and the payload's own map.
    const FIXED: usize = 160;
    let payload = payload_len_hint(&message.payload);
    let fields = [
        &message.message_id,
        &message.source_network,
        &message.source_actor,
        &message.target_network,
        &message.target_actor,
        &message.target_port,
        &message.timestamp,
    ];
    FIXED + payload + fields.iter().map(|field| field.len()).sum::<usize>()
}

/// The bytes of a text or bytes payload, 0 for other kinds: at most its
/// encoded length, so frames are sized from it in one allocation.
pub(super) fn payload_len_hint(payload: &Message) -> usize {
    match payload {
        Message::String(text) | Message::Error(text) => text.len(),
        Message::Bytes(bytes) => bytes.len(),
        _ => 0,
    }
}

/// The SEQUENCED frame of a message whose DATA frame is `data_frame`: the
/// DATA body is reused as is, so a message is encoded once whatever its seq.
pub(crate) fn encode_sequenced(seq: u64, data_frame: &[u8]) -> Vec<u8> {
    let body = data_frame.get(1..).unwrap_or_default();
    let mut frame = Body::new(SEQUENCED, 2, body.len() + 16);
    frame.str("seq");
    frame.uint(seq);
    frame.str("message");
    frame.0.extend_from_slice(body);
    frame.0
}

/// The length of the DATA frame a message frame of `frame_len` bytes
/// carries: the frame itself for DATA (`seq` `None`); for SEQUENCED
/// (`Some(seq)`), the frame less its wrapper, as [`encode_sequenced`]
/// writes it (tag, map header, the `seq` field in its smallest form and the
/// `message` key, in place of DATA's tag). Credit costs are computed from
/// this length on both sides, so they agree whatever the seq.
pub(crate) fn message_len(frame_len: usize, seq: Option<u64>) -> usize {
    match seq {
        None => frame_len,
        Some(seq) => frame_len.saturating_sub(sequenced_overhead(seq)),
    }
}

/// The length of the SEQUENCED frame [`encode_sequenced`] makes of a DATA
/// frame of `data_len` bytes, known before encoding it (the outbox's byte
/// bound counts the frames it keeps).
pub(crate) fn sequenced_len(seq: u64, data_len: usize) -> usize {
    data_len + sequenced_overhead(seq)
}

/// What a SEQUENCED frame adds to its DATA frame.
fn sequenced_overhead(seq: u64) -> usize {
    let seq_len = match seq {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    };
    // tag + fixmap + "seq" (4) + seq + "message" (8), less DATA's tag.
    1 + 1 + 4 + seq_len + 8 - 1
}

/// A DATA body as written: the message's fields, with the payload in the
/// inline form (no 1.0 wrappers, every kind under its own name). The reader
/// decodes it as a `RemoteMessage`, whose payload reader takes both forms.
#[derive(serde::Serialize)]
struct DataBody<'a> {
    message_id: &'a str,
    source_network: &'a str,
    source_actor: &'a str,
    target_network: &'a str,
    target_actor: &'a str,
    target_port: &'a str,
    payload: Inline<'a>,
    timestamp: &'a str,
}

/// The frame of one control message.
pub(crate) fn encode_control(control: &Control) -> Vec<u8> {
    match control {
        Control::Heartbeat {
            network_id,
            timestamp_ms,
        } => {
            let mut body = Body::new(HEARTBEAT, 2, network_id.len());
            body.str("network_id");
            body.str(network_id);
            body.str("timestamp_ms");
            body.uint(*timestamp_ms);
            body.0
        }
        Control::Ack { through, except } => {
            let mut body = Body::new(ACK, 2, except.len() * 9);
            body.str("through");
            body.uint(*through);
            body.str("except");
            body.array(except.len());
            for seq in except {
                body.uint(*seq);
            }
            body.0
        }
        Control::Credit { target, grant } => {
            let mut body = Body::new(CREDIT, 2, target.len());
            body.str("target");
            body.str(target);
            body.str("grant");
            body.uint(*grant);
            body.0
        }
        Control::Close { reason } => {
            let mut body = Body::new(CLOSE, 1, reason.len());
            body.str("reason");
            body.str(reason);
            body.0
        }
    }
}

/// Splits an encoded DATA frame into FRAGMENT frames of at most `fragment`
/// chunk bytes, or yields it unchanged when it fits in one. `fragment` is
/// kept within 1..=[`FRAGMENT_BYTES`]. Lazy, so a writer can send control
/// frames between fragments.
pub(crate) fn fragments(data_frame: Vec<u8>, fragment: usize) -> Fragments {
    let size = fragment.clamp(1, FRAGMENT_BYTES);
    Fragments {
        whole: data_frame.len() <= size,
        frame: data_frame,
        size,
        offset: 0,
    }
}

/// The frames of one DATA frame on the wire; see [`fragments`].
#[derive(Debug)]
pub(crate) struct Fragments {
    frame: Vec<u8>,
    size: usize,
    offset: usize,
    whole: bool,
}

impl Iterator for Fragments {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.offset >= self.frame.len() {
            return None;
        }
        if self.whole {
            self.offset = self.frame.len();
            return Some(std::mem::take(&mut self.frame));
        }
        let end = self.frame.len().min(self.offset + self.size);
        let chunk = &self.frame[self.offset..end];
        self.offset = end;
        Some(fragment_frame(end < self.frame.len(), chunk))
    }
}

fn fragment_frame(more: bool, chunk: &[u8]) -> Vec<u8> {
    let mut body = Body::new(FRAGMENT, 2, chunk.len());
    body.str("more");
    body.bool(more);
    body.str("chunk");
    body.bin(chunk);
    body.0
}

/// Reads one frame. Never panics, and allocates no more than the input
/// holds: length prefixes are checked against the bytes actually present
/// before anything is copied (a body's decoded form may still be larger
/// than its bytes, as with JSON: a one-byte msgpack `nil` becomes a
/// `serde_json::Value`).
pub(crate) fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
    let (&tag, body) = bytes.split_first().ok_or(FrameError::Empty)?;
    Ok(match tag {
        DATA => Frame::Data(Box::new(body_of(tag, body)?)),
        FRAGMENT => {
            let FragmentBody { more, chunk } = body_of(tag, body)?;
            Frame::Fragment { more, chunk }
        }
        HEARTBEAT => {
            let HeartbeatBody {
                network_id,
                timestamp_ms,
            } = body_of(tag, body)?;
            Frame::Control(Control::Heartbeat {
                network_id,
                timestamp_ms,
            })
        }
        SEQUENCED => {
            let SequencedBody { seq, message } = body_of(tag, body)?;
            Frame::Sequenced { seq, message }
        }
        ACK => {
            let AckBody { through, except } = body_of(tag, body)?;
            if except.len() > MAX_ACK_EXCEPTIONS {
                return Err(FrameError::TooManyExceptions(except.len()));
            }
            Frame::Control(Control::Ack { through, except })
        }
        CREDIT => {
            let CreditBody { target, grant } = body_of(tag, body)?;
            Frame::Control(Control::Credit { target, grant })
        }
        CLOSE => {
            let CloseBody { reason } = body_of(tag, body)?;
            Frame::Control(Control::Close { reason })
        }
        other => return Err(FrameError::UnknownTag(other)),
    })
}

/// Puts the FRAGMENT frames of one message at a time back together, refusing
/// as soon as the running total passes `limit` bytes (the receiver's stated
/// largest message, counted as the whole DATA frame, tag included). After a
/// refusal the rest of that message's fragments are dropped without further
/// errors, so one bad message is counted once.
#[derive(Debug)]
pub(crate) struct Reassembly {
    limit: usize,
    state: State,
    /// Length of the last frame put back together.
    last_len: usize,
    /// The last message's buffer, emptied, for the next one: a new buffer
    /// of two fragments' size per message came from the kernel each time,
    /// page by page, and cost more than the copy into it. Kept only up to
    /// [`KEEP_BYTES`].
    spare: Vec<u8>,
}

/// The largest reassembly buffer kept for the next message: two
/// fragments, what a message just over one fragment needs.
const KEEP_BYTES: usize = 2 * FRAGMENT_BYTES + 1024;

#[derive(Debug)]
enum State {
    Idle,
    Collecting(Vec<u8>),
    /// Dropping the fragments of a refused message until its last one.
    Discarding,
}

impl Reassembly {
    pub(crate) fn new(limit: usize) -> Self {
        Reassembly {
            limit,
            state: State::Idle,
            last_len: 0,
            spare: Vec::new(),
        }
    }

    /// The length of the frame the last completed `push` returned (tag
    /// included), from which its credit cost is computed.
    pub(crate) fn last_len(&self) -> usize {
        self.last_len
    }

    #[cfg(test)]
    /// Whether a message's fragments have begun and its last has not come.
    pub(crate) fn in_progress(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Takes one FRAGMENT frame's fields; the DATA or SEQUENCED frame once
    /// its last fragment (`more: false`) has come.
    pub(crate) fn push(&mut self, more: bool, chunk: &[u8]) -> Result<Option<Frame>, FrameError> {
        let mut buffer = match std::mem::replace(&mut self.state, State::Idle) {
            State::Discarding => {
                if more {
                    self.state = State::Discarding;
                }
                return Ok(None);
            }
            State::Idle => std::mem::take(&mut self.spare),
            State::Collecting(buffer) => buffer,
        };
        if let Err(err) = self.check(&buffer, chunk) {
            if more {
                self.state = State::Discarding;
            }
            return Err(err);
        }
        // Grow as Vec would, but never past the limit: a message just under
        // the limit must not cost twice the limit. A first fragment makes
        // room for a second as large: a message just over one fragment
        // (64 KiB of payload) is then copied once, not copied and moved.
        let needed = buffer.len() + chunk.len();
        if needed > buffer.capacity() {
            let doubled = if buffer.is_empty() && more {
                needed * 2
            } else {
                buffer.capacity() * 2
            };
            let target = needed.max(doubled).min(self.limit);
            buffer.reserve_exact(target - buffer.len());
        }
        buffer.extend_from_slice(chunk);
        if more {
            self.state = State::Collecting(buffer);
            return Ok(None);
        }
        self.last_len = buffer.len();
        let decoded = decode_data(&buffer).map(Some);
        if buffer.capacity() <= KEEP_BYTES {
            buffer.clear();
            self.spare = buffer;
        }
        decoded
    }

    fn check(&self, buffer: &[u8], chunk: &[u8]) -> Result<(), FrameError> {
        if chunk.len() > FRAGMENT_BYTES {
            return Err(FrameError::FragmentTooLarge(chunk.len()));
        }
        if buffer.len() + chunk.len() > self.limit {
            return Err(FrameError::OverLimit { limit: self.limit });
        }
        // Refuse a message that is not DATA at its first byte, not its last.
        match (buffer.is_empty(), chunk.first()) {
            (true, Some(&tag)) => data_tag(tag),
            _ => Ok(()),
        }
    }
}

fn data_tag(tag: u8) -> Result<(), FrameError> {
    match tag {
        DATA | SEQUENCED => Ok(()),
        FRAGMENT => Err(FrameError::NestedFragment),
        other => Err(FrameError::NotData(other)),
    }
}

fn decode_data(frame: &[u8]) -> Result<Frame, FrameError> {
    let tag = *frame.first().ok_or(FrameError::Empty)?;
    data_tag(tag)?;
    decode(frame)
}

/// Exactly one MessagePack value of type `T`, and nothing after it.
pub(super) fn body_of<T: DeserializeOwned>(tag: u8, body: &[u8]) -> Result<T, FrameError> {
    let bad = |reason: String| FrameError::BadBody { tag, reason };
    let mut de = rmp_serde::Deserializer::from_read_ref(body);
    de.set_max_depth(MAX_DEPTH);
    let value = T::deserialize(&mut de).map_err(|err| bad(err.to_string()))?;
    // The slice reader does not tell what is left, so look for one more
    // value with a visitor that refuses every value without reading into it:
    // then only an empty rest fails at the marker. (A reader over `&[u8]`
    // would tell, but copies every string and was measured slower.)
    match (&mut de).deserialize_any(End) {
        Err(rmp_serde::decode::Error::InvalidMarkerRead(err)) if err.kind() == ErrorKind::UnexpectedEof => {
            Ok(value)
        }
        _ => Err(bad("bytes after the body".into())),
    }
}

struct End;

impl Visitor<'_> for End {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing after the body")
    }
}

#[derive(Deserialize)]
struct FragmentBody {
    more: bool,
    #[serde(deserialize_with = "bin")]
    chunk: Vec<u8>,
}

#[derive(Deserialize)]
struct HeartbeatBody {
    network_id: String,
    timestamp_ms: u64,
}

#[derive(Deserialize)]
struct SequencedBody {
    seq: u64,
    message: Box<RemoteMessage>,
}

#[derive(Deserialize)]
struct AckBody {
    through: u64,
    except: Vec<u64>,
}

#[derive(Deserialize)]
struct CreditBody {
    target: String,
    grant: u64,
}

#[derive(Deserialize)]
struct CloseBody {
    reason: String,
}

/// A MessagePack bin and nothing else (not an array of numbers): one
/// representation on the wire.
fn bin<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
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
    deserializer.deserialize_bytes(Bin)
}

/// The few MessagePack forms of the non-DATA bodies, written as rmp-serde
/// writes them (smallest form; a test compares byte for byte) but without a
/// Result: rmp-serde's encoder is fallible even into a Vec, and a heartbeat
/// or a fragment has nothing that could fail.
struct Body(Vec<u8>);

impl Body {
    /// A frame of `tag` whose body is a map of `fields` (at most 15) entries.
    fn new(tag: u8, fields: u8, payload: usize) -> Body {
        let mut bytes = Vec::with_capacity(32 + payload);
        bytes.push(tag);
        bytes.push(0x80 | fields);
        Body(bytes)
    }

    fn str(&mut self, text: &str) {
        // A str32 holds at most 4 GiB - 1; longer text, never sent in
        // practice, is cut at a character boundary rather than mis-framed.
        let text = &text[..text.floor_char_boundary(u32::MAX as usize)];
        let len = text.len();
        match len {
            0..=31 => self.0.push(0xa0 | len as u8),
            32..=0xff => self.0.extend_from_slice(&[0xd9, len as u8]),
            0x100..=0xffff => {
                self.0.push(0xda);
                self.0.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.0.push(0xdb);
                self.0.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
        self.0.extend_from_slice(text.as_bytes());
    }

    fn uint(&mut self, n: u64) {
        match n {
            0..=0x7f => self.0.push(n as u8),
            0x80..=0xff => self.0.extend_from_slice(&[0xcc, n as u8]),
            0x100..=0xffff => {
                self.0.push(0xcd);
                self.0.extend_from_slice(&(n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.0.push(0xce);
                self.0.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                self.0.push(0xcf);
                self.0.extend_from_slice(&n.to_be_bytes());
            }
        }
    }

    /// The header of an array of `len` values (written next).
    fn array(&mut self, len: usize) {
        match len {
            0..=15 => self.0.push(0x90 | len as u8),
            16..=0xffff => {
                self.0.push(0xdc);
                self.0.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.0.push(0xdd);
                self.0
                    .extend_from_slice(&(len.min(u32::MAX as usize) as u32).to_be_bytes());
            }
        }
    }

    fn bool(&mut self, value: bool) {
        self.0.push(if value { 0xc3 } else { 0xc2 });
    }

    /// `bytes` is one fragment's chunk, so at most [`FRAGMENT_BYTES`].
    fn bin(&mut self, bytes: &[u8]) {
        let len = bytes.len();
        match len {
            0..=0xff => self.0.extend_from_slice(&[0xc4, len as u8]),
            0x100..=0xffff => {
                self.0.push(0xc5);
                self.0.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.0.push(0xc6);
                self.0.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
        self.0.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde::Serialize;
    use serde_json::json;

    use super::*;
    use crate::message::{Message, RemoteReference};

    /// The edges of MessagePack's unsigned integer forms (1, 2, 3, 5 and 9
    /// bytes), where a length computed by hand could be off by one.
    const UINT_EDGES: [u64; 11] = [
        0,
        1,
        0x7f,
        0x80,
        0xff,
        0x100,
        0xffff,
        0x1_0000,
        0xffff_ffff,
        0x1_0000_0000,
        u64::MAX,
    ];

    fn message(payload: Message) -> RemoteMessage {
        RemoteMessage {
            message_id: "m-1".into(),
            source_network: "beta".into(),
            source_actor: "unknown".into(),
            target_network: "alpha".into(),
            target_actor: "recorder".into(),
            target_port: "in".into(),
            payload,
            timestamp: "2026-04-28T22:48:33.001Z".into(),
        }
    }

    #[test]
    fn a_text_or_bytes_frame_fits_the_allocation_it_was_sized_for() {
        for len in [0, 1, 64, 255, 256, 1024, 65_535, 65_536, 1 << 20] {
            let payloads = [
                Message::string("x".repeat(len)),
                Message::Error(Arc::from("e".repeat(len))),
                Message::Bytes(Arc::from(vec![0xffu8; len])),
            ];
            for payload in payloads {
                let mut long = message(payload);
                // Full-length ids, as RemoteMessage::new makes them.
                long.message_id = crate::ids::uuid_v4();
                let hint = data_len_hint(&long);
                let frame = encode_data(&long).unwrap();
                assert!(
                    frame.len() <= hint,
                    "{len}-byte payload: frame of {} bytes over its hint of {hint}",
                    frame.len()
                );
                assert!(hint - frame.len() < 200, "hint {hint} far over {}", frame.len());
            }
        }
    }

    fn payloads() -> Vec<Message> {
        vec![
            Message::Flow,
            Message::Boolean(true),
            Message::Integer(i64::MIN),
            Message::Integer(-1),
            Message::Integer(i64::MAX),
            Message::Float(-2.5),
            Message::Float(1.0),
            Message::string(""),
            Message::string("héllo ✓"),
            Message::error("failed"),
            Message::Bytes(vec![0, 1, 127, 128, 255].into()),
            Message::Optional(None),
            Message::Optional(Some(Arc::new(json!("x")))),
            Message::Any(Arc::new(json!({"a": [1, -2, 3.5, null, true, {"b": u64::MAX}]}))),
            Message::Event(Arc::new(json!(["e", 1]))),
            Message::Array(Arc::new(vec![json!(1), json!("two"), json!([])])),
            Message::Object(Arc::new(
                json!({"k": {"nested": [1, 2]}, "": ""})
                    .as_object()
                    .unwrap()
                    .clone(),
            )),
            Message::RemoteReference(Arc::new(RemoteReference {
                network_id: "alpha".into(),
                actor_id: "recorder".into(),
                port: "in".into(),
            })),
        ]
    }

    fn controls() -> Vec<Control> {
        vec![
            Control::Heartbeat {
                network_id: "beta".into(),
                timestamp_ms: 1_777_416_513_001,
            },
            Control::Ack {
                through: 0,
                except: Vec::new(),
            },
            Control::Ack {
                through: u64::MAX,
                except: vec![1, 200, 70_000, u64::MAX - 1],
            },
            Control::Credit {
                target: "recorder".into(),
                grant: 300,
            },
            Control::Close {
                // Longer than the 123 bytes a WebSocket Close frame allows.
                reason: format!("peer shut down: {}", "é".repeat(200)),
            },
        ]
    }

    #[test]
    fn data_frames_round_trip_every_payload() {
        for payload in payloads() {
            let sent = message(payload);
            let frame = encode_data(&sent).unwrap();
            assert_eq!(frame[0], DATA);
            assert_eq!(decode(&frame), Ok(Frame::Data(Box::new(sent))));
        }
    }

    #[test]
    fn control_frames_round_trip() {
        for control in controls() {
            let frame = encode_control(&control);
            assert_eq!(decode(&frame), Ok(Frame::Control(control)));
        }
    }

    #[test]
    fn fragment_frames_round_trip() {
        for (more, len) in [
            (true, 0),
            (false, 1),
            (true, 255),
            (false, 256),
            (true, FRAGMENT_BYTES),
        ] {
            let chunk: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let frame = fragment_frame(more, &chunk);
            assert_eq!(decode(&frame), Ok(Frame::Fragment { more, chunk }));
        }
    }

    #[test]
    fn a_frame_is_a_tag_then_one_self_describing_value() {
        let frame = encode_data(&message(Message::Integer(7))).unwrap();
        // The tag is itself a msgpack fixint, so the frame is a stream of two values.
        let mut rest = &frame[..];
        let mut de = rmp_serde::Deserializer::new(&mut rest);
        let tag = u8::deserialize(&mut de).unwrap();
        let body = serde_json::Value::deserialize(&mut de).unwrap();
        drop(de);
        assert_eq!(tag, DATA);
        assert!(rest.is_empty());
        assert_eq!(body["target_actor"], "recorder");
        assert_eq!(body["payload"], json!({"type": "Integer", "data": 7}));
    }

    /// The hand-written bodies are what rmp-serde writes for the same maps.
    #[test]
    fn control_and_fragment_bodies_match_rmp_serde_byte_for_byte() {
        #[derive(Serialize)]
        struct Heartbeat<'a> {
            network_id: &'a str,
            timestamp_ms: u64,
        }
        #[derive(Serialize)]
        struct Ack {
            through: u64,
            except: Vec<u64>,
        }
        #[derive(Serialize)]
        struct Credit<'a> {
            target: &'a str,
            grant: u64,
        }
        #[derive(Serialize)]
        struct Close<'a> {
            reason: &'a str,
        }
        #[derive(Serialize)]
        struct Fragment<'a> {
            more: bool,
            #[serde(serialize_with = "as_bin")]
            chunk: &'a [u8],
        }
        fn as_bin<S: serde::Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(bytes)
        }
        fn reference<T: Serialize>(tag: u8, body: &T) -> Vec<u8> {
            let mut frame = vec![tag];
            rmp_serde::encode::write_named(&mut frame, body).unwrap();
            frame
        }

        for n in UINT_EDGES {
            let except: Vec<u64> = UINT_EDGES.iter().copied().filter(|&e| e < n).collect();
            assert_eq!(
                encode_control(&Control::Ack {
                    through: n,
                    except: except.clone()
                }),
                reference(ACK, &Ack { through: n, except })
            );
            assert_eq!(
                encode_control(&Control::Credit {
                    target: "recorder".into(),
                    grant: n
                }),
                reference(
                    CREDIT,
                    &Credit {
                        target: "recorder",
                        grant: n
                    }
                )
            );
        }
        for len in [0, 15, 16, 0xffff, 0x1_0000] {
            let except: Vec<u64> = (0..len as u64).collect();
            assert_eq!(
                encode_control(&Control::Ack {
                    through: 9,
                    except: except.clone()
                }),
                reference(ACK, &Ack { through: 9, except })
            );
        }
        for len in [0, 1, 31, 32, 0xff, 0x100, 0xffff, 0x1_0000, 200_000] {
            let text = "n".repeat(len);
            assert_eq!(
                encode_control(&Control::Heartbeat {
                    network_id: text.clone(),
                    timestamp_ms: 1_777_416_513_001
                }),
                reference(
                    HEARTBEAT,
                    &Heartbeat {
                        network_id: &text,
                        timestamp_ms: 1_777_416_513_001
                    }
                )
            );
            assert_eq!(
                encode_control(&Control::Close { reason: text.clone() }),
                reference(CLOSE, &Close { reason: &text })
            );
        }
        for len in [0, 1, 0xff, 0x100, 0xffff, 0x1_0000] {
            let chunk = vec![0xa5; len];
            for more in [false, true] {
                assert_eq!(
                    fragment_frame(more, &chunk),
                    reference(FRAGMENT, &Fragment { more, chunk: &chunk })
                );
            }
        }
    }

    fn big_message(len: usize) -> (RemoteMessage, Vec<u8>) {
        let text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let sent = message(Message::string(text));
        let frame = encode_data(&sent).unwrap();
        (sent, frame)
    }

    fn unpack(frame: &[u8]) -> (bool, Vec<u8>) {
        match decode(frame) {
            Ok(Frame::Fragment { more, chunk }) => (more, chunk),
            other => panic!("not a fragment: {other:?}"),
        }
    }

    #[test]
    fn the_message_length_of_a_sequenced_frame_is_its_data_frame_whatever_the_seq() {
        let data = encode_data(&message(Message::string("x".repeat(300)))).unwrap();
        assert_eq!(message_len(data.len(), None), data.len());
        for seq in UINT_EDGES {
            let sequenced = encode_sequenced(seq, &data);
            assert_eq!(message_len(sequenced.len(), Some(seq)), data.len(), "seq {seq}");
            assert_eq!(sequenced_len(seq, data.len()), sequenced.len(), "seq {seq}");
        }
        // Reassembled, a frame reports its whole length.
        let big = encode_sequenced(7, &big_message(200_000).1);
        let mut reassembly = Reassembly::new(1 << 20);
        for fragment in fragments(big.clone(), FRAGMENT_BYTES) {
            let (more, chunk) = unpack(&fragment);
            if let Some(frame) = reassembly.push(more, &chunk).unwrap() {
                assert!(matches!(frame, Frame::Sequenced { seq: 7, .. }));
            }
        }
        assert_eq!(reassembly.last_len(), big.len());
    }

    #[test]
    fn fragments_of_a_200_kb_message_reassemble_exactly() {
        let (sent, frame) = big_message(200_000);
        let pieces: Vec<Vec<u8>> = fragments(frame.clone(), FRAGMENT_BYTES).collect();
        assert_eq!(pieces.len(), frame.len().div_ceil(FRAGMENT_BYTES));
        let mut joined = Vec::new();
        let mut reassembly = Reassembly::new(1 << 20);
        let mut received = None;
        for (i, piece) in pieces.iter().enumerate() {
            let (more, chunk) = unpack(piece);
            assert!(chunk.len() <= FRAGMENT_BYTES);
            assert_eq!(more, i + 1 < pieces.len());
            joined.extend_from_slice(&chunk);
            // A control frame between fragments changes nothing.
            let beat = encode_control(&Control::Credit {
                target: "t".into(),
                grant: i as u64,
            });
            assert!(matches!(decode(&beat), Ok(Frame::Control(_))));
            let out = reassembly.push(more, &chunk).unwrap();
            assert_eq!(reassembly.in_progress(), more);
            if more {
                assert!(out.is_none());
            } else {
                received = out;
            }
        }
        assert_eq!(joined, frame);
        assert_eq!(received, Some(Frame::Data(Box::new(sent))));
    }

    #[test]
    fn small_fragment_sizes_reassemble_too() {
        let (sent, frame) = big_message(5_000);
        for size in [1000, 4096, frame.len() - 1] {
            let mut reassembly = Reassembly::new(frame.len());
            let mut received = None;
            for piece in fragments(frame.clone(), size) {
                let (more, chunk) = unpack(&piece);
                assert!(chunk.len() <= size);
                received = reassembly.push(more, &chunk).unwrap();
            }
            assert_eq!(received, Some(Frame::Data(Box::new(sent.clone()))), "size {size}");
        }
    }

    #[test]
    fn a_frame_that_fits_is_sent_unchanged() {
        let frame = encode_data(&message(Message::Integer(1))).unwrap();
        let len = frame.len();
        assert_eq!(
            fragments(frame.clone(), FRAGMENT_BYTES).collect::<Vec<_>>(),
            vec![frame.clone()]
        );
        assert_eq!(
            fragments(frame.clone(), len).collect::<Vec<_>>(),
            vec![frame.clone()]
        );
        assert_eq!(fragments(frame.clone(), len - 1).count(), 2);
        assert_eq!(fragments(Vec::new(), FRAGMENT_BYTES).count(), 0);
    }

    #[test]
    fn the_fragment_size_is_kept_within_protocol_bounds() {
        // Zero would never advance; more than 64 KiB breaks the protocol.
        let pieces: Vec<_> = fragments(vec![DATA, 1, 2, 3], 0).collect();
        assert_eq!(pieces.len(), 4);
        assert_eq!(unpack(&pieces[0]), (true, vec![DATA]));
        let (_, frame) = big_message(200_000);
        assert!(
            fragments(frame, usize::MAX)
                .map(|piece| unpack(&piece).1.len())
                .all(|len| len <= FRAGMENT_BYTES)
        );
    }

    #[test]
    fn the_limit_is_enforced_as_soon_as_it_is_passed() {
        let (_, frame) = big_message(200_000);
        let pieces: Vec<_> = fragments(frame, FRAGMENT_BYTES).map(|p| unpack(&p)).collect();
        assert_eq!(pieces.len(), 4);
        let mut reassembly = Reassembly::new(100_000);
        assert_eq!(reassembly.push(pieces[0].0, &pieces[0].1), Ok(None));
        // The second fragment takes the total to 128 KiB: refused now, not at the end.
        assert_eq!(
            reassembly.push(pieces[1].0, &pieces[1].1),
            Err(FrameError::OverLimit { limit: 100_000 })
        );
        // The rest of that message is dropped quietly, then a new one starts.
        assert!(reassembly.in_progress());
        assert_eq!(reassembly.push(pieces[2].0, &pieces[2].1), Ok(None));
        assert_eq!(reassembly.push(pieces[3].0, &pieces[3].1), Ok(None));
        assert!(!reassembly.in_progress());
        let (sent, small) = big_message(90_000);
        let mut received = None;
        for piece in fragments(small, FRAGMENT_BYTES) {
            let (more, chunk) = unpack(&piece);
            received = reassembly.push(more, &chunk).unwrap();
        }
        assert_eq!(received, Some(Frame::Data(Box::new(sent.clone()))));
    }

    #[test]
    fn a_message_exactly_at_the_limit_is_accepted_and_the_buffer_stays_within_it() {
        let (sent, frame) = big_message(150_000);
        let limit = frame.len();
        let mut reassembly = Reassembly::new(limit);
        let mut received = None;
        for piece in fragments(frame.clone(), 10_000) {
            let (more, chunk) = unpack(&piece);
            received = reassembly.push(more, &chunk).unwrap();
            if let State::Collecting(buffer) = &reassembly.state {
                assert!(buffer.capacity() <= limit, "{} > {limit}", buffer.capacity());
            }
        }
        assert_eq!(received, Some(Frame::Data(Box::new(sent.clone()))));
        let mut short = Reassembly::new(limit - 1);
        let refused = fragments(frame, 10_000)
            .map(|piece| unpack(&piece))
            .map(|(more, chunk)| short.push(more, &chunk))
            .find(Result::is_err);
        assert_eq!(refused, Some(Err(FrameError::OverLimit { limit: limit - 1 })));
    }

    #[test]
    fn reassembly_refuses_what_is_not_one_data_frame() {
        let mut reassembly = Reassembly::new(1 << 20);
        // Judged at the first byte, not after buffering.
        let beat = encode_control(&Control::Credit {
            target: "t".into(),
            grant: 1,
        });
        assert_eq!(reassembly.push(true, &beat), Err(FrameError::NotData(CREDIT)));
        assert_eq!(reassembly.push(false, b"rest"), Ok(None));
        let nested = fragment_frame(false, b"x");
        assert_eq!(reassembly.push(true, &nested), Err(FrameError::NestedFragment));
        assert_eq!(reassembly.push(false, b""), Ok(None));
        assert_eq!(
            reassembly.push(true, &vec![DATA; FRAGMENT_BYTES + 1]),
            Err(FrameError::FragmentTooLarge(FRAGMENT_BYTES + 1))
        );
        assert_eq!(reassembly.push(false, b""), Ok(None));
        // The tag can come in a later chunk when the first is empty.
        assert_eq!(reassembly.push(true, b""), Ok(None));
        assert_eq!(reassembly.push(false, &[0xff]), Err(FrameError::NotData(0xff)));
        assert!(!reassembly.in_progress());
        assert_eq!(reassembly.push(false, b""), Err(FrameError::Empty));
        // DATA's tag, then a body that is not a message.
        assert!(matches!(
            reassembly.push(false, &[DATA, 0xc0]),
            Err(FrameError::BadBody { tag: DATA, .. })
        ));
        assert!(!reassembly.in_progress());
    }

    #[test]
    fn unknown_tags_and_empty_frames_are_named() {
        assert_eq!(decode(&[]), Err(FrameError::Empty));
        for tag in [0, 8, 0x7f, 0x80, 0xff] {
            assert_eq!(decode(&[tag, 0x80]), Err(FrameError::UnknownTag(tag)));
        }
        assert_eq!(FrameError::UnknownTag(9).to_string(), "unknown frame tag 9");
    }

    #[test]
    fn truncated_frames_are_errors() {
        let mut frames: Vec<Vec<u8>> = controls().iter().map(encode_control).collect();
        frames.push(encode_data(&message(payloads().pop().unwrap())).unwrap());
        frames.push(encode_data(&message(Message::Any(Arc::new(json!({"a": [1, 2.5, "x"]}))))).unwrap());
        frames.push(fragment_frame(true, b"chunk"));
        for frame in frames {
            for cut in 0..frame.len() {
                assert!(decode(&frame[..cut]).is_err(), "{:?} cut at {cut}", &frame[..cut]);
            }
        }
    }

    #[test]
    fn bodies_of_the_wrong_shape_are_bad_bodies() {
        let bad = |frame: &[u8]| match decode(frame) {
            Err(FrameError::BadBody { tag, reason }) => (tag, reason),
            other => panic!("{frame:?}: {other:?}"),
        };
        let trailing = encode_control(&Control::Credit {
            target: "t".into(),
            grant: 3,
        });
        for extra in [
            &[0xc0][..],
            &[0xcd],
            &[0x93, 1, 2, 3],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
        ] {
            let frame = [&trailing[..], extra].concat();
            assert_eq!(bad(&frame), (CREDIT, "bytes after the body".into()), "{extra:?}");
        }
        // A string where a number belongs, a missing field, not a map.
        let wrong = rmp_serde::to_vec_named(&json!({"network_id": "b", "timestamp_ms": "now"})).unwrap();
        assert_eq!(bad(&[&[HEARTBEAT][..], &wrong].concat()).0, HEARTBEAT);
        let missing = rmp_serde::to_vec_named(&json!({"more": true})).unwrap();
        assert_eq!(bad(&[&[FRAGMENT][..], &missing].concat()).0, FRAGMENT);
        assert_eq!(bad(&[CLOSE, 0x2a]).0, CLOSE);
        // The chunk must be bin, not an array of numbers.
        let array = rmp_serde::to_vec_named(&json!({"more": false, "chunk": [1, 2]})).unwrap();
        assert!(bad(&[&[FRAGMENT][..], &array].concat()).1.contains("bin"));
        // A message with a payload of the wrong type.
        let body = rmp_serde::to_vec_named(&json!({
            "message_id": "m", "source_network": "b", "source_actor": "a", "target_network": "t",
            "target_actor": "r", "target_port": "in", "payload": {"type": "Integer", "data": "x"},
            "timestamp": "now"
        }))
        .unwrap();
        assert!(bad(&[&[DATA][..], &body].concat()).1.contains("Integer"));
    }

    #[test]
    fn unknown_keys_in_a_body_are_ignored() {
        let body = rmp_serde::to_vec_named(&json!({"through": 9, "except": [], "window": [1, 2]})).unwrap();
        assert_eq!(
            decode(&[&[ACK][..], &body].concat()),
            Ok(Frame::Control(Control::Ack {
                through: 9,
                except: vec![]
            }))
        );
    }

    #[test]
    fn sequenced_frames_carry_the_data_body_and_reassemble_from_fragments() {
        let (sent, data) = big_message(100_000);
        let frame = encode_sequenced(77, &data);
        assert_eq!(frame[0], SEQUENCED);
        let expected = Frame::Sequenced {
            seq: 77,
            message: Box::new(sent.clone()),
        };
        assert_eq!(decode(&frame), Ok(expected.clone()));
        let mut reassembly = Reassembly::new(frame.len());
        let mut received = None;
        for piece in fragments(frame, FRAGMENT_BYTES) {
            let (more, chunk) = unpack(&piece);
            received = reassembly.push(more, &chunk).unwrap();
        }
        assert_eq!(received, Some(expected));
        let small = encode_sequenced(u64::MAX, &encode_data(&message(Message::Integer(1))).unwrap());
        assert!(matches!(
            decode(&small),
            Ok(Frame::Sequenced { seq: u64::MAX, .. })
        ));
    }

    /// The example in docs/protocol.md.
    #[test]
    fn the_documented_ack_example_is_what_is_written() {
        let ack = encode_control(&Control::Ack {
            through: 5,
            except: vec![],
        });
        let hex: Vec<String> = ack.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex.join(" "),
            "04 82 a7 74 68 72 6f 75 67 68 05 a6 65 78 63 65 70 74 90"
        );
    }

    #[test]
    fn an_ack_with_too_many_exceptions_is_refused() {
        let ack = Control::Ack {
            through: 1,
            except: (0..=MAX_ACK_EXCEPTIONS as u64).collect(),
        };
        assert_eq!(
            decode(&encode_control(&ack)),
            Err(FrameError::TooManyExceptions(MAX_ACK_EXCEPTIONS + 1))
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_exhausting_the_stack() {
        let frame = encode_data(&message(Message::Any(Arc::new(json!(PLACEHOLDER))))).unwrap();
        let mut deep = vec![0x91; 100_000];
        deep.push(0xc0);
        assert!(matches!(
            decode(&splice(&frame, &deep)),
            Err(FrameError::BadBody { tag: DATA, .. })
        ));
        // Nesting within serde_json's default limit still decodes.
        let mut shallow = vec![0x91; 100];
        shallow.push(0xc0);
        assert!(matches!(decode(&splice(&frame, &shallow)), Ok(Frame::Data(_))));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // xorshift: deterministic, so a failure can be replayed.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seed = encode_data(&message(payloads().swap_remove(13))).unwrap();
        for _ in 0..20_000 {
            let mut bytes = seed.clone();
            // Mutate a valid frame a little, or make one up.
            if next() % 4 == 0 {
                bytes = (0..next() % 64).map(|_| next() as u8).collect();
                if let Some(first) = bytes.first_mut() {
                    *first = (*first % 7).max(1);
                }
            } else {
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
            }
            let _ = decode(&bytes);
            let _ = Reassembly::new(1 << 16).push(false, &bytes);
        }
    }

    /// A string whose encoding marks where a hostile value is spliced in.
    const PLACEHOLDER: &str = "PLACEHOLDER-PLACEHOLDER-PLACEHOLDER-0123";

    fn splice(frame: &[u8], replacement: &[u8]) -> Vec<u8> {
        let marker = rmp_serde::to_vec(PLACEHOLDER).unwrap();
        let at = frame
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("placeholder in frame");
        [&frame[..at], replacement, &frame[at + marker.len()..]].concat()
    }

    /// Frames whose length prefixes claim about 4 GiB that is not there.
    fn hostile_frames() -> Vec<Vec<u8>> {
        const CLAIM: [u8; 4] = [0xff; 4];
        let claims: Vec<Vec<u8>> = [0xdb, 0xc6, 0xdd, 0xdf, 0xc9]
            .iter()
            .map(|&marker| [&[marker][..], &CLAIM, b"\x01tail"].concat())
            .collect();
        let mut frames = Vec::new();
        for claim in &claims {
            // The whole body, a message id, a payload's data.
            frames.push([&[DATA][..], claim].concat());
            let mut in_id = message(Message::Flow);
            in_id.message_id = PLACEHOLDER.into();
            frames.push(splice(&encode_data(&in_id).unwrap(), claim));
            let in_data = message(Message::Any(Arc::new(json!(["x", PLACEHOLDER]))));
            frames.push(splice(&encode_data(&in_data).unwrap(), claim));
            // A chunk, a network id, a close reason.
            let empty = fragment_frame(true, b"");
            frames.push([&empty[..empty.len() - 2], claim].concat());
            let beat = Control::Heartbeat {
                network_id: PLACEHOLDER.into(),
                timestamp_ms: 1,
            };
            frames.push(splice(&encode_control(&beat), claim));
            let close = Control::Close {
                reason: PLACEHOLDER.into(),
            };
            frames.push(splice(&encode_control(&close), claim));
        }
        frames
    }

    #[test]
    fn hostile_length_prefixes_are_errors() {
        let frames = hostile_frames();
        assert_eq!(frames.len(), 30);
        for frame in frames {
            assert!(decode(&frame).is_err(), "{frame:?}");
        }
    }

    const CHILD: &str = "bridge::frame::tests::hostile_decodes_in_a_small_address_space";
    const CAPPED: &str = "REFLOW_FRAME_TEST_ADDRESS_SPACE_CAPPED";

    /// Decodes the hostile frames again in a child test process whose address
    /// space is capped at 1 GiB (`ulimit -v`), a quarter of what the claimed
    /// lengths ask: an allocation sized by a length prefix would abort it.
    #[cfg(target_os = "linux")]
    #[test]
    fn hostile_length_prefixes_do_not_allocate() {
        let test_binary = std::env::current_exe().unwrap();
        let output = std::process::Command::new("sh")
            .args(["-c", "ulimit -v 1048576 && exec \"$0\" \"$@\""])
            .arg(test_binary)
            .args(["--ignored", "--exact", CHILD, "--test-threads=1"])
            .env(CAPPED, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    #[ignore = "run by hostile_length_prefixes_do_not_allocate, under an address-space cap"]
    fn hostile_decodes_in_a_small_address_space() {
        if std::env::var_os(CAPPED).is_some() {
            // The cap is in force: 2 GiB cannot be had.
            assert!(Vec::<u8>::new().try_reserve_exact(2 << 30).is_err());
        }
        for frame in hostile_frames() {
            assert!(decode(&frame).is_err(), "{frame:?}");
        }
        let mut reassembly = Reassembly::new(1 << 20);
        for frame in hostile_frames() {
            let _ = reassembly.push(false, &frame);
        }
    }
}
