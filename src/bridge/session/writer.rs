//! The writer thread of a session (`bridge-writer-<network>`), the only code
//! that writes to the socket. It serves the control lane before the data
//! lane, and looks at the control lane again between data frames and between
//! the fragments of a large message, so a heartbeat, a Pong or a Close never
//! waits behind data. It writes everything queued and flushes when the data
//! lane runs empty: a flush per frame would cost the receiver a wake-up per
//! message.
//!
//! A write that times out (the peer reads slowly: TCP backpressure) is
//! retried; the timeout only lets the writer notice that the session was
//! aborted or that its close is overdue.
//!
//! The socket lives in the session ([`Session::socket`]): the writer holds it
//! while it writes, and lends it between batches to a sender that finds the
//! session idle (`Session::send`). The writer alone ends it, after its Close.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use tungstenite::error::Error as WsError;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Bytes, Message as WsMessage};

use super::state::{CloseReason, LINGER_BELOW, LINGER_BYTES, Lanes, Outgoing, Session, Wire, WriteSocket};
use crate::bridge::events::lock;
use crate::bridge::frame::{self, Control};
use crate::bridge::protocol::heartbeat_text;
use crate::bridge::stats::bump;
use crate::bridge::stream::is_timeout;

type Ws = WriteSocket;

/// Whether the writer goes on after serving the control lane.
enum Next {
    Continue,
    Closed,
}

/// The writer's main loop.
pub(crate) fn run(session: &Session, lanes: Lanes) {
    session.doorbell.attach();
    let tick = session.tick();
    let outcome = loop {
        if session.is_aborted() || session.close_overdue() {
            break Ok(());
        }
        match serve_between_batches(session, &lanes) {
            Ok(Next::Continue) => {}
            Ok(Next::Closed) => break Ok(()),
            Err(err) => break Err(err),
        }
        let written = {
            let mut socket = lock(&session.socket);
            let Some(ws) = socket.as_mut() else { break Ok(()) };
            write_data(session, ws, &lanes)
        };
        match written {
            // Wrote, and a stream may be under way: let more of it gather
            // (`BridgeConfig::write_linger`), then look at the control lane
            // and the data again.
            Ok(Some(bytes)) => {
                let linger = session.context.write_linger;
                if !linger.is_zero() && bytes < LINGER_BYTES && session.queued() < LINGER_BELOW {
                    session.doorbell.linger(linger);
                }
            }
            Ok(None) => session.doorbell.wait(tick),
            Err(err) => break Err(err),
        }
    };
    // Nothing is written after this: a sender that finds no socket queues,
    // and the teardown counts what is queued as lost.
    lock(&session.socket).take();
    if let Err(err) = outcome {
        if !session.is_aborted() {
            log::debug!("Write to network {} failed: {err}", session.network_id());
        }
        session.abort(CloseReason::Failed(format!("write failed: {err}")));
    }
}

/// With the socket held: the control lane, the outbox, and what a
/// write-through left in the socket's buffer.
fn serve_between_batches(session: &Session, lanes: &Lanes) -> Result<Next, WsError> {
    let mut socket = lock(&session.socket);
    let Some(ws) = socket.as_mut() else {
        return Ok(Next::Closed);
    };
    session.writer_timeout(ws)?;
    if let Next::Closed = serve_control(session, ws, lanes, true)? {
        return Ok(Next::Closed);
    }
    pump_outbox(session, ws, lanes)?;
    if session.needs_flush.swap(false, Ordering::SeqCst) {
        flush(session, ws)?;
    }
    Ok(Next::Continue)
}

/// Writes every queued control frame and flushes. A Close is written only
/// when `may_close` (between batches): after the data queued before it.
fn serve_control(session: &Session, ws: &mut Ws, lanes: &Lanes, may_close: bool) -> Result<Next, WsError> {
    if !session.control_pending() {
        return Ok(Next::Continue);
    }
    let control = session.take_control();
    let mut wrote = false;
    if let Some(data) = control.pong {
        write_frame(session, ws, WsMessage::Pong(data))?;
        wrote = true;
    }
    if control.ping {
        write_frame(session, ws, WsMessage::Ping(Bytes::new()))?;
        wrote = true;
    }
    if control.heartbeat {
        write_frame(session, ws, heartbeat_frame(session))?;
        wrote = true;
    }
    if let Some(delivery) = &session.delivery {
        // With a heartbeat too, for messages consumed after their own
        // session ended, which asked that session for the acknowledgement.
        if control.ack || (control.heartbeat && delivery.log.unsaid()) {
            // Built now, so it says the latest that is known.
            let (through, except) = delivery.log.ack();
            let ack = Control::Ack { through, except };
            write_frame(session, ws, WsMessage::binary(frame::encode_control(&ack)))?;
            wrote = true;
        }
        for (target, grant) in control.credits {
            let credit = Control::Credit {
                target: target.to_string(),
                grant,
            };
            write_frame(session, ws, WsMessage::binary(frame::encode_control(&credit)))?;
            wrote = true;
        }
    }
    if let Some(reason) = control.close {
        if !may_close {
            // Put it back for the end of this batch.
            session.control(|c| c.close = Some(reason));
        } else {
            close(session, ws, lanes, reason)?;
            return Ok(Next::Closed);
        }
    }
    if wrote {
        flush(session, ws)?;
    }
    Ok(Next::Continue)
}

