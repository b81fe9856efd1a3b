//! The reader thread of a session (`bridge-reader-<network>`): reads frames
//! and hands remote messages to the session's sink, in arrival order. It
//! returns why the socket ended; the session's teardown does the rest.
//!
//! The reader never writes: its `WebSocket` runs over a read-only stream, and
//! Ping answers go through the session's control lane to the writer.

use std::sync::Arc;

use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::{Message as WsMessage, WebSocket};

use super::state::{CloseReason, DUPLICATE_CLOSE, Session, SessionDelivery, Wire};
use super::targets::TargetSlot;
use crate::bridge::batch;
use crate::bridge::delivery::{Admit, cost};
use crate::bridge::error::DeliveryError;
use crate::bridge::frame::{self, Control, Frame, FrameError, Reassembly};
use crate::bridge::protocol::{FrameProblem, Inbound, RemoteMessage, parse_frame};
use crate::bridge::sink::{Arrival, Tracking};
use crate::bridge::stats::bump;
use crate::bridge::stream::WsStream;
use crate::bridge::stream::is_timeout;
use crate::names::escaped;
use crate::runtime::{Room, with_turns_deferred};

/// Reads until the socket ends; returns why.
pub(crate) fn run(session: &Arc<Session>, mut ws: WebSocket<WsStream>) -> CloseReason {
    let mut reassembly = Reassembly::new(session.context.max_message_bytes);
    // A 1.1 CLOSE frame carries a reason longer than the WebSocket Close frame can.
    let mut long_reason: Option<String> = None;
    let network_id = session.network_id();
    loop {
        // Frames already buffered are not delivered once the session is cut.
        if session.is_aborted() {
            return CloseReason::Shutdown;
        }
        let frame = match ws.read() {
            Ok(frame) => frame,
            Err(WsError::Io(err)) if is_timeout(&err) => {
                if session.is_aborted() || session.close_overdue() {
                    return CloseReason::Shutdown;
                }
                continue;
            }
            Err(WsError::Capacity(err)) => {
                bump(&session.context.stats.oversized_frames, 1);
                let limit = session.context.max_message_bytes;
                log::warn!("Closing connection to network {network_id}: {err} (max_frame_bytes = {limit})");
                return CloseReason::Oversized(format!("oversized frame: {err}"));
            }
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                return CloseReason::PeerClosed("connection closed".into());
            }
            Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                return CloseReason::Failed("peer closed the socket without a Close frame".into());
            }
            Err(err) => return CloseReason::Failed(err.to_string()),
        };
        session.heard();
        if let WsMessage::Text(_) | WsMessage::Binary(_) = &frame {
            bump(&session.context.link.bytes_in, frame.len() as u64);
        }
        match frame {
            WsMessage::Text(text) if session.peer.wire == Wire::V10 => handle_text(session, text.as_str()),
            WsMessage::Binary(bytes) if session.peer.wire != Wire::V10 => {
                if let Err(reason) = handle_binary(session, &bytes, &mut reassembly, &mut long_reason) {
                    return reason;
                }
            }
            WsMessage::Text(_) | WsMessage::Binary(_) => {
                bump(&session.context.stats.malformed_frames, 1);
                log::warn!("Ignored a frame of the wrong kind (text or binary) from network {network_id}");
            }
            WsMessage::Ping(data) => session.control(|c| c.pong = Some(data)),
            WsMessage::Pong(_) | WsMessage::Frame(_) => {}
            WsMessage::Close(frame) => {
                let why = frame.map(|f| f.reason.as_str().to_string()).unwrap_or_default();
                return peer_closed(long_reason.unwrap_or(why));
            }
        }
    }
}

fn peer_closed(why: String) -> CloseReason {
    if why == DUPLICATE_CLOSE {
        return CloseReason::Duplicate;
    }
    if let Some(instance) = why.strip_prefix("replaced by instance ") {
        return CloseReason::Replaced(instance.to_string());
    }
    if why.is_empty() {
        return CloseReason::PeerClosed("peer closed the connection".into());
    }
    CloseReason::PeerClosed(format!("peer closed the connection: {}", escaped(&why)))
}

