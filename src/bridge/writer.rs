//! The writer thread of a connection (`bridge-writer-<network>`), the only
//! code that writes to the socket. It writes everything queued and flushes
//! when the queue runs empty: a flush per frame would cost the receiver a
//! wake-up per message.
//!
//! A write that times out (the peer reads slowly: TCP backpressure) is
//! retried; the timeout only lets the writer notice that the connection was
//! aborted or that its close is overdue.

use std::io;
use std::net::TcpStream;

use crossbeam_channel::{Receiver, select};
use tungstenite::error::Error as WsError;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message as WsMessage, WebSocket};

use super::connection::{CloseReason, Connection, Control, Outgoing, Queues, tick};
use super::core::Shared;
use super::stats::bump;

type Ws = WebSocket<TcpStream>;

/// The writer's main loop.
pub(crate) fn run(shared: &Shared, connection: &Connection, mut ws: Ws, queues: Queues) {
    let tick = tick(shared);
    let outcome = loop {
        if connection.is_aborted() || connection.close_overdue(shared.close_grace()) {
            break Ok(());
        }
        select! {
            recv(queues.outbound) -> item => match item {
                Ok(item) => {
                    if let Err(err) = write_batch(shared, connection, &mut ws, item, &queues.outbound) {
                        break Err(err);
                    }
                }
                Err(_) => break Ok(()),
            },
            recv(queues.control) -> control => match control {
                Ok(Control::Pong(data)) => {
                    let sent = ws.write(WsMessage::Pong(data));
                    if let Err(err) = sent.and_then(|()| flush(shared, connection, &mut ws)) {
                        break Err(err);
                    }
                }
                Ok(Control::Close(reason)) => break close(shared, connection, &mut ws, &queues.outbound, reason),
                Ok(Control::Abort) => break Ok(()),
                Err(_) => break Ok(()),
            },
            default(tick) => {}
        }
    };
    if let Err(err) = outcome {
        if !connection.is_aborted() {
            log::debug!("Write to network {} failed: {err}", connection.network_id);
        }
        connection.abort(CloseReason::Failed(format!("write failed: {err}")));
    }
}

/// Writes `first` and everything else queued, then flushes.
fn write_batch(
    shared: &Shared,
    connection: &Connection,
    ws: &mut Ws,
    first: Outgoing,
    queue: &Receiver<Outgoing>,
) -> Result<(), WsError> {
    write_one(shared, connection, ws, first)?;
    while let Ok(item) = queue.try_recv() {
        write_one(shared, connection, ws, item)?;
    }
    flush(shared, connection, ws)
}

fn write_one(shared: &Shared, connection: &Connection, ws: &mut Ws, item: Outgoing) -> Result<(), WsError> {
    let counts = item.is_message;
    match ws.write(WsMessage::text(item.text)) {
        Ok(()) => {}
        Err(WsError::Io(err)) if is_timeout(&err) => flush(shared, connection, ws)?,
        Err(err) => return Err(err),
    }
    if counts {
        bump(&shared.stats.messages_sent, 1);
    }
    Ok(())
}

/// Flushes, retrying while the socket is merely slow.
fn flush(shared: &Shared, connection: &Connection, ws: &mut Ws) -> Result<(), WsError> {
    loop {
        match ws.flush() {
            Ok(()) => return Ok(()),
            Err(WsError::Io(err)) if is_timeout(&err) => {
                if connection.is_aborted() || connection.close_overdue(shared.close_grace()) {
                    return Err(WsError::Io(err));
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// Writes what is queued, then the Close frame, then half-closes the socket.
fn close(
    shared: &Shared,
    connection: &Connection,
    ws: &mut Ws,
    queue: &Receiver<Outgoing>,
    reason: String,
) -> Result<(), WsError> {
    while let Ok(item) = queue.try_recv() {
        write_one(shared, connection, ws, item)?;
    }
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: reason.into(),
    };
    match ws.close(Some(frame)) {
        Ok(()) | Err(WsError::ConnectionClosed) => {}
        Err(WsError::Io(err)) if is_timeout(&err) => flush(shared, connection, ws)?,
        Err(err) => return Err(err),
    }
    connection.shutdown_write();
    Ok(())
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
