//! One dial: name resolution and TCP connect under `connect_timeout`, then
//! the WebSocket upgrade and the handshake under `handshake_timeout`, then
//! admission as a session. Runs on the caller's thread (`Bridge::connect`)
//! or on a target's supervisor; shutdown interrupts it at any step.
//!
//! std's name resolution and `connect` cannot be interrupted, so they run on
//! a short-lived `bridge-connect` thread that the dial waits for with a
//! deadline and the bridge's stop signal. A dial that gives up leaves that
//! thread to finish by itself: it holds only its own socket, which it drops.

use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select};
use tungstenite::Message as WsMessage;
use tungstenite::client::client_with_config;
use tungstenite::protocol::Role;

use super::error::{BridgeError, HandshakeError};
use super::handshake::{DialMode, Dialer, DialerNext, decline_frame, worth_declining};
use super::hub::{Admitted, Hub, NotAdmitted, close_duplicate, close_unstarted};
use super::session::Peer;
use super::stream::{WsStream, connect_tcp, handshake_error, read_text, upgrade_error};
use crate::names::escaped;

/// Where to dial, and what to expect there.
#[derive(Debug, Clone)]
pub(crate) struct DialTarget {
    /// `host:port`.
    pub(crate) endpoint: String,
    /// The network the dialer means to reach; an acceptor that answers as
    /// another is refused.
    pub(crate) expected: Option<String>,
    /// Send the token in clear to a 1.0 acceptor that cannot do the 1.1 proof.
    pub(crate) legacy_auth: bool,
    /// The target came from discovery (for the log lines).
    pub(crate) discovered: bool,
}

/// Dials `target` and returns the network found there. `warned` remembers
/// that the token was sent in clear to this target once already.
pub(crate) fn dial(hub: &Arc<Hub>, target: &DialTarget, warned: &mut bool) -> Result<String, BridgeError> {
    match dial_once(hub, target, DialMode::Offer) {
        Err(err) if target.legacy_auth && hub.identity.auth_token.is_some() && speaks_only_10(&err) => {
            if !*warned {
                *warned = true;
                log::warn!(
                    "Sending auth_token in clear to {} (legacy_auth = true): it speaks protocol 1.0 and cannot do the 1.1 proof",
                    target.endpoint
                );
            }
            dial_once(hub, target, DialMode::LegacyPlaintext)
        }
        other => other,
    }
}

/// True for the answers of a 1.0 acceptor to a 1.1 dialer with a token.
fn speaks_only_10(err: &BridgeError) -> bool {
    match err {
        BridgeError::Handshake(HandshakeError::Refused(why)) => why == "auth_token mismatch",
        BridgeError::Handshake(HandshakeError::Unproven(why)) => why.contains("protocol 1.0"),
        _ => false,
    }
}

