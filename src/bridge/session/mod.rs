//! A session owns one live connection: its socket, its reader and writer
//! threads, its two outbound lanes, its liveness, its protocol version and
//! limits, and the one teardown routine that closes it and reports why.
//!
//! ```text
//! Bridge ── sessions (map by network id) ── Session
//!                                             ├── writer thread: control lane first, then data lane
//!                                             └── reader thread: frames up to the session's sink;
//!                                                 runs the teardown when the socket ends
//! ```
//!
//! The reader and the writer know their half of the socket and this session,
//! nothing else; neither touches the connection map. When either half fails,
//! the session records the first reason, cuts or closes the socket, and the
//! reader thread (the session's own thread) joins the writer, counts what
//! was queued and is now lost, and hands the end to the owner's callback.

mod doorbell;
mod reader;
mod state;
mod targets;
mod writer;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;

use tungstenite::WebSocket;
use tungstenite::protocol::Role;

pub(crate) use self::state::{
    CloseReason, DUPLICATE_CLOSE, Ended, Lanes, MAX_WRITE_LINGER, OnEnd, Outgoing, Peer, Session,
    SessionContext, SessionDelivery, Wire,
};
pub(crate) use self::targets::Targets;
use crate::bridge::events::lock;
use crate::bridge::stream::WsStream;
use crate::bridge::threads::join_quietly;

/// Starts the writer (owned by the session) and returns the reader's body,
/// which the caller runs on a thread it owns; the reader runs the teardown.
/// `ws` is the WebSocket the handshake ran on; it becomes the reader's.
pub(crate) fn start(
    session: &Arc<Session>,
    mut ws: WebSocket<WsStream>,
    lanes: Lanes,
    role: Role,
    on_end: OnEnd,
) -> std::io::Result<impl FnOnce() + Send + 'static> {
    let tick = session.tick();
    ws.get_mut()
        .make_read_only(tick, Arc::clone(&session.last_byte))?;
    let write_tcp = ws.get_ref().tcp().try_clone()?;
    write_tcp.set_write_timeout(Some(tick))?;
    let write_ws = WebSocket::from_raw_socket(write_tcp, role, Some(session.context.ws_config));
    *lock(&session.socket) = Some(write_ws);
    let writer = {
        let session = Arc::clone(session);
        thread::Builder::new()
            .name(format!("bridge-writer-{}", session.peer.network_id))
            .spawn(move || writer::run(&session, lanes))?
    };
    *lock(&session.writer) = Some(writer);
    let session = Arc::clone(session);
    Ok(move || {
        let reason = reader::run(&session, ws);
        teardown(&session, reason, on_end);
    })
}

/// The one teardown routine: settles the reason, closes or cuts the socket,
/// joins the writer, counts what was lost, and reports to the owner.
fn teardown(session: &Arc<Session>, ended: CloseReason, on_end: OnEnd) {
    session.set_reason(ended);
    let reason = session.reason().unwrap_or(CloseReason::Shutdown);
    let polite = matches!(
        reason,
        CloseReason::PeerClosed(_)
            | CloseReason::Duplicate
            | CloseReason::Shutdown
            | CloseReason::Replaced(_)
    );
    if polite && !session.close_overdue() {
        session.close(reason.clone());
    } else {
        session.abort(reason.clone());
    }
    if let Some(writer) = lock(&session.writer).take() {
        join_quietly(writer);
    }
    session.abort(reason.clone());
    if let Some(delivery) = &session.delivery {
        // Senders waiting for credit go to the next session; the outbox
        // keeps its messages for it.
        delivery.credits.close();
        delivery.outbox.detach(session.id);
    }
    let lost = drain_lost(session) + session.lost_by_writer.load(Ordering::SeqCst);
    on_end(session, Ended { reason, lost });
}

/// Closes the data lane and counts the messages still queued once the
/// writer has stopped: they were accepted and will never be written.
fn drain_lost(session: &Session) -> u64 {
    session.lane_closed.store(true, Ordering::SeqCst);
    let mut lost = 0;
    loop {
        while let Some(item) = session.next_data(&session.data_rx) {
            lost += item.messages() as u64;
        }
        session.room_made(true);
        // A sender waiting for room finishes once woken: it finds the lane closed.
        if session.inflight.load(Ordering::SeqCst) == 0 && session.lane_empty() {
            return lost;
        }
        thread::yield_now();
    }
}
