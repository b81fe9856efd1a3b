//! Inputs kept from the fuzz targets (`fuzz/`), fed to the same functions as
//! plain tests: edge cases of the bridge frame parser, message JSON, peer
//! configs and the discovery request path. Each must be refused or accepted
//! cleanly, never panic.

use reflow_distributed::Message;
use reflow_distributed::bridge::inspect;
use reflow_distributed::discovery::inspect::{head_len, parse_head, parse_registration};

use reflow_distributed::peer_config::PeerConfig;
use reflow_distributed::router::{self, RegistryConfig, SharedRegistry, Step};

#[test]
fn frames_nested_past_the_recursion_limit_are_unrecognised() {
    for depth in [127, 128, 129, 100_000] {
        let text = "[".repeat(depth);
        assert_eq!(inspect::classify_frame(&text), "unrecognised", "{depth}");
        assert!(!inspect::accepts_handshake_request(&text));
        assert!(!inspect::accepts_handshake_reply(&text));
    }
    let nested = format!(
        r#"{{"message_id":"m","target_actor":"r","payload":{{"type":"Any","data":{}}}}}"#,
        "[".repeat(10_000)
    );
    // Past the depth limit the frame is not JSON at all, so not a message.
    assert_eq!(inspect::classify_frame(&nested), "unrecognised");
}