fn handle_text(session: &Arc<Session>, text: &str) {
    let network_id = session.network_id();
    let stats = &session.context.stats;
    match parse_frame(text) {
        Ok(Inbound::Message(message)) => deliver(session, *message, None, text.len()),
        Ok(Inbound::Heartbeat(beat)) => log::trace!(
            "Heartbeat from network {network_id} ({})",
            escaped(&beat.timestamp)
        ),
        Ok(Inbound::DiscoveryRequest(request)) => log::debug!(
            "Ignored actor discovery request {} from network {network_id} (not offered)",
            escaped(&request.request_id)
        ),
        Ok(Inbound::DiscoveryResponse(response)) => log::debug!(
            "Ignored actor discovery response {} from network {network_id}",
            escaped(&response.request_id)
        ),
        Err(FrameProblem::BadMessage { target_actor, reason }) => {
            bump(&stats.malformed_frames, 1);
            let actor = target_actor.unwrap_or_else(|| "?".into());
            log::warn!(
                "Dropped malformed message for actor {} from network {network_id}: {}",
                escaped(&actor),
                escaped(&reason)
            );
        }
        Err(FrameProblem::Unrecognised(reason)) => {
            bump(&stats.malformed_frames, 1);
            log::warn!(
                "Ignored unrecognised frame from network {network_id}: {}",
                escaped(&reason)
            );
        }
    }
}

/// One 1.1 binary frame. An error ends the session (the peer broke the
/// protocol in a way that loses messages: a bad fragment stream).
fn handle_binary(
    session: &Arc<Session>,
    bytes: &[u8],
    reassembly: &mut Reassembly,
    long_reason: &mut Option<String>,
) -> Result<(), CloseReason> {
    let network_id = session.network_id();
    let stats = &session.context.stats;
    if bytes.first() == Some(&batch::TAG) {
        read_batch(session, bytes);
        return Ok(());
    }
    match frame::decode(bytes) {
        Ok(Frame::Data(message)) => deliver(session, *message, None, bytes.len()),
        Ok(Frame::Sequenced { seq, message }) => {
            deliver(
                session,
                *message,
                Some(seq),
                frame::message_len(bytes.len(), Some(seq)),
            );
        }
        Ok(Frame::Fragment { more, chunk }) => match reassembly.push(more, &chunk) {
            Ok(None) => {}
            Ok(Some(Frame::Sequenced { seq, message })) => {
                let len = frame::message_len(reassembly.last_len(), Some(seq));
                deliver(session, *message, Some(seq), len);
            }
            Ok(Some(Frame::Data(message))) => deliver(session, *message, None, reassembly.last_len()),
            Ok(Some(_)) => {}
            Err(err @ FrameError::OverLimit { .. }) => {
                bump(&stats.oversized_frames, 1);
                return Err(protocol_error(session, err.to_string()));
            }
            Err(err) => return Err(protocol_error(session, err.to_string())),
        },
        Ok(Frame::Control(Control::Heartbeat { .. })) => log::trace!("Heartbeat from network {network_id}"),
        Ok(Frame::Control(Control::Ack { through, except })) => match &session.delivery {
            Some(delivery) => {
                let newly = delivery.outbox.acknowledge(through, &except);
                if newly > 0 {
                    bump(&stats.messages_acknowledged, newly as u64);
                    session.wake();
                }
            }
            None => log::debug!("Ignored a delivery frame from network {network_id} (not negotiated)"),
        },
        Ok(Frame::Control(Control::Credit { target, grant })) => match &session.delivery {
            Some(delivery) => delivery.credits.grant(&target, grant),
            None => log::debug!("Ignored a delivery frame from network {network_id} (not negotiated)"),
        },
        Ok(Frame::Control(Control::Close { reason })) => *long_reason = Some(reason),
        Err(err) => {
            bump(&stats.malformed_frames, 1);
            log::warn!(
                "Ignored a bad frame from network {network_id}: {}",
                escaped(&err.to_string())
            );
        }
    }
    Ok(())
}

