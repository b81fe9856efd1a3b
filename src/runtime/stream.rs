//! In-process streams: a message can carry a `StreamHandle` whose frames
//! (begin / data / end / error) another actor reads through a bounded channel.
//! Streams never cross processes; only the handle's metadata goes on the wire,
//! and a handle decoded from the wire has no reader.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError, bounded};
use serde_json::{Value, json};

static NEXT_STREAM_ID: AtomicU64 = AtomicU64::new(1);

/// One unit of a stream.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamFrame {
    /// Opens the stream with free-form metadata (content type, size hint…).
    Begin(Value),
    /// A chunk of the stream's bytes.
    Data(Arc<[u8]>),
    /// The stream finished; nothing follows.
    End,
    /// The writer failed; nothing follows. The text says why.
    Error(String),
}

/// Why a stream operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// The handle came from another process: its frames are not here.
    NotLocal,
    /// The reader is gone (on write) or every writer is gone (on read).
    Closed,
    /// The stream's buffer stayed full (write) or empty (read) for the whole timeout.
    Timeout,
    /// The buffer is full right now (`try_send`).
    Full,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamError::NotLocal => {
                "stream handle refers to a stream in another process; streams never cross the bridge"
            }
            StreamError::Closed => "stream closed by the other side",
            StreamError::Timeout => "stream operation timed out",
            StreamError::Full => "stream buffer is full",
        })
    }
}

impl std::error::Error for StreamError {}

/// Creates a stream whose buffer holds at most `capacity` frames.
pub fn stream_channel(capacity: usize, metadata: Value) -> (StreamWriter, StreamHandle) {
    let (tx, rx) = bounded(capacity.max(1));
    let id = NEXT_STREAM_ID.fetch_add(1, Ordering::Relaxed);
    let handle = StreamHandle {
        id,
        metadata: Arc::new(metadata),
        frames: Some(rx),
    };
    (StreamWriter { frames: tx }, handle)
}

/// The producing end of a stream.
pub struct StreamWriter {
    frames: Sender<StreamFrame>,
}

impl StreamWriter {
    /// Sends a frame, waiting up to `timeout` for room in the buffer.
    ///
    /// # Errors
    ///
    /// [`StreamError::Timeout`] when the buffer stayed full,
    /// [`StreamError::Closed`] when the reader is gone.
    pub fn send(&self, frame: StreamFrame, timeout: Duration) -> Result<(), StreamError> {
        self.frames.send_timeout(frame, timeout).map_err(|e| match e {
            SendTimeoutError::Timeout(_) => StreamError::Timeout,
            SendTimeoutError::Disconnected(_) => StreamError::Closed,
        })
    }

    /// Sends a frame if the buffer has room now (for actors on the shared pool,
    /// which must not block).
    ///
    /// # Errors
    ///
    /// [`StreamError::Full`] when the buffer is full now,
    /// [`StreamError::Closed`] when the reader is gone.
    pub fn try_send(&self, frame: StreamFrame) -> Result<(), StreamError> {
        self.frames.try_send(frame).map_err(|e| match e {
            TrySendError::Full(_) => StreamError::Full,
            TrySendError::Disconnected(_) => StreamError::Closed,
        })
    }
}

/// A cheap, clonable reference to a stream, carried by `Message::StreamHandle`.
#[derive(Clone)]
pub struct StreamHandle {
    id: u64,
    metadata: Arc<Value>,
    frames: Option<Receiver<StreamFrame>>,
}

impl StreamHandle {
    /// A number unique within this process (counted from 1).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The metadata given to [`stream_channel`]; it is what crosses the wire.
    pub fn metadata(&self) -> &Value {
        &self.metadata
    }

    /// Whether the frames live in this process.
    pub fn is_local(&self) -> bool {
        self.frames.is_some()
    }

    /// Receives the next frame, waiting up to `timeout`. Frames are shared by
    /// every clone of the handle: one actor should read a stream.
    ///
    /// # Errors
    ///
    /// [`StreamError::NotLocal`] for a handle that came over the wire,
    /// [`StreamError::Timeout`] when nothing came in time,
    /// [`StreamError::Closed`] when every writer is gone.
    pub fn recv(&self, timeout: Duration) -> Result<StreamFrame, StreamError> {
        let frames = self.frames.as_ref().ok_or(StreamError::NotLocal)?;
        frames.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => StreamError::Timeout,
            RecvTimeoutError::Disconnected => StreamError::Closed,
        })
    }

    /// The handle's wire form: `{"stream_id": N, "metadata": …}`.
    pub(crate) fn metadata_value(&self) -> Value {
        json!({"stream_id": self.id, "metadata": *self.metadata})
    }

    /// A handle decoded from the wire: metadata only, no frames.
    pub(crate) fn from_metadata(value: Value) -> Self {
        let id = value.get("stream_id").and_then(Value::as_u64).unwrap_or(0);
        let metadata = value.get("metadata").cloned().unwrap_or(Value::Null);
        StreamHandle {
            id,
            metadata: Arc::new(metadata),
            frames: None,
        }
    }
}

impl PartialEq for StreamHandle {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.is_local() == other.is_local()
    }
}

impl fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamHandle({}, local: {})", self.id, self.is_local())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn frames_arrive_in_order() {
        let (writer, handle) = stream_channel(4, json!({"content_type": "text/plain"}));
        writer.send(StreamFrame::Begin(json!({})), WAIT).unwrap();
        writer
            .send(StreamFrame::Data(b"abc".to_vec().into()), WAIT)
            .unwrap();
        writer.send(StreamFrame::End, WAIT).unwrap();
        assert_eq!(handle.recv(WAIT).unwrap(), StreamFrame::Begin(json!({})));
        assert_eq!(
            handle.recv(WAIT).unwrap(),
            StreamFrame::Data(b"abc".to_vec().into())
        );
        assert_eq!(handle.recv(WAIT).unwrap(), StreamFrame::End);
    }

    #[test]
    fn buffer_is_bounded() {
        let (writer, _handle) = stream_channel(1, Value::Null);
        writer.try_send(StreamFrame::End).unwrap();
        assert_eq!(writer.try_send(StreamFrame::End), Err(StreamError::Full));
    }

    #[test]
    fn handle_from_the_wire_has_no_frames() {
        let (_writer, handle) = stream_channel(1, json!({"k": 1}));
        let remote = StreamHandle::from_metadata(handle.metadata_value());
        assert_eq!(remote.id(), handle.id());
        assert_eq!(remote.recv(WAIT), Err(StreamError::NotLocal));
    }

    #[test]
    fn reader_sees_closed_when_writer_drops() {
        let (writer, handle) = stream_channel(1, Value::Null);
        drop(writer);
        assert_eq!(handle.recv(WAIT), Err(StreamError::Closed));
    }
}