fn dial_once(hub: &Arc<Hub>, target: &DialTarget, mode: DialMode) -> Result<String, BridgeError> {
    if hub.is_stopping() {
        return Err(BridgeError::ShuttingDown);
    }
    let endpoint = target.endpoint.as_str();
    let tcp = connect_interruptible(hub, endpoint, hub.config.connect_timeout)?;
    let _ = tcp.set_nodelay(true);
    let Some(pending) = hub.track_pending(&tcp, false, usize::MAX) else {
        return Err(BridgeError::Spawn(std::io::Error::other(
            "cannot track the dialed socket",
        )));
    };
    if hub.is_stopping() {
        return Err(BridgeError::ShuttingDown);
    }
    let limit = hub.config.handshake_timeout;
    let stream = WsStream::for_handshake(tcp, Instant::now() + limit);
    let url = format!("ws://{endpoint}/");
    let (mut ws, _response) = client_with_config(url.as_str(), stream, Some(hub.ws_config))
        .map_err(|err| stopped_or(hub, upgrade_error(err, limit)))?;

    let dialer = Dialer::new(
        &hub.identity,
        target.expected.as_deref(),
        mode,
        hub.config.max_frame_bytes,
    )?
    .with_delivery(hub.delivery_offer())
    .with_batch(hub.config.batch_frames);
    ws.send(WsMessage::text(dialer.first_frame()))
        .map_err(|err| stopped_or(hub, handshake_error(err, limit)))?;
    let reply = read_text(&mut ws, limit).map_err(|err| stopped_or(hub, err))?;
    let peer = match dialer.on_reply(&reply) {
        Ok(DialerNext::Done(peer)) => peer,
        Ok(DialerNext::Prove { frame, peer }) => {
            ws.send(WsMessage::text(frame))
                .map_err(|err| stopped_or(hub, handshake_error(err, limit)))?;
            let result = read_text(&mut ws, limit).map_err(|err| stopped_or(hub, err))?;
            dialer.on_result(&result)?;
            peer
        }
        Err(err) => {
            if worth_declining(&err) {
                // Best effort: the acceptor logs the refusal; its answer changes nothing.
                if ws.send(WsMessage::text(decline_frame())).is_ok() {
                    let _ = read_text(&mut ws, limit);
                }
            }
            log::info!("Handshake with {endpoint} failed: {err}");
            return Err(err.into());
        }
    };

    // The handshake is over: shutdown no longer needs to wake this socket,
    // and must not cut it once it carries a session (that session closes
    // politely, writing what is queued first).
    drop(pending);
    let tcp = ws.get_ref().tcp().try_clone().map_err(BridgeError::Spawn)?;
    let network_id = peer.network_id.clone();
    let wire = peer.wire;
    let peer = Peer {
        network_id: peer.network_id,
        instance_id: peer.instance_id,
        endpoint: endpoint.to_string(),
        dialed: true,
        wire: peer.wire,
    };
    match hub.admit(peer, tcp) {
        Ok(Admitted {
            session,
            lanes,
            replaced,
        }) => {
            hub.start_session(&session, ws, lanes, Role::Client, replaced)
                .map_err(BridgeError::Spawn)?;
            Ok(network_id)
        }
        Err(NotAdmitted::Duplicate) => {
            log::debug!("Already connected to network {network_id}; closing the new connection");
            close_duplicate(hub, &mut ws, wire, &network_id);
            Ok(network_id)
        }
        Err(NotAdmitted::LiveInstance(instance)) => {
            let why = format!(
                "network already connected as live instance {}",
                escaped(&instance)
            );
            close_unstarted(hub, &mut ws, &why);
            Err(BridgeError::LiveInstance {
                network_id,
                instance_id: instance,
            })
        }
        Err(NotAdmitted::Full) => {
            close_unstarted(hub, &mut ws, "max_connections reached");
            Err(BridgeError::MaxConnections(hub.config.max_connections))
        }
        Err(NotAdmitted::Closed) => Err(BridgeError::ShuttingDown),
    }
}

/// A handshake error that is really the bridge shutting down reads as such.
fn stopped_or(hub: &Hub, err: HandshakeError) -> BridgeError {
    if hub.is_stopping() {
        BridgeError::ShuttingDown
    } else {
        err.into()
    }
}

/// Resolves and connects on a `bridge-connect` thread, waiting at most
/// `timeout` and waking at once when the bridge stops.
fn connect_interruptible(hub: &Hub, endpoint: &str, timeout: Duration) -> Result<TcpStream, BridgeError> {
    let (tx, rx) = bounded(1);
    let owned = endpoint.to_string();
    thread::Builder::new()
        .name("bridge-connect".into())
        .spawn(move || {
            let _ = tx.send(connect_tcp(&owned, timeout));
        })
        .map_err(BridgeError::Spawn)?;
    let stopped = hub.stopped();
    select! {
        recv(rx) -> result => result.unwrap_or_else(|_| Err(BridgeError::ShuttingDown)),
        recv(stopped) -> _ => Err(BridgeError::ShuttingDown),
        default(timeout + Duration::from_millis(50)) => Err(BridgeError::ConnectTimedOut {
            endpoint: endpoint.to_string(),
            timeout,
        }),
    }
}
