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

use super::error::HandshakeError;
use super::handshake::{AcceptorNext, AcceptorPolicy, Refusal, on_request, parse_request, reply_text};
use super::hub::{Admitted, Hub, NotAdmitted, close_duplicate, close_unstarted};
use super::session::{Peer, Wire};
use super::stream::{WsStream, read_text, upgrade_error};
use crate::names::escaped;

/// The accept loop. Returns once the bridge is stopping (shutdown wakes it by
/// connecting to it).
pub(crate) fn run(hub: Arc<Hub>, listener: TcpListener) {
    loop {
        let accepted = listener.accept();
        if hub.is_stopping() {
            return;
        }
        match accepted {
            Ok((tcp, peer)) => spawn_handshake(&hub, tcp, peer),
            Err(err) => {
                log::warn!("Accept failed on the bridge port: {err}");
                // Out of file descriptors and the like: let the condition pass.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn spawn_handshake(hub: &Arc<Hub>, tcp: TcpStream, peer: SocketAddr) {
    if hub.accepted_pending() >= hub.handshake_limit() {
        log::warn!("Dropped connection from {peer}: too many handshakes in progress");
        return;
    }
    let thread_hub = Arc::clone(hub);
    let spawned = hub.threads.spawn("bridge-handshake".to_string(), move || {
        accept_one(&thread_hub, tcp, peer)
    });
    if let Err(err) = spawned {
        log::warn!("Dropped connection from {peer}: cannot start a handshake thread: {err}");
    }
}

/// The acceptor's handshake on one socket, then its place in the map.
fn accept_one(hub: &Arc<Hub>, tcp: TcpStream, peer: SocketAddr) {
    let Some(pending) = hub.track_pending(&tcp, true, hub.handshake_limit()) else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let limit = hub.config.handshake_timeout;
    let stream = WsStream::for_handshake(tcp, Instant::now() + limit);
    let mut ws = match accept_with_config(stream, Some(hub.ws_config)) {
        Ok(ws) => ws,
        Err(err) => return refused_early(hub, peer, upgrade_error(err, limit)),
    };
    let request = match read_text(&mut ws, limit).and_then(|text| parse_request(&text)) {
        Ok(request) => request,
        Err(err) => return refused_early(hub, peer, err),
    };
    let policy = AcceptorPolicy {
        identity: &hub.identity,
        accept_legacy_auth: hub.config.accept_legacy_auth,
        max_message_bytes: hub.config.max_frame_bytes,
        delivery: hub.delivery_offer(),
        batch: hub.config.batch_frames,
    };
    // Ids are only logged once they passed the rules (and escaped before).
    let who = escaped(&request.network_id).to_string();
    let wire = match on_request(&request, &policy) {
        Ok(AcceptorNext::Accept10) => Wire::V10,
        Ok(AcceptorNext::Challenge { frame, state }) => {
            if ws.send(WsMessage::text(frame)).is_err() {
                return;
            }
            let checked = read_text(&mut ws, limit)
                .map_err(|err| Refusal::Internal(err.to_string()))
                .and_then(|text| state.check(&text, &hub.identity));
            if let Err(refusal) = checked {
                return refuse(hub, &mut ws, peer, &who, &refusal);
            }
            Wire::V11 {
                peer_max_message: state.peer_max_message,
                delivery: state.peer_delivery,
                batch: state.batch,
            }
        }
        Err(refusal) => return refuse(hub, &mut ws, peer, &who, &refusal),
    };
    let Ok(tcp) = ws.get_ref().tcp().try_clone() else {
        return;
    };
    // The handshake proper is over: free its slot before the dialer hears back.
    drop(pending);
    let network_id = request.network_id;
    let session_peer = Peer {
        network_id: network_id.clone(),
        instance_id: request.instance_id,
        endpoint: peer.to_string(),
        dialed: false,
        wire,
    };
    match hub.admit(session_peer, tcp) {
        Ok(Admitted {
            session,
            lanes,
            replaced,
        }) => {
            if let Err(err) = ws.send(WsMessage::text(reply_text(&hub.identity, Ok(())))) {
                hub.sessions.remove_if_same(&session);
                log::info!("Handshake with network {network_id} ({peer}) failed: {err}");
                return;
            }
            if let Err(err) = hub.start_session(&session, ws, lanes, Role::Server, replaced) {
                log::warn!("Connection from network {network_id} dropped: {err}");
            }
        }
        Err(NotAdmitted::Duplicate) => {
            if ws
                .send(WsMessage::text(reply_text(&hub.identity, Ok(()))))
                .is_ok()
            {
                log::debug!("Already connected to network {network_id}; closing the new connection");
                close_duplicate(hub, &mut ws, wire, &network_id);
            }
        }
        Err(NotAdmitted::LiveInstance(instance_id)) => {
            refuse(hub, &mut ws, peer, &who, &Refusal::LiveInstance { instance_id })
        }
        Err(NotAdmitted::Full) => refuse(hub, &mut ws, peer, &who, &Refusal::MaxConnections),
        Err(NotAdmitted::Closed) => {}
    }
}

/// A socket that never produced a handshake request: closed without reply.
fn refused_early(hub: &Hub, peer: SocketAddr, err: HandshakeError) {
    hub.stats.refused("bad_handshake");
    log::info!("Refused connection from {peer}: {err}");
}

fn refuse(hub: &Hub, ws: &mut WebSocket<WsStream>, peer: SocketAddr, who: &str, refusal: &Refusal) {
    hub.stats.refused(refusal.counted_as());
    let text = refusal.text();
    log::info!("Refused handshake from network {who} ({peer}): {text}");
    if ws
        .send(WsMessage::text(reply_text(&hub.identity, Err(refusal))))
        .is_ok()
    {
        close_unstarted(hub, ws, &truncate_reason(&text));
    }
}

/// A WebSocket Close reason holds at most 123 bytes.
fn truncate_reason(text: &str) -> String {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}
