//! The two records of the discovery contract: what a peer registers
//! ([`RegistrationInfo`]) and what the roster lists ([`NetworkInfo`]), plus the
//! validation of a registration body.

use serde::{Deserialize, Serialize};

use super::error::DiscoveryError;
use crate::names::{check_id, escaped, is_format};

/// Longest accepted endpoint or capability, in characters. Ids follow
/// [`crate::names::MAX_ID_BYTES`] instead.
pub(crate) const MAX_FIELD_CHARS: usize = 256;
/// Most capabilities one registration may list.
pub(crate) const MAX_CAPABILITIES: usize = 64;

/// What a peer sends to `POST /register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationInfo {
    /// The peer's network name (`alpha`); one roster entry per network.
    pub network_id: String,
    /// The peer process's instance name (`alpha-1`).
    pub instance_id: String,
    /// `host:port` other peers dial. The wildcard address with a port
    /// (`0.0.0.0:9100`, `[::]:9100`) leaves the address to discovery: a
    /// server lists it under the request's source address, etcd under this
    /// host's address toward the member.
    pub endpoint: String,
    /// Protocol capabilities the peer offers (`actor_messaging`, …).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// One live entry of `GET /networks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// The network name.
    pub network_id: String,
    /// The instance that registered last.
    pub instance_id: String,
    /// `host:port` to dial.
    pub endpoint: String,
    /// Capabilities as registered.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// When the server last heard from the peer, RFC 3339 UTC, server clock.
    pub last_seen: String,
}

impl NetworkInfo {
    /// True when `other` describes a different peer: another endpoint,
    /// instance or capability list. A fresher `last_seen` alone is no change.
    pub fn differs_from(&self, other: &NetworkInfo) -> bool {
        self.endpoint != other.endpoint
            || self.instance_id != other.instance_id
            || self.capabilities != other.capabilities
    }
}

/// A registration body as it arrives, before validation: every field optional
/// so that a missing field gets its own message instead of serde's.
#[derive(Deserialize)]
struct RawRegistration {
    network_id: Option<String>,
    instance_id: Option<String>,
    endpoint: Option<String>,
    #[serde(default)]
    capabilities: Option<Vec<String>>,
}

/// Parses and validates a `POST /register` body. The error text is the one
/// the server sends back in `{"error": …}`. A wildcard endpoint is refused;
/// a server that knows the request's source resolves it instead.
///
/// # Errors
///
/// The reason the body is not a valid registration.
#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
pub fn parse_registration(body: &[u8]) -> Result<RegistrationInfo, String> {
    parse_registration_from(body, None).map(|(info, _)| info)
}

/// As [`parse_registration`], for a request that came from `source`: a
/// wildcard endpoint (`0.0.0.0:PORT`, `[::]:PORT`, port not 0) is registered
/// as `source:PORT`, because Reflow's own peers advertise the wildcard when
/// bound to it and ignore the answer. The second value is the endpoint as
/// sent when it was so rewritten.
///
/// # Errors
///
/// The reason the body is not a valid registration.
pub(crate) fn parse_registration_from(
    body: &[u8],
    source: Option<std::net::IpAddr>,
) -> Result<(RegistrationInfo, Option<String>), String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    if !value.is_object() {
        return Err("expected a JSON object with network_id, instance_id and endpoint".into());
    }
    let raw: RawRegistration = serde_json::from_value(value).map_err(|e| format!("bad field type: {e}"))?;
    let mut info = RegistrationInfo {
        network_id: required("network_id", raw.network_id)?,
        instance_id: required("instance_id", raw.instance_id)?,
        endpoint: required("endpoint", raw.endpoint)?,
        capabilities: raw.capabilities.unwrap_or_default(),
    };
    let mut sent = None;
    if let Some(resolved) = source.and_then(|ip| resolve_wildcard(&info.endpoint, ip)) {
        sent = Some(std::mem::replace(&mut info.endpoint, resolved));
    }
    validate_registration(&info).map_err(|e| match e {
        DiscoveryError::InvalidRegistration(reason) => reason,
        other => other.to_string(),
    })?;
    Ok((info, sent))
}

