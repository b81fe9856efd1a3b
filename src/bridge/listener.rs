//! The `bridge-listener` thread and the acceptor's side of the handshake.
//!
//! The accept loop only accepts: each handshake runs on its own
//! `bridge-handshake` thread under one overall deadline (`handshake_timeout`),
//! so plain HTTP, garbage, silent or vanishing clients cost that thread alone.
//! At most `max(max_connections, 16)` handshakes run at once; sockets past
//! that are closed at once.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::Message as WsMessage;
use tungstenite::WebSocket;
use tungstenite::accept_with_config;
use tungstenite::protocol::Role;

use super::connection::{Connection, DUPLICATE_CLOSE};
use super::core::{self, Shared};
use super::error::HandshakeError;
use super::handshake::{Refusal, check_request, parse_request, reply_text};
use super::registry::Insert;
use super::stats::bump;
use super::stream::WsStream;

/// The accept loop. Returns once the bridge is stopping (shutdown wakes it by
/// connecting to it).
pub(crate) fn run(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = listener.accept();
        if shared.is_stopping() {
            return;
        }
        match accepted {
            Ok((tcp, peer)) => spawn_handshake(&shared, tcp, peer),
            Err(err) => {
                log::warn!("Accept failed on the bridge port: {err}");
                // Out of file descriptors and the like: let the condition pass.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn spawn_handshake(shared: &Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    if shared.accepted_pending() >= shared.handshake_limit() {
        log::warn!("Dropped connection from {peer}: too many handshakes in progress");
        return;
    }
    let thread_shared = Arc::clone(shared);
    let spawned = shared.threads.spawn("bridge-handshake".to_string(), move || {
        accept_one(&thread_shared, tcp, peer)
    });
    if let Err(err) = spawned {
        log::warn!("Dropped connection from {peer}: cannot start a handshake thread: {err}");
    }
}

/// The acceptor's handshake on one socket, then its place in the map.
fn accept_one(shared: &Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let Some(pending) = shared.track_pending(&tcp, true, shared.handshake_limit()) else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let limit = shared.config.handshake_timeout;
    let stream = WsStream::for_handshake(tcp, Instant::now() + limit);
    let mut ws = match accept_with_config(stream, Some(shared.ws_config)) {
        Ok(ws) => ws,
        Err(err) => return refused_early(shared, peer, core::upgrade_error(err, limit)),
    };
    let request = match core::read_text(&mut ws, limit).and_then(|text| parse_request(&text)) {
        Ok(request) => request,
        Err(err) => return refused_early(shared, peer, err),
    };
    if let Err(refusal) = check_request(&request, &shared.identity) {
        return refuse(shared, &mut ws, peer, &request.network_id, &refusal);
    }
    let Ok(tcp) = ws.get_ref().tcp().try_clone() else {
        return;
    };
    // The handshake proper is over: free its slot before the dialer hears back.
    drop(pending);
    let network_id = request.network_id;
    let (connection, queues) = Connection::new(shared, network_id.clone(), peer.to_string(), false, tcp);
    match shared.registry.insert(&connection) {
        Insert::Added { replaced } => {
            if let Err(err) = ws.send(WsMessage::text(reply_text(&shared.identity, Ok(())))) {
                shared.registry.remove_if_same(&connection);
                log::info!("Handshake with network {network_id} ({peer}) failed: {err}");
                return;
            }
            if let Err(err) = core::activate(shared, &connection, ws, queues, Role::Server, replaced) {
                log::warn!("Connection from network {network_id} dropped: {err}");
            }
        }
        Insert::Duplicate => {
            if ws
                .send(WsMessage::text(reply_text(&shared.identity, Ok(()))))
                .is_ok()
            {
                log::debug!("Already connected to network {network_id}; closing the new connection");
                core::close_unstarted(shared, &mut ws, DUPLICATE_CLOSE);
            }
        }
        Insert::Full => refuse(shared, &mut ws, peer, &network_id, &Refusal::MaxConnections),
        Insert::Closed => {}
    }
}

/// A socket that never produced a handshake request: closed without reply.
fn refused_early(shared: &Shared, peer: SocketAddr, err: HandshakeError) {
    bump(&shared.stats.refused_handshakes, 1);
    log::info!("Refused connection from {peer}: {err}");
}

fn refuse(
    shared: &Shared,
    ws: &mut WebSocket<WsStream>,
    peer: SocketAddr,
    network_id: &str,
    refusal: &Refusal,
) {
    bump(&shared.stats.refused_handshakes, 1);
    let text = refusal.text();
    log::info!("Refused handshake from network {network_id} ({peer}): {text}");
    if ws
        .send(WsMessage::text(reply_text(&shared.identity, Err(refusal))))
        .is_ok()
    {
        core::close_unstarted(shared, ws, &text);
    }
}
