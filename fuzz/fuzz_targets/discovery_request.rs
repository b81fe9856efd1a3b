//! One request to the discovery server, as bytes off the socket: the head is
//! parsed as the server parses it, routed, and a registration body (what
//! follows the head, cut to the declared length and the body limit) is
//! registered or deregistered. The whole input is also tried as a registration body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reflow_distributed::discovery::inspect::{head_len, parse_head, parse_registration};

use reflow_distributed::router::{self, RegistryConfig, SharedRegistry, Step};

fuzz_target!(|data: &[u8]| {
    let _ = parse_registration(data);
    let registry = SharedRegistry::new(RegistryConfig {
        max_body_bytes: 4096,
        max_entries: 4,
        ..RegistryConfig::default()
    });
    let Some(len) = head_len(data) else {
        return;
    };
    let Ok(head) = parse_head(&data[..len]) else {
        return;
    };
    let rest = &data[len..];
    let reply = match router::begin(&registry, &head.method, &head.target, head.content_length) {
        Step::NotDiscovery => return,
        Step::Respond(reply) => reply,
        Step::ReadBody { limit } => {
            let declared = head.content_length.unwrap_or(0);
            assert!(declared <= limit as u64);
            let body = &rest[..rest.len().min(declared as usize)];
            let source = std::net::IpAddr::from([127, 0, 0, 1]);
            router::finish_register_from(&registry, body, Some(source))
        }
        Step::ReadDeregisterBody { limit, network_id } => {
            let declared = head.content_length.unwrap_or(0);
            assert!(declared <= limit as u64);
            let body = &rest[..rest.len().min(declared as usize)];
            router::finish_deregister(&registry, &network_id, body)
        }
    };
    assert!((200..600).contains(&reply.status));
    assert!(serde_json::from_str::<serde_json::Value>(&reply.body).is_ok());
});
