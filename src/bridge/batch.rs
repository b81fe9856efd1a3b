//! Protocol 1.1's BATCH frame (tag 8): many small at-most-once messages in
//! one binary frame, between two peers that both listed
//! [`CAPABILITY`] in the handshake (docs/protocol.md, section 3).
//!
//! ```text
//! 08  [entry, entry, …]                      one MessagePack array, 1 or more entries
//!     entry: [target_actor str, target_port str, source_actor str, payload bin]
//!     payload: a bin holding one MessagePack value, DATA's payload map
//! ```
//!
//! An entry carries no message id, timestamp or network ids: the source
//! network is the session's peer (proved in the handshake), the target
//! network the receiver. That is most of a small message's envelope, and of
//! the work to make and read it. The payload is nested in a bin so that a
//! reader knows each entry's length without decoding it: a credit costs by
//! entry bytes on both sides, and a payload that does not decode loses that
//! message only.
//!
//! A sender encodes each message as a complete one-entry BATCH frame
//! ([`encode_into`], into a buffer it reuses) and appends its entry to the
//! session's [`Gathering`], the frame in the making, up to [`MAX_BYTES`];
//! the writer takes that frame whole. A BATCH frame is never fragmented: a
//! message whose entry would not fit goes as a DATA frame instead.

use std::sync::Arc;

use tungstenite::Bytes;

use super::frame::{FRAGMENT_BYTES, FrameError, body_of, payload_len_hint};
use super::protocol::Outbound;
use crate::message::Message;
use crate::message::inline::Inline;

/// The frame's type tag.
pub(crate) const TAG: u8 = 8;

/// The capability both sides list (the dialer in its first frame, the
/// acceptor in its challenge) to receive BATCH frames.
pub(crate) const CAPABILITY: &str = "bridge-batch";

/// Most bytes of one BATCH frame: one fragment's worth, so a control frame
/// never waits behind more than one (64 KiB).
pub(crate) const MAX_BYTES: usize = FRAGMENT_BYTES;

/// Bytes before the entry in a frame from [`encode`]: the tag and a
/// one-element array header.
const ENTRY_AT: usize = 2;

/// The longest frame header [`join`] writes: the tag and an array32 header.
const HEADER_MAX: usize = 6;

/// Bytes of the bin header before a payload: the bin32 form, shrunk to the
/// smallest once the payload's length is known.
const BIN32_HEADER: usize = 5;

#[cfg(test)]
/// One message as a complete one-entry BATCH frame. Its entry's length
/// ([`entry_len`]) is what its credits cost.
///
/// # Errors
/// [`FrameError::Encode`] when the payload cannot be encoded.
pub(crate) fn encode(parts: &Outbound<'_>, payload: &Message) -> Result<Vec<u8>, FrameError> {
    let mut frame = Vec::with_capacity(32 + least_len(parts, payload));
    encode_into(&mut frame, parts, payload)?;
    Ok(frame)
}

/// As [`encode`], into `frame`, which is cleared first: a sender reuses
/// one buffer for all its messages.
///
/// # Errors
/// [`FrameError::Encode`] when the payload cannot be encoded.
pub(crate) fn encode_into(
    frame: &mut Vec<u8>,
    parts: &Outbound<'_>,
    payload: &Message,
) -> Result<(), FrameError> {
    frame.clear();
    frame.reserve(32 + least_len(parts, payload));
    frame.extend_from_slice(&[TAG, 0x91]);
    let encoded = (|| {
        rmp::encode::write_array_len(frame, 4)?;
        rmp::encode::write_str(frame, parts.target_actor)?;
        rmp::encode::write_str(frame, parts.target_port)?;
        rmp::encode::write_str(frame, parts.source_actor)?;
        Ok::<(), rmp::encode::ValueWriteError>(())
    })();
    encoded.map_err(|err| FrameError::Encode(err.to_string()))?;
    let at = frame.len();
    frame.extend_from_slice(&[0; BIN32_HEADER]);
    rmp_serde::encode::write_named(frame, &Inline(payload))
        .map_err(|err| FrameError::Encode(err.to_string()))?;
    let len = frame.len() - at - BIN32_HEADER;
    let len = u32::try_from(len).map_err(|_| FrameError::Encode(format!("payload of {len} bytes")))?;
    let mut header = [0u8; BIN32_HEADER];
    let mut rest = &mut header[..];
    rmp::encode::write_bin_len(&mut rest, len).map_err(|err| FrameError::Encode(err.to_string()))?;
    let header_len = BIN32_HEADER - rest.len();
    // Smallest form: move the payload up to the end of the real header.
    frame.copy_within(at + BIN32_HEADER.., at + header_len);
    frame.truncate(frame.len() - (BIN32_HEADER - header_len));
    frame[at..at + header_len].copy_from_slice(&header[..header_len]);
    Ok(())
}