#[test]
fn frames_of_odd_shapes_are_classified_without_panicking() {
    let cases = [
        ("", "unrecognised"),
        ("\u{feff}{}", "unrecognised"),
        ("1e999999", "unrecognised"),
        ("-0", "unrecognised"),
        (r#"{"network_id":"a","timestamp":"t"}"#, "heartbeat"),
        (r#"{"network_id":1,"timestamp":"t"}"#, "unrecognised"),
        (
            r#"{"request_id":"r","requesting_network":"b"}"#,
            "discovery-request",
        ),
        (r#"{"request_id":"r","actors":[]}"#, "unrecognised"),
        (r#"{"payload":{}}"#, "bad-message"),
        (r#"{"a":1,"a":2}"#, "unrecognised"),
        ("{\"\\ud800\":1}", "unrecognised"),
    ];
    for (text, expected) in cases {
        assert_eq!(inspect::classify_frame(text), expected, "{text}");
    }
}

#[test]
fn message_payloads_at_the_edges_parse_or_are_refused() {
    let accepted = [
        r#"{"type":"Integer","data":-9223372036854775808}"#,
        r#"{"type":"Float","data":1.7976931348623157e308}"#,
        r#"{"type":"Object","data":{"data":[123,125]}}"#,
        r#"{"type":"Object","data":{"data":[]}}"#,
        // Not the wrapper form (256 is no byte): an object with a `data` key.
        r#"{"type":"Object","data":{"data":[256]}}"#,
        r#"{"type":"Optional","data":{"data":[110,117,108,108]}}"#,
        r#"{"type":"Array","data":[{"data":[123,125]},{"data":[256]},{"data":"x"},{"data":[]}]}"#,
        r#"{"type":"Stream","data":[]}"#,
        r#"{"type":"Encoded","data":[0,255]}"#,
        r#"{"type":"NetworkEvent","data":{"event_type":"HeartbeatMissed","data":{"data":[1]}}}"#,
        r#"{"data":{"data":[123,125]},"type":"Event"}"#,
        r#"{"type":"Flow","data":{"ignored":true}}"#,
    ];
    for text in accepted {
        let message: Message = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let again = serde_json::to_string(&message).expect("serialises");
        let back: Message = serde_json::from_str(&again).expect("parses again");
        assert_eq!(back, message, "{text}");
    }
    // Read, but with no protocol 1.0 form: sending one fails, naming the kind.
    for text in [
        r#"{"type":"StreamHandle"}"#,
        r#"{"type":"StreamHandle","data":[1,2,3]}"#,
    ] {
        let message: Message = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let err = serde_json::to_string(&message).unwrap_err();
        assert!(err.to_string().contains("StreamHandle"), "{err}");
    }
    let refused = [
        r#"{"type":"Integer","data":9223372036854775808}"#,
        r#"{"type":"Float","data":1e999}"#,
        r#"{"type":"Bytes","data":[256]}"#,
        r#"{"type":"Bytes","data":[-1]}"#,
        r#"{"type":"RemoteReference","data":{"network_id":"a"}}"#,
        r#"{"type":5}"#,
        r#"{"data":1}"#,
        r#"{"type":"String","data":"\ud800"}"#,
        r#"{"type":"NetworkEvent","data":{"event_type":5,"data":null}}"#,
        r#"{"type":"Stream","data":"bytes"}"#,
        r#"{"type":"Object","data":{"data":[91,49,93]}}"#,
        r#"{"type":"String","data":"a","data":"b"}"#,
    ];
    for text in refused {
        assert!(serde_json::from_str::<Message>(text).is_err(), "{text}");
    }
}

#[test]
fn peer_configs_at_the_edges_are_read_or_refused() {
    let refused = [
        "",
        "network_id = \"a\"\nbind_port = 65536\n",
        "network_id = \"a\"\nmax_frame_bytes = 18446744073709551615\n",
        "network_id = \"a\"\nheartbeat_interval_ms = -1\n",
        "network_id = \"a\"\n[reconnect]\nmultiplier = 0\n",
        "network_id = \"a\"\n[[connect]]\n",
        "network_id = \"\"\n",
        "network_id = \"a\"\nnetwork_id = \"b\"\n",
        &format!("network_id = \"a\"\nx = {}\n", "[".repeat(10_000)),
    ];
    for text in refused {
        let err = PeerConfig::from_str_with_env(text, "edge.toml", |_| None);
        assert!(err.is_err(), "{text:?}");
        assert!(err.unwrap_err().to_string().contains("edge.toml"));
    }
    let config = PeerConfig::from_str_with_env("network_id = \"a\"\nworkers = 1024\n", "edge.toml", |_| None)
        .expect("valid");
    let _ = config.to_distributed_config();
}

/// The discovery server's path for one request, without the socket.
fn serve(bytes: &[u8]) -> Option<u16> {
    let registry = SharedRegistry::new(RegistryConfig {
        max_body_bytes: 4096,
        ..RegistryConfig::default()
    });
    let len = head_len(bytes)?;
    let head = match parse_head(&bytes[..len]) {
        Ok(head) => head,
        Err(err) => return Some(err.reply().status),
    };
    let rest = &bytes[len..];
    Some(
        match router::begin(&registry, &head.method, &head.target, head.content_length) {
            Step::NotDiscovery => 404,
            Step::Respond(reply) => reply.status,
            Step::ReadBody { .. } => {
                let declared = head.content_length.unwrap_or(0) as usize;
                router::finish_register(&registry, &rest[..rest.len().min(declared)]).status
            }
            Step::ReadDeregisterBody { network_id, .. } => {
                let declared = head.content_length.unwrap_or(0) as usize;
                router::finish_deregister(&registry, &network_id, &rest[..rest.len().min(declared)]).status
            }
        },
    )
}

#[test]
fn discovery_requests_at_the_edges_get_the_right_status() {
    let cases: [(&[u8], Option<u16>); 9] = [
        (b"\n\n", Some(400)),
        (b"\r\n\r\n", Some(400)),
        (b"GET / HTTP/1.1", None),
        (b"GET /networks HTTP/1.1\n\n", Some(200)),
        (b"GET /networks HTTP/1.1\r\n\n", Some(200)),
        (
            b"POST /register HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
            Some(413),
        ),
        (b"POST /register HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Some(400)),
        (
            b"POST /register?x HTTP/1.0\r\nContent-Length: 2\r\n\r\n[]",
            Some(400),
        ),
        (b"GET \xff HTTP/1.1\r\n\r\n", Some(400)),
    ];
    for (bytes, expected) in cases {
        assert_eq!(serve(bytes), expected, "{:?}", String::from_utf8_lossy(bytes));
    }
    for body in [
        &b""[..],
        b"{\"network_id\":\"a\",\"instance_id\":\"a\",\"endpoint\":\"[::]:1\"}",
        b"{\"network_id\":\"a\",\"instance_id\":\"a\",\"endpoint\":\"[]:1\"}",
        b"{\"network_id\":\"a\",\"instance_id\":\"a\",\"endpoint\":\":1\"}",
        b"{\"network_id\":\"a\",\"instance_id\":\"a\",\"endpoint\":\"h:+1\"}",
    ] {
        assert!(
            parse_registration(body).is_err(),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}