/// The messages of a BATCH frame, in order. A message whose payload does
/// not decode is dropped alone; a broken structure drops the rest of the
/// frame. Both are counted as malformed frames and logged.
fn read_batch(session: &Arc<Session>, bytes: &[u8]) {
    let network_id = session.network_id();
    let stats = &session.context.stats;
    let mut entries = match batch::entries(bytes) {
        Ok(entries) => entries,
        Err(err) => {
            bump(&stats.malformed_frames, 1);
            let why = escaped(&err.to_string()).to_string();
            log::warn!("Ignored a bad frame from network {network_id}: {why}");
            return;
        }
    };
    // The frame's messages go into their inboxes first, then each target
    // takes its share in one turn (not a turn per message).
    session.delivery_started();
    let mut slot = None;
    with_turns_deferred(|| {
        while let Some(entry) = entries.next() {
            // As between frames: nothing more is delivered once the
            // session is cut (a full inbox may hold each entry for up to
            // `delivery_timeout`).
            if session.is_aborted() {
                break;
            }
            match entry {
                Ok(entry) => deliver_entry(session, entry, &mut slot),
                Err(err) => {
                    bump(&stats.malformed_frames, 1);
                    let lost = entries.abandoned();
                    let why = escaped(&err.to_string()).to_string();
                    log::warn!(
                        "Dropped {lost} message(s) of a bad BATCH frame from network {network_id}: {why}"
                    );
                }
            }
        }
    });
    session.delivery_finished();
}

/// One message of a BATCH frame: as [`deliver`] for a DATA frame, without
/// an envelope (the sink gets its names by reference). The caller marks the
/// session as delivering. `last` is the slot of the frame's previous target:
/// a stream's next message needs no lookup.
fn deliver_entry<'a>(
    session: &Arc<Session>,
    entry: batch::Entry<'a>,
    last: &mut Option<(&'a str, Arc<TargetSlot>)>,
) {
    let stats = &session.context.stats;
    let target = entry.target_actor;
    let payload = match entry.payload {
        Ok(payload) => payload,
        Err(err) => {
            bump(&stats.malformed_frames, 1);
            log::warn!(
                "Dropped malformed message for actor {} from network {}: {}",
                escaped(target),
                session.network_id(),
                escaped(&err.to_string())
            );
            if let Some(delivery) = &session.delivery {
                // The sender spent credits on it: they go back. The slot of a
                // name no good message used goes too, so bad entries naming
                // ever new actors cannot grow the map.
                let cost = cost(entry.len, delivery.unit);
                let slot = delivery.targets.slot(session, target);
                slot.receipt(0, cost, delivery.window).0.complete();
                *last = None;
                delivery.targets.forget_if_idle(target);
            }
            return;
        }
    };
    bump(&stats.messages_received, 1);
    bump(&session.context.link.messages_in, 1);
    let arrival = Arrival {
        source_network: session.network_id(),
        source_actor: entry.source_actor,
        target_network: &session.context.local_network,
        target_actor: target,
        target_port: entry.target_port,
        payload,
    };
    let sink = &session.context.sink;
    let Some(delivery) = &session.delivery else {
        let result = sink.deliver_arrival(arrival, None);
        if let Err(err) = result {
            count_drop(session, &err, &format!("{target}.{}", entry.target_port));
        }
        return;
    };
    let slot = match last {
        Some((name, slot)) if *name == target => slot.clone(),
        _ => {
            let slot = delivery.targets.slot(session, target);
            *last = Some((target, slot.clone()));
            slot
        }
    };
    let (receipt, within) = slot.receipt(0, cost(entry.len, delivery.unit), delivery.window);
    let room = if within {
        Room::Overfill
    } else {
        Room::Wait(session.context.delivery_timeout)
    };
    let tracking = Tracking {
        receipt: receipt.clone(),
        room,
        run_here: true,
    };
    let result = sink.deliver_arrival(arrival, Some(tracking));
    if let Err(err) = result {
        count_drop(session, &err, target);
        // Settled: its credit goes back.
        receipt.complete();
        if err.is_unknown_target() {
            *last = None;
            delivery.targets.forget_if_idle(target);
        }
    }
}

fn protocol_error(session: &Session, why: String) -> CloseReason {
    log::warn!(
        "Closing connection to network {}: {}",
        session.network_id(),
        escaped(&why)
    );
    CloseReason::Failed(format!("protocol error: {why}"))
}

/// Hands one message to the sink. The sink may block (local inbox full); the
/// session counts as alive meanwhile and the peer feels TCP backpressure.
/// `seq` is set for a message under acknowledged delivery; `len` is the
/// length of its DATA frame (`frame::message_len`), which sets its credit cost.
fn deliver(session: &Arc<Session>, message: RemoteMessage, seq: Option<u64>, len: usize) {
    match &session.delivery {
        Some(delivery) => deliver_tracked(session, delivery, message, seq, len),
        None => deliver_plain(session, message),
    }
}