/// At most the length of the entry of `parts` and `payload`: its names and
/// its text or bytes, without the MessagePack headers around them.
fn least_len(parts: &Outbound<'_>, payload: &Message) -> usize {
    parts.target_actor.len() + parts.target_port.len() + parts.source_actor.len() + payload_len_hint(payload)
}

/// The length of the entry in a frame from [`encode`]: what its credits cost.
pub(crate) fn entry_len(frame: &[u8]) -> usize {
    frame.len().saturating_sub(ENTRY_AT)
}

/// Whether a message may fit a batch of at most `limit` bytes, before it is
/// encoded: false when its names and text or bytes alone are too long, so a
/// large message is encoded once, as a DATA frame, not twice.
pub(crate) fn may_fit(parts: &Outbound<'_>, payload: &Message, limit: usize) -> bool {
    joins_within(least_len(parts, payload), limit)
}

/// Whether a frame from [`encode`] can go in a BATCH frame no larger than
/// `limit` bytes (the smaller of [`MAX_BYTES`] and the peer's stated
/// largest message).
pub(crate) fn fits(frame: &[u8], limit: usize) -> bool {
    joins_within(entry_len(frame), limit)
}

/// Whether an entry of `len` bytes fits a BATCH frame of at most `limit`
/// bytes (and at most [`MAX_BYTES`]), with any frame header.
fn joins_within(len: usize, limit: usize) -> bool {
    len + HEADER_MAX <= limit.min(MAX_BYTES)
}

/// A BATCH frame in the making: the senders of a session append their
/// messages' entries ([`Gathering::push`]) and the writer takes the frame
/// whole ([`Gathering::take`]). Room for the longest header is kept in
/// front of the entries, so taking the frame copies nothing.
pub(crate) struct Gathering {
    /// `HEADER_MAX` bytes of room, then the entries.
    frame: Vec<u8>,
    count: usize,
}

impl Default for Gathering {
    fn default() -> Gathering {
        Gathering {
            frame: vec![0; HEADER_MAX],
            count: 0,
        }
    }
}

impl Gathering {
    /// How many entries it holds.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Whether the entry of `one` (a frame from [`encode`]) joins these in
    /// a frame of at most `limit` bytes (and [`MAX_BYTES`]). An empty
    /// gathering takes any entry that [`fits`].
    pub(crate) fn has_room(&self, one: &[u8], limit: usize) -> bool {
        self.count == 0 || self.frame.len() + entry_len(one) <= limit.min(MAX_BYTES)
    }

    /// Appends the entry of `one`, a frame from [`encode`].
    pub(crate) fn push(&mut self, one: &[u8]) {
        self.frame
            .extend_from_slice(one.get(ENTRY_AT..).unwrap_or_default());
        self.count += 1;
    }

    /// The entries as one BATCH frame, and how many they are; `None` when
    /// there are none. Leaves it empty, with room for as many bytes again.
    pub(crate) fn take(&mut self) -> Option<(Bytes, usize)> {
        if self.count == 0 {
            return None;
        }
        let mut header = [0u8; HEADER_MAX];
        header[0] = TAG;
        let mut rest = &mut header[1..];
        let count = u32::try_from(self.count).unwrap_or(u32::MAX);
        // Five bytes always hold an array header.
        let _ = rmp::encode::write_array_len(&mut rest, count);
        let header_len = HEADER_MAX - rest.len();
        let start = HEADER_MAX - header_len;
        self.frame[start..HEADER_MAX].copy_from_slice(&header[..header_len]);
        let mut next = Vec::with_capacity(self.frame.len());
        next.resize(HEADER_MAX, 0);
        let frame = std::mem::replace(&mut self.frame, next);
        let count = std::mem::take(&mut self.count);
        Some((Bytes::from(frame).slice(start..), count))
    }
}