/// `source:PORT` when `endpoint` is the wildcard address with a port other
/// than 0; `None` for anything else (which validation then judges).
pub(crate) fn resolve_wildcard(endpoint: &str, source: std::net::IpAddr) -> Option<String> {
    let (host, port) = endpoint.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: std::net::IpAddr = bare.parse().ok()?;
    // A v4 client of a dual-stack listener shows up as ::ffff:a.b.c.d.
    let source = source.to_canonical();
    (ip.is_unspecified() && !source.is_unspecified())
        .then(|| std::net::SocketAddr::new(source, port).to_string())
}

fn required(name: &str, value: Option<String>) -> Result<String, String> {
    value.ok_or_else(|| format!("missing field `{name}`"))
}

/// Checks this peer's own registration before it is sent: the rules of
/// [`validate_registration`], except that a wildcard endpoint with a port
/// passes, since every backend lists it under an address it finds.
pub(crate) fn validate_own_registration(info: &RegistrationInfo) -> Result<(), DiscoveryError> {
    match resolve_wildcard(&info.endpoint, std::net::Ipv4Addr::LOCALHOST.into()) {
        Some(stand_in) => validate_registration(&RegistrationInfo {
            endpoint: stand_in,
            ..info.clone()
        }),
        None => validate_registration(info),
    }
}

/// Checks a registration: ids by [`crate::names::check_id`], a dialable
/// `host:port` endpoint, bounded capabilities. The error text names the field
/// and the rule broken, and never holds a raw control or format character.
pub(crate) fn validate_registration(info: &RegistrationInfo) -> Result<(), DiscoveryError> {
    check_fields(
        &info.network_id,
        &info.instance_id,
        &info.endpoint,
        &info.capabilities,
    )
    .map_err(DiscoveryError::InvalidRegistration)
}

/// Checks an entry of the roster a discovery server sent: the rules of a
/// registration, and a `last_seen` as bounded as any other field. A server
/// is a peer like any other; what it lists reaches logs and dialers.
pub(crate) fn validate_roster_entry(entry: &NetworkInfo) -> Result<(), String> {
    check_fields(
        &entry.network_id,
        &entry.instance_id,
        &entry.endpoint,
        &entry.capabilities,
    )?;
    check_text("field `last_seen`", &entry.last_seen)
}

fn check_fields(
    network_id: &str,
    instance_id: &str,
    endpoint: &str,
    capabilities: &[String],
) -> Result<(), String> {
    for (name, value) in [("network_id", network_id), ("instance_id", instance_id)] {
        check_id(value).map_err(|e| format!("field `{name}` {e}"))?;
    }
    check_text("field `endpoint`", endpoint)?;
    validate_endpoint(endpoint)?;
    if capabilities.len() > MAX_CAPABILITIES {
        return Err(format!("more than {MAX_CAPABILITIES} capabilities"));
    }
    for (i, capability) in capabilities.iter().enumerate() {
        check_text(&format!("capabilities[{i}]"), capability)?;
    }
    Ok(())
}

/// A free-form field (endpoint, capability): not blank, at most
/// [`MAX_FIELD_CHARS`] characters, and nothing that could forge or hide text
/// where it is shown (control and invisible format characters).
fn check_text(what: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(format!("{what} is longer than {MAX_FIELD_CHARS} characters"));
    }
    match value
        .char_indices()
        .find(|&(_, ch)| ch.is_control() || is_format(ch))
    {
        Some((position, ch)) => Err(format!(
            "{what} contains a control or invisible format character (U+{:04X}) at byte {position}",
            u32::from(ch)
        )),
        None => Ok(()),
    }
}