/// Delivery under credits (and acknowledgements for a sequenced message):
/// a message within its target's window goes into the inbox even when it is
/// full, so a slow actor never blocks the connection; one past the window
/// (a replay, or a sender that ignores credits) waits for room as in 1.0. A
/// sequenced message is never dropped for a full inbox: once admitted its
/// replay is a duplicate, so its reader waits until there is room, or until
/// the session ends and then lets it in past the capacity (one message per
/// ended session). Readers of one network take turns at this, so a later
/// message never overtakes it.
fn deliver_tracked(
    session: &Arc<Session>,
    delivery: &SessionDelivery,
    message: RemoteMessage,
    seq: Option<u64>,
    len: usize,
) {
    let stats = &session.context.stats;
    let target = message.target_actor.clone();
    let cost = cost(len, delivery.unit);
    let slot = delivery.targets.slot(session, &target);
    let _turn = seq.map(|_| delivery.log.handover());
    if let Some(seq) = seq
        && delivery
            .log
            .admit(session.network_id(), delivery.peer_incarnation, seq)
            == Admit::Duplicate
    {
        bump(&stats.duplicates_dropped, 1);
        log::debug!("Dropped duplicate {seq} from network {}", session.network_id());
        // Its credit is granted back and the acknowledgement sent again; the
        // original may still wait in an inbox, so it is not marked consumed.
        slot.receipt(0, cost, delivery.window).0.complete();
        session.control(|c| c.ack = true);
        return;
    }
    bump(&stats.messages_received, 1);
    bump(&session.context.link.messages_in, 1);
    let (receipt, within) = slot.receipt(seq.unwrap_or(0), cost, delivery.window);
    let mut room = match (within, seq) {
        (true, _) => Room::Overfill,
        // Sequenced: retried in steps, so the session's end is noticed.
        (false, Some(_)) => Room::Wait(session.tick()),
        (false, None) => Room::Wait(session.context.delivery_timeout),
    };
    let started = std::time::Instant::now();
    session.delivery_started();
    let mut pending = Some(message);
    let result = loop {
        let Some(message) = pending.take() else {
            break Ok(());
        };
        // Kept for a retry only when one may follow (sequenced, past the window).
        let retry = (!within && seq.is_some()).then(|| message.clone());
        let tracking = Tracking {
            receipt: receipt.clone(),
            room,
            run_here: seq.is_none(),
        };
        match session.context.sink.deliver_tracked(message, tracking) {
            Err(DeliveryError::Full) if retry.is_some() => {
                if session.reason().is_some() {
                    // The session ended: its replay would be dropped as a
                    // duplicate, so this one must go in now.
                    room = Room::Overfill;
                } else if started.elapsed() >= session.context.delivery_timeout {
                    log::debug!(
                        "Message {} for actor {} waits past delivery_timeout (acknowledged delivery never drops it)",
                        seq.unwrap_or(0),
                        escaped(&target)
                    );
                }
                pending = retry;
            }
            other => break other,
        }
    };
    session.delivery_finished();
    if let Err(err) = result {
        count_drop(session, &err, &target);
        // Settled: a message that cannot be delivered is not replayed forever.
        receipt.complete();
        if err.is_unknown_target() {
            delivery.targets.forget_if_idle(&target);
        }
    }
}

fn count_drop(session: &Session, err: &DeliveryError, target: &str) {
    let stats = &session.context.stats;
    let counter = if err.is_unknown_target() {
        &stats.dropped_unknown_target
    } else {
        &stats.dropped_delivery_timeout
    };
    bump(counter, 1);
    log::warn!(
        "Dropped message from network {} for actor {}: {err}",
        session.network_id(),
        escaped(target)
    );
}

fn deliver_plain(session: &Session, message: RemoteMessage) {
    let stats = &session.context.stats;
    bump(&stats.messages_received, 1);
    bump(&session.context.link.messages_in, 1);
    log::debug!(
        "Message {} from {}@{} for {}.{}",
        escaped(&message.message_id),
        escaped(&message.source_actor),
        escaped(&message.source_network),
        escaped(&message.target_actor),
        escaped(&message.target_port)
    );
    session.delivery_started();
    let target = format!("{}.{}", message.target_actor, message.target_port);
    let result = session.context.sink.deliver(message);
    session.delivery_finished();
    if let Err(err) = result {
        count_drop(session, &err, &target);
    }
}