/// One message read from a BATCH frame. Its names borrow the frame.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) target_actor: &'a str,
    pub(crate) target_port: &'a str,
    pub(crate) source_actor: &'a str,
    /// The payload, or why it does not decode (that message is lost, the
    /// frame's other messages are not).
    pub(crate) payload: Result<Message, FrameError>,
    /// The entry's encoded length: what its credits cost.
    pub(crate) len: usize,
}

/// The entries of a BATCH frame (`frame` starts with its tag), in order.
/// A frame whose structure breaks yields that error once and then ends:
/// what follows a broken entry cannot be found.
///
/// # Errors
/// [`FrameError::BadBody`] when the frame is not a non-empty array.
pub(crate) fn entries(frame: &[u8]) -> Result<Entries<'_>, FrameError> {
    let mut rest = match frame.split_first() {
        Some((&TAG, body)) => body,
        _ => return Err(bad("not a BATCH frame")),
    };
    let count = rmp::decode::read_array_len(&mut rest).map_err(|err| bad(&err.to_string()))?;
    if count == 0 {
        return Err(bad("no entries"));
    }
    Ok(Entries {
        rest,
        left: count,
        abandoned: 0,
        previous: ["", "", ""],
    })
}

/// Iterator of [`entries`].
pub(crate) struct Entries<'a> {
    rest: &'a [u8],
    left: u32,
    /// Entries lost to a broken structure, the broken one included.
    abandoned: u32,
    /// The last entry's names: a stream repeats them, and bytes equal to
    /// text already checked need no second UTF-8 check.
    previous: [&'a str; 3],
}

impl Entries<'_> {
    /// How many of the announced entries a broken structure lost (the
    /// broken one included); 0 while the frame reads well.
    pub(crate) fn abandoned(&self) -> u32 {
        self.abandoned
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            if self.rest.is_empty() {
                return None;
            }
            self.rest = &[];
            return Some(Err(bad("bytes after the last entry")));
        }
        self.left -= 1;
        let read = self.read();
        if read.is_err() {
            self.abandoned = self.left + 1;
            self.left = 0;
            self.rest = &[];
        }
        Some(read)
    }
}

impl<'a> Entries<'a> {
    fn read(&mut self) -> Result<Entry<'a>, FrameError> {
        let start = self.rest.len();
        let fields = rmp::decode::read_array_len(&mut self.rest).map_err(|err| bad(&err.to_string()))?;
        if fields != 4 {
            return Err(bad(&format!("an entry of {fields} fields, not 4")));
        }
        let target_actor = self.name(0)?;
        let target_port = self.name(1)?;
        let source_actor = self.name(2)?;
        let len = rmp::decode::read_bin_len(&mut self.rest).map_err(|err| bad(&err.to_string()))? as usize;
        let Some((payload, rest)) = self.rest.split_at_checked(len) else {
            return Err(bad("payload past the end of the frame"));
        };
        self.rest = rest;
        Ok(Entry {
            target_actor,
            target_port,
            source_actor,
            payload: decode_payload(payload),
            len: start - self.rest.len(),
        })
    }

    /// The next str, the `field`th name of an entry.
    fn name(&mut self, field: usize) -> Result<&'a str, FrameError> {
        let len = rmp::decode::read_str_len(&mut self.rest).map_err(|err| bad(&err.to_string()))? as usize;
        let Some((bytes, rest)) = self.rest.split_at_checked(len) else {
            return Err(bad("a name past the end of the frame"));
        };
        self.rest = rest;
        if bytes == self.previous[field].as_bytes() {
            return Ok(self.previous[field]);
        }
        let text = std::str::from_utf8(bytes).map_err(|err| bad(&err.to_string()))?;
        self.previous[field] = text;
        Ok(text)
    }
}

