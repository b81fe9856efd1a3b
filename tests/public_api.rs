//! A small program written against the public API only.
//!
//! An integration test is a crate of its own that links the library like any
//! user's program, so it can name only what `src/lib.rs` makes public: if
//! this file compiles, everything it names is reachable through the crate
//! root, the facade modules (`runtime`, `bridge`, `discovery`, `router`,
//! `peer_config`, `distributed_network`, `names`) and the paths Reflow users
//! write. It uses no test helper, so nothing else lends it a path.

use std::sync::Arc;
use std::time::Duration;

use reflow_distributed::bridge::{BridgeError, HandshakeError};
use reflow_distributed::discovery::{DiscoveryServer, ServerConfig};
use reflow_distributed::names::check_id;
use reflow_distributed::peer_config::PeerConfig as ReflowPeerConfig;
use reflow_distributed::router::{self, RegistryConfig, SharedRegistry};
use reflow_distributed::runtime::{Actor, ActorContext, ActorError, Recorder, RecorderLog};
use reflow_distributed::{
    DistributedConfig, DistributedError, DistributedNetwork, Message, PeerConfig, Secret,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// A user's own actor: answers `in` with the text upper-cased on `out`.
struct Shout;

impl Actor for Shout {
    fn inports(&self) -> Vec<String> {
        vec!["in".into()]
    }

    fn outports(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn run(&mut self, ctx: &mut ActorContext<'_>) -> Result<(), ActorError> {
        let text = ctx.input("in").and_then(Message::as_str).unwrap_or_default();
        ctx.emit("out", text.to_uppercase())
    }
}

/// A peer from a TOML text, as a user would write it.
fn peer(name: &str, token: &str) -> DistributedNetwork {
    let text = format!("network_id = \"{name}\"\nbind_port = 0\nauth_token = \"{token}\"\n");
    let config = PeerConfig::from_str_with_env(&text, &format!("{name}.toml"), |_| None).expect("valid");
    DistributedNetwork::new(config.distributed).expect("peer")
}

#[test]
fn the_paths_reflow_users_write_are_the_roots_types() {
    // Each line only compiles when both paths name the same item.
    let _: fn(DistributedConfig) -> Result<DistributedNetwork, DistributedError> =
        reflow_distributed::distributed_network::DistributedNetwork::new;
    let _: ReflowPeerConfig = PeerConfig::new("alpha");
    let _: fn(&SharedRegistry, tiny_http::Request) -> Option<tiny_http::Request> =
        reflow_distributed::discovery::router::handle;
    let registry = SharedRegistry::new(RegistryConfig::default());
    assert_eq!(registry.live_count(), 0);
    assert_eq!(router::REGISTER_PATH, "/register");
    assert!(check_id("alpha").is_ok() && check_id("a@b").is_err());
}

#[test]
fn a_program_on_the_public_api_sends_through_its_own_actor_to_another_peer() {
    let alpha = peer("alpha", "s3cret");
    let recorder = Recorder::new(Recorder::DEFAULT_HISTORY);
    let seen: Arc<RecorderLog> = recorder.log();
    alpha
        .register_local_actor("recorder", Box::new(recorder), Value::Null)
        .unwrap();
    alpha.start().unwrap();
    let endpoint = alpha.local_addr().expect("started").to_string();

    let beta = peer("beta", "s3cret");
    beta.register_local_actor("shout", Box::new(Shout), Value::Null)
        .unwrap();
    let proxy = beta.register_remote_actor("recorder", "alpha").unwrap();
    beta.get_local_network()
        .connect("shout", "out", &proxy, "in")
        .unwrap();
    beta.start().unwrap();
    assert_eq!(beta.connect_to_network(&endpoint).unwrap(), "alpha");

    beta.send_to_actor("shout", "in", "hello").unwrap();
    assert!(seen.wait_until(WAIT, |records| !records.is_empty()));
    assert_eq!(seen.records()[0].message, Message::string("HELLO"));

    // Errors can be matched layer by layer: a wrong token is found out by
    // the dialer (alpha's proof does not check out), and no token at all is
    // refused by alpha.
    let mallory = peer("mallory", "wrong");
    mallory.start().unwrap();
    match mallory.connect_to_network(&endpoint) {
        Err(DistributedError::Bridge(BridgeError::Handshake(HandshakeError::Unproven(_)))) => {}
        other => panic!("expected an unproven acceptor, got {other:?}"),
    }
    mallory.shutdown();
    let mallory = DistributedNetwork::new(DistributedConfig::new("mallory")).unwrap();
    mallory.start().unwrap();
    match mallory.connect_to_network(&endpoint) {
        Err(DistributedError::Bridge(BridgeError::Handshake(HandshakeError::Refused(why)))) => {
            assert_eq!(why, "auth_token mismatch")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    mallory.shutdown();
    beta.shutdown();
    alpha.shutdown();
}

#[test]
fn the_token_and_the_discovery_server_are_usable_from_outside() {
    let token = Secret::from("hunter2");
    assert_eq!(format!("{token} {token:?}"), "<redacted> Secret(<redacted>)");
    assert_eq!(token.expose(), "hunter2");

    let server = DiscoveryServer::start(ServerConfig::new("127.0.0.1:0")).expect("server");
    assert!(server.local_addr().port() != 0);
    server.shutdown();
}
