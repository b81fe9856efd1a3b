//! The reader thread of a connection (`bridge-reader-<network>`): reads frames,
//! hands remote messages to the sink, and when the connection ends cleans up
//! after it: stops and joins the writer, leaves the connection map, reports,
//! and asks for a redial of connections this side dialed.
//!
//! The reader never writes: its `WebSocket` runs over a read-only stream, and
//! Ping/Close answers go through the writer.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::{Message as WsMessage, WebSocket};

use super::connection::{CloseReason, Connection, DUPLICATE_CLOSE};
use super::core::Shared;
use super::events::BridgeEvent;
use super::protocol::{FrameProblem, Inbound, RemoteMessage, parse_frame};
use super::stats::bump;
use super::stream::WsStream;
use super::threads::join_quietly;

/// The reader's main loop and, after it, the connection's teardown.
pub(crate) fn run(
    shared: &Arc<Shared>,
    connection: &Arc<Connection>,
    mut ws: WebSocket<WsStream>,
    writer: JoinHandle<()>,
) {
    let ended = read_until_closed(shared, connection, &mut ws);
    connection.set_reason(ended);
    let reason = connection.reason().unwrap_or(CloseReason::Shutdown);
    let graceful = matches!(
        reason,
        CloseReason::PeerClosed(_) | CloseReason::Duplicate | CloseReason::Shutdown
    );
    if graceful && !connection.close_overdue(shared.close_grace()) {
        connection.close_gracefully(reason.clone());
    } else {
        connection.abort(reason.clone());
    }
    join_quietly(writer);
    connection.abort(reason.clone());
    drop(ws);
    let was_current = shared.registry.remove_if_same(connection);
    report(shared, connection, &reason, was_current);
}

fn report(shared: &Arc<Shared>, connection: &Connection, reason: &CloseReason, was_current: bool) {
    let network_id = &connection.network_id;
    match reason {
        CloseReason::Duplicate => log::debug!("Closed duplicate connection to network: {network_id}"),
        CloseReason::Shutdown | CloseReason::Evicted => {}
        other if was_current => {
            log::info!("Lost connection to network: {network_id} ({})", other.text());
            shared.events.emit(BridgeEvent::Disconnected {
                network_id: network_id.clone(),
                reason: other.text(),
            });
        }
        _ => {}
    }
    if connection.dialed && reason.redial() && !shared.is_stopping() {
        shared.request_reconnect(network_id, &connection.endpoint);
    }
}

fn read_until_closed(shared: &Shared, connection: &Connection, ws: &mut WebSocket<WsStream>) -> CloseReason {
    let network_id = &connection.network_id;
    loop {
        // Frames already buffered are not delivered once the connection is cut.
        if connection.is_aborted() {
            return CloseReason::Shutdown;
        }
        let frame = match ws.read() {
            Ok(frame) => frame,
            Err(WsError::Io(err)) if is_timeout(&err) => {
                if connection.is_aborted() || connection.close_overdue(shared.close_grace()) {
                    return CloseReason::Shutdown;
                }
                continue;
            }
            Err(WsError::Capacity(err)) => {
                bump(&shared.stats.oversized_frames, 1);
                let limit = shared.config.max_frame_bytes;
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
        connection.liveness().heard(shared.now());
        match frame {
            WsMessage::Text(text) => handle_text(shared, connection, text.as_str()),
            WsMessage::Binary(_) => {
                bump(&shared.stats.malformed_frames, 1);
                log::warn!("Ignored binary frame from network {network_id} (protocol 1.0 uses text frames)");
            }
            WsMessage::Ping(data) => connection.send_pong(data),
            WsMessage::Pong(_) | WsMessage::Frame(_) => {}
            WsMessage::Close(frame) => {
                let why = frame.map(|f| f.reason.as_str().to_string()).unwrap_or_default();
                if why == DUPLICATE_CLOSE {
                    return CloseReason::Duplicate;
                }
                let why = if why.is_empty() {
                    "peer closed the connection".to_string()
                } else {
                    why
                };
                return CloseReason::PeerClosed(format!("peer closed the connection: {why}"));
            }
        }
    }
}

/// Errors after which the same call is simply made again. `Interrupted` comes
/// from a socket call with a timeout when the process was stopped and resumed
/// (SIGSTOP/SIGCONT), even without a signal handler; tungstenite keeps its
/// buffers intact across it.
fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn handle_text(shared: &Shared, connection: &Connection, text: &str) {
    let network_id = &connection.network_id;
    match parse_frame(text) {
        Ok(Inbound::Message(message)) => deliver(shared, connection, *message),
        Ok(Inbound::Heartbeat(beat)) => {
            log::trace!(
                "Heartbeat from network {network_id} ({}, {})",
                beat.network_id,
                beat.timestamp
            )
        }
        Ok(Inbound::DiscoveryRequest(request)) => log::debug!(
            "Ignored actor discovery request {} from network {network_id} (not offered)",
            request.request_id
        ),
        Ok(Inbound::DiscoveryResponse(response)) => log::debug!(
            "Ignored actor discovery response {} from network {network_id} ({} actors)",
            response.request_id,
            response.actors.len()
        ),
        Err(FrameProblem::BadMessage { target_actor, reason }) => {
            bump(&shared.stats.malformed_frames, 1);
            let actor = target_actor.unwrap_or_else(|| "?".into());
            log::warn!("Dropped malformed message for actor {actor} from network {network_id}: {reason}");
        }
        Err(FrameProblem::Unrecognised(reason)) => {
            bump(&shared.stats.malformed_frames, 1);
            log::warn!("Ignored unrecognised frame from network {network_id}: {reason}");
        }
    }
}

/// Hands one message to the sink. The sink may block (local inbox full); the
/// connection counts as alive meanwhile and the peer feels TCP backpressure.
fn deliver(shared: &Shared, connection: &Connection, message: RemoteMessage) {
    bump(&shared.stats.messages_received, 1);
    log::debug!(
        "Message {} from {}@{} for {}.{}",
        message.message_id,
        message.source_actor,
        message.source_network,
        message.target_actor,
        message.target_port
    );
    let target = format!("{}.{}", message.target_actor, message.target_port);
    connection.liveness().delivery_started(shared.now());
    let result = shared.sink.deliver(message);
    connection.liveness().delivery_finished(shared.now());
    if let Err(err) = result {
        let counter = if err.is_unknown_target() {
            &shared.stats.dropped_unknown_target
        } else {
            &shared.stats.dropped_delivery_timeout
        };
        bump(counter, 1);
        log::warn!(
            "Dropped message from network {} for actor {target}: {err}",
            connection.network_id
        );
    }
}