/// A payload map. Text (`{"type": "String", "data": str}`), the most
/// common kind, is read by its headers alone; any other map, and anything
/// that does not read so, goes through the general decoder, which has the
/// last word on what is valid.
fn decode_payload(bytes: &[u8]) -> Result<Message, FrameError> {
    if let Some(text) = plain_text(bytes) {
        return Ok(Message::String(Arc::from(text)));
    }
    body_of(TAG, bytes)
}

/// `{"type": "String", "data": ` as rmp-serde writes it: a two-entry
/// fixmap and three fixstrs.
const TEXT_HEAD: &[u8] = b"\x82\xa4type\xa6String\xa4data";

/// The text of `{"type": "String", "data": str}` when `bytes` is exactly
/// that, in the form rmp-serde writes (any other form goes to the general
/// decoder): only the text itself is checked as UTF-8.
fn plain_text(bytes: &[u8]) -> Option<&str> {
    let rest = bytes.strip_prefix(TEXT_HEAD)?;
    let (text, rest) = rmp::decode::read_str_from_slice(rest).ok()?;
    rest.is_empty().then_some(text)
}

fn bad(reason: &str) -> FrameError {
    FrameError::BadBody {
        tag: TAG,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::message::Message;

    /// A message from `src` to `actor.port` in network `beta`.
    fn parts<'a>(actor: &'a str, port: &'a str) -> Outbound<'a> {
        Outbound {
            source_actor: "src",
            target_network: "beta",
            target_actor: actor,
            target_port: port,
        }
    }

    fn one(actor: &str, port: &str, text: &str) -> Vec<u8> {
        encode(&parts(actor, port), &Message::String(Arc::from(text))).unwrap()
    }

    /// One frame of the entries of `frames`, as the writer takes it.
    fn join(frames: Vec<Vec<u8>>) -> Vec<u8> {
        let mut gathering = Gathering::default();
        for frame in &frames {
            assert!(gathering.has_room(frame, MAX_BYTES));
            gathering.push(frame);
        }
        let (frame, count) = gathering.take().unwrap();
        assert_eq!(count, frames.len());
        assert_eq!(gathering.count(), 0);
        frame.to_vec()
    }

    /// An entry's names, payload and length, owned.
    type Read = (String, String, String, Message, usize);

    fn read(frame: &[u8]) -> Vec<Result<Read, FrameError>> {
        entries(frame)
            .unwrap()
            .map(|entry| {
                entry.and_then(|e| {
                    Ok((
                        e.target_actor.to_string(),
                        e.target_port.to_string(),
                        e.source_actor.to_string(),
                        e.payload?,
                        e.len,
                    ))
                })
            })
            .collect()
    }

    #[test]
    fn an_encoded_message_is_a_batch_of_one_that_reads_back() {
        let frame = one("sink", "in", "hello");
        let got = read(&frame);
        assert_eq!(got.len(), 1);
        let (actor, port, source, payload, len) = got[0].clone().unwrap();
        assert_eq!(
            (actor.as_str(), port.as_str(), source.as_str()),
            ("sink", "in", "src")
        );
        assert_eq!(payload, Message::String(Arc::from("hello")));
        assert_eq!(len, entry_len(&frame));
    }

    #[test]
    fn joined_frames_read_back_in_order_with_each_entrys_length() {
        let texts: Vec<String> = (0..20).map(|i| "x".repeat(i * 13)).collect();
        let frames: Vec<Vec<u8>> = texts.iter().map(|t| one("sink", "in", t)).collect();
        let lens: Vec<usize> = frames.iter().map(|f| entry_len(f)).collect();
        let total: usize = lens.iter().sum();
        let joined = join(frames);
        assert!(joined.len() <= total + HEADER_MAX);
        let got = read(&joined);
        assert_eq!(got.len(), texts.len());
        for ((entry, text), len) in got.into_iter().zip(&texts).zip(lens) {
            let (_, _, _, payload, entry_len) = entry.unwrap();
            assert_eq!(payload, Message::String(Arc::from(text.as_str())));
            assert_eq!(entry_len, len);
        }
    }

    #[test]
    fn a_gathering_of_one_is_the_frame_encode_makes() {
        let frame = one("sink", "in", "hello");
        let mut gathering = Gathering::default();
        assert!(gathering.take().is_none());
        gathering.push(&frame);
        let (taken, count) = gathering.take().unwrap();
        assert_eq!((&taken[..], count), (&frame[..], 1));
        // Empty again, and reusable.
        assert!(gathering.take().is_none());
        gathering.push(&frame);
        assert_eq!(gathering.take().unwrap().0, frame);
    }

    #[test]
    fn a_gathering_takes_the_smallest_array_header_for_its_count() {
        for (count, header) in [
            (2, vec![TAG, 0x92]),
            (15, vec![TAG, 0x9f]),
            (16, vec![TAG, 0xdc, 0, 16]),
        ] {
            let frames: Vec<Vec<u8>> = (0..count).map(|i| one("a", "b", &i.to_string())).collect();
            let joined = join(frames.clone());
            assert_eq!(joined[..header.len()], header[..], "{count} entries");
            let body: usize = frames.iter().map(|f| entry_len(f)).sum();
            assert_eq!(joined.len(), header.len() + body);
            assert_eq!(read(&joined).len(), count);
        }
    }

    #[test]
    fn a_gathering_stays_within_its_limit() {
        let frame = one("sink", "in", &"x".repeat(100));
        for limit in [200, 1024, 4096, MAX_BYTES, usize::MAX] {
            let mut gathering = Gathering::default();
            gathering.push(&frame);
            while gathering.has_room(&frame, limit) {
                gathering.push(&frame);
            }
            let (taken, count) = gathering.take().unwrap();
            assert!(
                taken.len() <= limit.min(MAX_BYTES),
                "{} bytes in {limit}",
                taken.len()
            );
            // One entry more would not have fitted.
            assert!(taken.len() + entry_len(&frame) > limit.min(MAX_BYTES) - HEADER_MAX || count == 1);
            assert_eq!(read(&taken).len(), count);
        }
    }

    #[test]
    fn the_payload_bin_takes_its_smallest_form_at_every_edge() {
        // Payload maps just under and over 255 and 65,535 bytes.
        for size in [0, 200, 240, 250, 260, 65_500, 65_530, 65_540, 70_000] {
            let frame = one("a", "b", &"y".repeat(size));
            let got = read(&frame);
            let (_, _, _, payload, _) = got[0].clone().unwrap();
            assert_eq!(payload, Message::String(Arc::from("y".repeat(size).as_str())));
            let mut rest = &frame[ENTRY_AT + 1 + 2 + 2 + 4..];
            let marker = rmp::decode::read_marker(&mut rest).unwrap();
            let payload_len = frame.len()
                - (ENTRY_AT + 1 + 2 + 2 + 4)
                - match marker {
                    rmp::Marker::Bin8 => 2,
                    rmp::Marker::Bin16 => 3,
                    _ => 5,
                };
            let expected = match payload_len {
                0..=0xff => rmp::Marker::Bin8,
                0x100..=0xffff => rmp::Marker::Bin16,
                _ => rmp::Marker::Bin32,
            };
            assert_eq!(marker, expected, "payload of {payload_len} bytes");
        }
    }

    #[test]
    fn a_payload_that_does_not_decode_loses_its_message_only() {
        let good = one("sink", "in", "before");
        let mut broken = one("sink", "in", "zz");
        // The payload map's "type" value ("String") becomes an unknown kind.
        let at = broken.windows(6).position(|w| w == b"String").unwrap();
        broken[at..at + 6].copy_from_slice(b"Strong");
        let after = one("sink", "in", "after");
        let got = read(&join(vec![good, broken, after]));
        assert_eq!(got.len(), 3);
        assert!(got[0].is_ok());
        assert!(matches!(&got[1], Err(FrameError::BadBody { tag: TAG, .. })));
        assert_eq!(got[2].as_ref().unwrap().3, Message::String(Arc::from("after")));
    }

    #[test]
    fn a_broken_structure_ends_the_frame_with_one_error() {
        let joined = join(vec![one("a", "b", "1"), one("a", "b", "2"), one("a", "b", "3")]);
        // Cut inside the second entry.
        let cut = &joined[..joined.len() - entry_len(&one("a", "b", "3")) - 3];
        let got = read(cut);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert!(got[1].is_err());
        // Not UTF-8 in a name.
        let mut bad_name = one("ab", "in", "x");
        let at = bad_name.windows(2).position(|w| w == b"ab").unwrap();
        bad_name[at] = 0xff;
        assert!(read(&bad_name)[0].is_err());
        // Bytes after the last entry.
        let mut trailing = one("a", "b", "1");
        trailing.push(0xc0);
        let got = read(&trailing);
        assert_eq!(got.len(), 2);
        assert!(got[1].is_err());
    }

    #[test]
    fn a_frame_without_entries_or_of_another_kind_is_refused() {
        assert!(entries(&[TAG, 0x90]).is_err());
        assert!(entries(&[TAG]).is_err());
        assert!(entries(&[1, 0x91]).is_err());
        assert!(entries(&[]).is_err());
        // A count far beyond the bytes ends at the first entry that is not there.
        let mut frame = vec![TAG, 0xdd, 0xff, 0xff, 0xff, 0xff];
        frame.extend_from_slice(&one("a", "b", "1")[ENTRY_AT..]);
        let got = read(&frame);
        assert_eq!(got.len(), 2);
        assert!(got[1].is_err());
    }

    #[test]
    fn the_text_shortcut_reads_what_the_general_decoder_reads() {
        use serde_json::json;
        let messages = [
            Message::String(Arc::from("")),
            Message::String(Arc::from("hello")),
            Message::String(Arc::from("é".repeat(300).as_str())),
            Message::Error(Arc::from("boom")),
            Message::Integer(7),
            Message::Flow,
            Message::Bytes(Arc::from(&b"bin"[..])),
            Message::Object(Arc::new(
                json!({"type": "String", "data": "x"})
                    .as_object()
                    .unwrap()
                    .clone(),
            )),
        ];
        for message in messages {
            let mut bytes = Vec::new();
            rmp_serde::encode::write_named(&mut bytes, &Inline(&message)).unwrap();
            let general: Message = body_of(TAG, &bytes).unwrap();
            assert_eq!(decode_payload(&bytes).unwrap(), general);
            // Text as rmp-serde writes it takes the shortcut.
            if let Message::String(text) = &message {
                assert_eq!(plain_text(&bytes), Some(&**text));
            }
            assert_eq!(general, message);
            // Every prefix and one byte more: the same answer from both, or both refuse.
            for cut in 0..bytes.len() {
                let short = &bytes[..cut];
                assert_eq!(
                    decode_payload(short).ok(),
                    body_of::<Message>(TAG, short).ok(),
                    "{message:?} cut at {cut}"
                );
            }
            let mut long = bytes.clone();
            long.push(0xc0);
            assert!(decode_payload(&long).is_err());
        }
        // Not UTF-8 in the text: refused by both.
        let mut bytes = Vec::new();
        rmp_serde::encode::write_named(&mut bytes, &Inline(&Message::String(Arc::from("ab")))).unwrap();
        let at = bytes.len() - 2;
        bytes[at] = 0xff;
        assert!(decode_payload(&bytes).is_err());
        assert!(body_of::<Message>(TAG, &bytes).is_err());
    }

    #[test]
    fn fits_keeps_a_joined_frame_within_both_limits() {
        let small = one("a", "b", "x");
        assert!(fits(&small, MAX_BYTES));
        let big = one("a", "b", &"x".repeat(MAX_BYTES));
        assert!(!fits(&big, usize::MAX));
        let mid = one("a", "b", &"x".repeat(2000));
        assert!(!fits(&mid, 1024));
        assert!(fits(&mid, 4096));
        // The check before encoding never refuses what would fit.
        for size in [0, 100, 2000, MAX_BYTES - 200, MAX_BYTES - 20, MAX_BYTES] {
            let text = Message::String(Arc::from("x".repeat(size).as_str()));
            let frame = encode(&parts("a", "b"), &text).unwrap();
            for limit in [1024, 4096, MAX_BYTES, usize::MAX] {
                if fits(&frame, limit) {
                    assert!(may_fit(&parts("a", "b"), &text, limit), "{size} in {limit}");
                }
            }
        }
        assert!(!may_fit(
            &parts("a", "b"),
            &Message::String(Arc::from("x".repeat(MAX_BYTES).as_str())),
            usize::MAX
        ));
    }
}