/// Checks that `endpoint` is `host:port` (IPv6 in brackets), with a port in
/// 1..=65535 and a host other than the wildcard address.
pub(crate) fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    let shape = || format!("endpoint {:?} is not host:port", escaped(endpoint));
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(shape)?;
    // Digits only: `u16::from_str` also takes a leading `+`, which no dialer does.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(shape());
    }
    let port: u16 = port.parse().map_err(|_| shape())?;
    if port == 0 {
        return Err(format!("endpoint {:?} has port 0", escaped(endpoint)));
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let bracketed = bare.len() != host.len();
    if bare.is_empty()
        || bare.chars().any(|c| c.is_whitespace() || "/?#@".contains(c))
        || (bare.contains(':') && !bracketed)
    {
        return Err(shape());
    }
    if let Ok(ip) = bare.parse::<std::net::IpAddr>()
        && ip.is_unspecified()
    {
        return Err(format!(
            "endpoint {:?} is the wildcard address; advertise an address other peers can dial",
            escaped(endpoint)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_registration_parses() {
        let body = br#"{"network_id":"alpha","instance_id":"alpha-1","endpoint":"127.0.0.1:9100","capabilities":["actor_messaging"]}"#;
        let info = parse_registration(body).expect("valid");
        assert_eq!(info.network_id, "alpha");
        assert_eq!(info.capabilities, vec!["actor_messaging".to_string()]);
    }

    #[test]
    fn missing_capabilities_mean_none() {
        let body = br#"{"network_id":"a","instance_id":"a-1","endpoint":"h:1"}"#;
        assert!(parse_registration(body).expect("valid").capabilities.is_empty());
    }

    #[test]
    fn each_bad_body_gets_its_own_reason() {
        let cases: [(&[u8], &str); 8] = [
            (b"{not json", "malformed JSON"),
            (b"[1,2]", "expected a JSON object"),
            (
                br#"{"instance_id":"a-1","endpoint":"h:1"}"#,
                "missing field `network_id`",
            ),
            (
                br#"{"network_id":" ","instance_id":"a-1","endpoint":"h:1"}"#,
                "field `network_id` contains whitespace (U+0020) at byte 0",
            ),
            (
                br#"{"network_id":5,"instance_id":"a-1","endpoint":"h:1"}"#,
                "bad field type",
            ),
            (
                br#"{"network_id":"a","instance_id":"a-1","endpoint":"nohost"}"#,
                "is not host:port",
            ),
            (
                br#"{"network_id":"a","instance_id":"a-1","endpoint":"0.0.0.0:9100"}"#,
                "wildcard",
            ),
            (
                br#"{"network_id":"a","instance_id":"a-1","endpoint":"h:1","capabilities":[""]}"#,
                "capabilities",
            ),
        ];
        for (body, expected) in cases {
            let err = parse_registration(body).expect_err("must be rejected");
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        }
    }

    #[test]
    fn ids_follow_the_id_rule_and_errors_name_it() {
        let flood = "a".repeat(100 * 1024);
        let cases = [
            ("", "field `network_id` is empty"),
            (
                "beta\n2026-01-01 INFO fake",
                "field `network_id` contains a control character (U+000A) at byte 4",
            ),
            (
                "al\u{202e}pha",
                "field `network_id` contains an invisible format character (U+202E) at byte 2",
            ),
            (
                "a\u{200b}",
                "field `network_id` contains an invisible format character (U+200B) at byte 1",
            ),
            (
                "sink@beta",
                "field `network_id` contains '@' at byte 4 ('@' separates actor and network)",
            ),
            ("a:b", "field `network_id` contains ':' at byte 1"),
            ("a/b", "field `network_id` contains '/' at byte 1"),
            ("a b", "field `network_id` contains whitespace (U+0020) at byte 1"),
            (
                flood.as_str(),
                "field `network_id` is 102400 bytes long; the limit is 256",
            ),
        ];
        for (id, expected) in cases {
            let body = serde_json::json!({"network_id": id, "instance_id": "a-1", "endpoint": "h:1"});
            let err = parse_registration(body.to_string().as_bytes()).expect_err(id);
            assert!(
                err.starts_with(expected),
                "{err:?} should start with {expected:?}"
            );
            assert!(!err.contains(['\n', '\u{202e}', '\u{200b}']), "{err:?}");
        }
        let body = serde_json::json!({"network_id": "a", "instance_id": "a\u{2067}", "endpoint": "h:1"});
        let err = parse_registration(body.to_string().as_bytes()).expect_err("bidi instance");
        assert!(
            err.starts_with("field `instance_id` contains an invisible format character (U+2067)"),
            "{err}"
        );
    }

    #[test]
    fn endpoints_and_capabilities_hold_no_hidden_characters() {
        let with = |endpoint: &str, capability: &str| {
            let body = serde_json::json!({
                "network_id": "a", "instance_id": "a-1", "endpoint": endpoint, "capabilities": [capability]
            });
            parse_registration(body.to_string().as_bytes())
        };
        assert!(with("h:1", "actor_messaging").is_ok());
        let err = with("h\u{202e}:1", "x").expect_err("bidi endpoint");
        assert!(
            err.starts_with("field `endpoint` contains a control or invisible format character (U+202E)"),
            "{err}"
        );
        let err = with("h:1", "x\ny").expect_err("newline capability");
        assert!(err.starts_with("capabilities[0] contains a control"), "{err}");
        let err = with("h\"h:0", "x").expect_err("port 0");
        assert_eq!(err, r#"endpoint "h\"h:0" has port 0"#);
    }

    #[test]
    fn roster_entries_follow_the_registration_rules() {
        let good = NetworkInfo {
            network_id: "a".into(),
            instance_id: "a-1".into(),
            endpoint: "h:1".into(),
            capabilities: vec![],
            last_seen: "2026-01-01T00:00:00.000Z".into(),
        };
        assert_eq!(validate_roster_entry(&good), Ok(()));
        let mut bad = good.clone();
        bad.network_id = "a\nINFO fake".into();
        assert!(
            validate_roster_entry(&bad)
                .unwrap_err()
                .starts_with("field `network_id` contains a control")
        );
        let mut bad = good.clone();
        bad.last_seen = "x".repeat(100_000);
        assert!(
            validate_roster_entry(&bad)
                .unwrap_err()
                .starts_with("field `last_seen` is longer")
        );
    }

    #[test]
    fn endpoints_are_host_and_port() {
        for ok in ["127.0.0.1:9100", "peer.example:80", "[::1]:9100", "h:65535"] {
            assert_eq!(validate_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ":9100",
            "h:",
            "h:0",
            "h:70000",
            "::1:9100",
            "[::]:9",
            "0.0.0.0:1",
            "h h:1",
            "http://h:1",
        ] {
            assert!(validate_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_wildcard_endpoint_takes_the_source_address() {
        let v4: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
        let mapped: std::net::IpAddr = "::ffff:10.0.0.7".parse().expect("ip");
        let v6: std::net::IpAddr = "fe80::1".parse().expect("ip");
        assert_eq!(
            resolve_wildcard("0.0.0.0:7123", v4).as_deref(),
            Some("127.0.0.1:7123")
        );
        assert_eq!(
            resolve_wildcard("[::]:7123", v4).as_deref(),
            Some("127.0.0.1:7123")
        );
        assert_eq!(
            resolve_wildcard("[::]:7123", mapped).as_deref(),
            Some("10.0.0.7:7123")
        );
        assert_eq!(
            resolve_wildcard("0.0.0.0:7123", v6).as_deref(),
            Some("[fe80::1]:7123")
        );
        for not_wildcard in [
            "0.0.0.0:0",
            "[::]:0",
            "h:1",
            "127.0.0.1:5",
            "0.0.0.0:+1",
            "0.0.0.0",
        ] {
            assert_eq!(resolve_wildcard(not_wildcard, v4), None, "{not_wildcard}");
        }
        let body = br#"{"network_id":"rf","instance_id":"rf-1","endpoint":"0.0.0.0:7123"}"#;
        let (info, sent) = parse_registration_from(body, Some(v4)).expect("resolved");
        assert_eq!(
            (info.endpoint.as_str(), sent.as_deref()),
            ("127.0.0.1:7123", Some("0.0.0.0:7123"))
        );
        assert!(parse_registration(body).is_err(), "no source, no guess");
        let port0 = br#"{"network_id":"rf","instance_id":"rf-1","endpoint":"0.0.0.0:0"}"#;
        let err = parse_registration_from(port0, Some(v4)).expect_err("port 0");
        assert!(err.contains("port 0"), "{err}");
    }

    #[test]
    fn last_seen_alone_is_no_change() {
        let a = NetworkInfo {
            network_id: "a".into(),
            instance_id: "a-1".into(),
            endpoint: "h:1".into(),
            capabilities: vec![],
            last_seen: "2026-01-01T00:00:00.000Z".into(),
        };
        let mut b = a.clone();
        b.last_seen = "2026-01-01T00:00:15.000Z".into();
        assert!(!a.differs_from(&b));
        b.endpoint = "h:2".into();
        assert!(a.differs_from(&b));
    }
}
