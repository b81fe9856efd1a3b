//! Shared pieces of the bridge integration tests: bridges on 127.0.0.1 port
//! 0, a channel-backed sink, raw WebSocket peers, and waits with deadlines.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use reflow_distributed::Message;
use reflow_distributed::bridge::{
    Bridge, BridgeConfig, BridgeEvent, BridgeIdentity, DeliveryError, InboundSink, RemoteMessage,
};
use tungstenite::{Message as WsMessage, WebSocket};

/// Generous upper bound for things that should happen quickly, even on a
/// loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Logs go to stderr when RUST_LOG is set (e.g. `RUST_LOG=debug`).
pub fn init_logging() {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Off)
        .env()
        .with_module_level("tungstenite", log::LevelFilter::Info)
        .init();
}

/// Forwards every delivered message to a channel.
pub struct ChannelSink(pub Sender<RemoteMessage>);

impl InboundSink for ChannelSink {
    fn deliver(&self, message: RemoteMessage) -> Result<(), DeliveryError> {
        let _ = self.0.send(message);
        Ok(())
    }
}

pub struct Peer {
    pub bridge: Bridge,
    pub inbox: Receiver<RemoteMessage>,
    pub events: Receiver<BridgeEvent>,
}

impl Peer {
    pub fn endpoint(&self) -> String {
        self.bridge.local_addr().to_string()
    }
}

pub fn identity(network: &str, token: Option<&str>) -> BridgeIdentity {
    let mut id = BridgeIdentity::new(network, format!("{network}-1"));
    id.auth_token = token.map(reflow_distributed::Secret::from);
    id
}

pub fn quick_config() -> BridgeConfig {
    let mut config = BridgeConfig::default();
    config.handshake_timeout = Duration::from_secs(3);
    config.connect_timeout = Duration::from_secs(3);
    config
}

pub fn start_peer(network: &str, token: Option<&str>, config: BridgeConfig) -> Peer {
    init_logging();
    let (tx, inbox) = unbounded();
    start_with_sink(network, token, config, Arc::new(ChannelSink(tx)), inbox)
}

pub fn start_with_sink(
    network: &str,
    token: Option<&str>,
    config: BridgeConfig,
    sink: Arc<dyn InboundSink>,
    inbox: Receiver<RemoteMessage>,
) -> Peer {
    init_logging();
    let bridge = Bridge::start(identity(network, token), config, sink).expect("bridge starts");
    let events = bridge.subscribe();
    Peer {
        bridge,
        inbox,
        events,
    }
}

pub fn text_message(from: &str, to: &str, text: &str) -> RemoteMessage {
    RemoteMessage::new(from, "unknown", to, "recorder", "in", Message::string(text))
}

/// Waits for an event matching `wanted`, skipping others, until `within` passes.
pub fn wait_event(
    events: &Receiver<BridgeEvent>,
    within: Duration,
    mut wanted: impl FnMut(&BridgeEvent) -> bool,
) -> Option<BridgeEvent> {
    let deadline = Instant::now() + within;
    while let Ok(event) = events.recv_deadline(deadline) {
        if wanted(&event) {
            return Some(event);
        }
    }
    None
}

/// Polls `condition` until it holds or `within` passes.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A plain WebSocket client that does the bridge handshake by hand and then
/// does whatever the test wants (including nothing at all).
pub fn raw_peer(addr: SocketAddr, network: &str, token: Option<&str>) -> (WebSocket<TcpStream>, String) {
    let tcp = TcpStream::connect(addr).expect("tcp connect");
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), tcp).expect("upgrade");
    let request = serde_json::json!({
        "network_id": network, "instance_id": format!("{network}-1"),
        "protocol_version": "1.0", "auth_token": token, "capabilities": ["actor_messaging"],
    });
    ws.send(WsMessage::text(request.to_string())).unwrap();
    loop {
        match ws.read().expect("handshake reply") {
            WsMessage::Text(reply) => return (ws, reply.as_str().to_string()),
            _ => continue,
        }
    }
}

/// Reads from a raw peer until the bridge closes the connection; true if it
/// did within `within`.
pub fn closed_by_bridge(ws: &mut WebSocket<TcpStream>, within: Duration) -> bool {
    ws.get_mut().set_read_timeout(Some(within)).unwrap();
    let deadline = Instant::now() + within;
    loop {
        match ws.read() {
            Ok(WsMessage::Close(_)) => return true,
            Ok(_) if Instant::now() < deadline => continue,
            Ok(_) => return false,
            Err(tungstenite::Error::Io(err))
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}
