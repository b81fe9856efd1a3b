//! Dialing a peer: TCP connect with a timeout, WebSocket upgrade, the
//! handshake frames, then a place in the connection map. Runs on the caller's
//! thread (`Bridge::connect`) or on the reconnect dispatcher.

use std::sync::Arc;
use std::time::Instant;

use tungstenite::Message as WsMessage;
use tungstenite::client::client_with_config;
use tungstenite::protocol::Role;

use super::connection::{Connection, DUPLICATE_CLOSE};
use super::core::{self, Shared};
use super::error::BridgeError;
use super::events::lock;
use super::handshake::{parse_reply, request_text};
use super::registry::Insert;
use super::stream::{WsStream, connect_tcp};

/// Dials `endpoint` and returns the network found there.
pub(crate) fn dial(shared: &Arc<Shared>, endpoint: &str) -> Result<String, BridgeError> {
    if shared.is_stopping() {
        return Err(BridgeError::ShuttingDown);
    }
    let config = &shared.config;
    let tcp = connect_tcp(endpoint, config.connect_timeout)?;
    let _ = tcp.set_nodelay(true);
    let _pending = shared.track_pending(&tcp, false, usize::MAX);
    let limit = config.handshake_timeout;
    let stream = WsStream::for_handshake(tcp, Instant::now() + limit);

    let url = format!("ws://{endpoint}/");
    let (mut ws, _response) = client_with_config(url.as_str(), stream, Some(shared.ws_config))
        .map_err(|err| core::upgrade_error(err, limit))?;
    ws.send(WsMessage::text(request_text(&shared.identity)))
        .map_err(|err| core::handshake_error(err, limit))?;
    let reply = core::read_text(&mut ws, limit)?;
    let peer = match parse_reply(&reply) {
        Ok(peer) => peer,
        Err(err) => {
            log::info!("Handshake with {endpoint} failed: {err}");
            return Err(err.into());
        }
    };

    let tcp = ws.get_ref().tcp().try_clone().map_err(BridgeError::Spawn)?;
    let network_id = peer.network_id;
    let (connection, queues) = Connection::new(shared, network_id.clone(), endpoint.to_string(), true, tcp);
    match shared.registry.insert(&connection) {
        Insert::Added { replaced } => {
            core::activate(shared, &connection, ws, queues, Role::Client, replaced)?;
        }
        Insert::Duplicate => {
            log::debug!("Already connected to network {network_id}; closing the new connection");
            core::close_unstarted(shared, &mut ws, DUPLICATE_CLOSE);
        }
        Insert::Full => {
            core::close_unstarted(shared, &mut ws, "max_connections reached");
            return Err(BridgeError::MaxConnections(config.max_connections));
        }
        Insert::Closed => return Err(BridgeError::ShuttingDown),
    }
    lock(&shared.dialed_endpoints).insert(endpoint.to_string(), network_id.clone());
    Ok(network_id)
}