fn heartbeat_frame(session: &Session) -> WsMessage {
    let local = &session.context.local_network;
    match session.peer.wire {
        Wire::V10 => WsMessage::text(heartbeat_text(local)),
        Wire::V11 { .. } => {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            WsMessage::binary(frame::encode_control(&Control::Heartbeat {
                network_id: local.clone(),
                timestamp_ms: millis,
            }))
        }
    }
}

/// Writes what the network's outbox has for this session (acknowledged
/// delivery: new messages and replays, within the acknowledgement window),
/// then flushes.
fn pump_outbox(session: &Session, ws: &mut Ws, lanes: &Lanes) -> Result<(), WsError> {
    let Some(delivery) = &session.delivery else {
        return Ok(());
    };
    let mut wrote = false;
    while let Some(frame) = delivery.outbox.next_frame(session.id) {
        write_item(session, ws, Outgoing::Binary(frame), lanes)?;
        serve_control(session, ws, lanes, false)?;
        wrote = true;
    }
    if wrote {
        flush(session, ws)?;
    }
    Ok(())
}

/// Writes everything on the data lane and in the gathering, serving the
/// control lane between frames, then flushes. The bytes of the frames it
/// wrote; `None` when there was nothing to write.
fn write_data(session: &Session, ws: &mut Ws, lanes: &Lanes) -> Result<Option<usize>, WsError> {
    // Before a frame is taken: one taken and then not written is lost.
    session.writer_timeout(ws)?;
    let Some(first) = session.next_data(&lanes.data) else {
        return Ok(None);
    };
    let mut bytes = 0;
    let mut next = Some(first);
    while let Some(item) = next.take().or_else(|| session.next_data(&lanes.data)) {
        bytes += item.len();
        write_lane_item(session, ws, item, lanes)?;
    }
    flush(session, ws)?;
    session.data_written();
    Ok(Some(bytes))
}

/// A frame from the data lane: written, its messages no longer count as
/// unwritten; if its write fails they are lost with the connection. Then
/// the control lane, whose failure loses nothing of this frame.
fn write_lane_item(session: &Session, ws: &mut Ws, item: Outgoing, lanes: &Lanes) -> Result<(), WsError> {
    let messages = item.messages();
    write_item(session, ws, item, lanes).inspect_err(|_| {
        session
            .lost_by_writer
            .fetch_add(messages as u64, Ordering::SeqCst);
    })?;
    session.unwritten.fetch_sub(messages, Ordering::SeqCst);
    session.room_made(false);
    serve_control(session, ws, lanes, false)?;
    Ok(())
}

/// Writes one frame (a large DATA frame in fragments, the control lane
/// served between them) and counts its messages as sent.
fn write_item(session: &Session, ws: &mut Ws, item: Outgoing, lanes: &Lanes) -> Result<(), WsError> {
    let messages = item.messages() as u64;
    match item {
        Outgoing::Text(text) => write_frame(session, ws, WsMessage::text(text))?,
        // A BATCH frame is gathered within a fragment.
        Outgoing::Batch { frame, .. } => write_frame(session, ws, WsMessage::binary(frame))?,
        Outgoing::Binary(bytes) if bytes.len() <= frame::FRAGMENT_BYTES => {
            write_frame(session, ws, WsMessage::binary(bytes))?
        }
        Outgoing::Binary(bytes) => {
            for piece in frame::fragments(bytes, frame::FRAGMENT_BYTES) {
                write_frame(session, ws, WsMessage::binary(piece))?;
                serve_control(session, ws, lanes, false)?;
            }
        }
    }
    bump(&session.context.stats.messages_sent, messages);
    bump(&session.context.link.messages_out, messages);
    Ok(())
}

fn write_frame(session: &Session, ws: &mut Ws, message: WsMessage) -> Result<(), WsError> {
    if let WsMessage::Text(_) | WsMessage::Binary(_) = &message {
        bump(&session.context.link.bytes_out, message.len() as u64);
    }
    match ws.write(message) {
        Ok(()) => Ok(()),
        Err(WsError::Io(err)) if is_timeout(&err) => flush(session, ws),
        Err(err) => Err(err),
    }
}

/// Flushes, retrying while the socket is merely slow.
fn flush(session: &Session, ws: &mut Ws) -> Result<(), WsError> {
    loop {
        match ws.flush() {
            Ok(()) => return Ok(()),
            Err(WsError::Io(err)) if is_timeout(&err) => {
                if session.is_aborted() || session.close_overdue() {
                    return Err(WsError::Io(err));
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// Writes what is queued, then the Close frame (a 1.1 CLOSE frame first when
/// the reason is longer than a WebSocket Close frame can carry), then
/// half-closes the socket.
fn close(session: &Session, ws: &mut Ws, lanes: &Lanes, reason: String) -> Result<(), WsError> {
    while let Some(item) = session.next_data(&lanes.data) {
        write_lane_item(session, ws, item, lanes)?;
    }
    let short = truncate(&reason, 123);
    if short.len() < reason.len() && matches!(session.peer.wire, Wire::V11 { .. }) {
        write_frame(
            session,
            ws,
            WsMessage::binary(frame::encode_control(&Control::Close {
                reason: reason.clone(),
            })),
        )?;
    }
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: short.to_string().into(),
    };
    match ws.close(Some(frame)) {
        Ok(()) | Err(WsError::ConnectionClosed) => {}
        Err(WsError::Io(err)) if is_timeout(&err) => flush(session, ws)?,
        Err(err) => return Err(err),
    }
    session.shutdown_write();
    Ok(())
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
