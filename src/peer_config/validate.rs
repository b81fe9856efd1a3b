//! Checks of single values: hosts, `host:port` endpoints and discovery URLs.
//! Pure functions over strings, so every rule has a fast unit test. Ids
//! (network, instance, actor) follow [`crate::names::check_id`].

use std::net::IpAddr;

/// A DNS name (`alpha.example`, `localhost`) or an IP address; IPv6 without
/// brackets. No port.
pub(crate) fn is_valid_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Splits `host:port` (or `[v6]:port`) into host and a non-zero port.
pub(crate) fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port) = text.rsplit_once(':')?;
        if host.contains(':') || !is_valid_host(host) {
            return None;
        }
        (host, port)
    };
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    (port != 0).then(|| (host.to_string(), port))
}

/// Checks an `IP:PORT` to listen on (port 0 allowed) and returns it as written.
pub(crate) fn bind_address(text: &str) -> Option<String> {
    text.parse::<std::net::SocketAddr>()
        .ok()
        .map(|_| text.to_string())
}

/// Checks a `host:port` endpoint and returns it as written.
pub(crate) fn endpoint(text: &str) -> Option<String> {
    parse_host_port(text).map(|_| text.to_string())
}

/// A discovery server: `http://host:port` (a trailing `/` is dropped) or a
/// bare `host:port`, returned as `http://host:port`; or an etcd member,
/// `etcd://host:port[/prefix]`, returned as written. `https` is refused:
/// this build has no TLS.
pub(crate) fn discovery_url(text: &str) -> Option<String> {
    if let Some(rest) = text.strip_prefix("etcd://") {
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let ok = parse_host_port(authority).is_some() && !path.contains(['?', '#', ' ']);
        return ok.then(|| text.to_string());
    }
    let authority = match text.strip_prefix("http://") {
        Some(rest) => rest.strip_suffix('/').unwrap_or(rest),
        None if text.contains("://") => return None,
        None => text,
    };
    parse_host_port(authority).map(|_| format!("http://{authority}"))
}

/// An address to advertise: a host without a port, and not a wildcard
/// (`0.0.0.0`, `::`), which no other peer could dial.
pub(crate) fn advertise_host(text: &str) -> Option<String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return (!ip.is_unspecified()).then(|| text.to_string());
    }
    is_valid_host(text).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_a_host_and_a_port() {
        assert_eq!(
            parse_host_port("127.0.0.1:9100"),
            Some(("127.0.0.1".into(), 9100))
        );
        assert_eq!(parse_host_port("localhost:80"), Some(("localhost".into(), 80)));
        assert_eq!(parse_host_port("[::1]:9100"), Some(("::1".into(), 9100)));
        for bad in [
            "nohost",
            ":9100",
            "host:",
            "host:0",
            "host:65536",
            "host:+80",
            "ho st:80",
            "::1:80",
            "[nothex]:80",
            "[::1]9100",
            "-bad:80",
            "a..b:80",
        ] {
            assert_eq!(parse_host_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn discovery_urls_are_normalised_to_http() {
        assert_eq!(
            discovery_url("http://127.0.0.1:9000").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            discovery_url("http://127.0.0.1:9000/").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            discovery_url("disco.local:9000").as_deref(),
            Some("http://disco.local:9000")
        );
        for bad in [
            "https://h:9000",
            "ftp://h:21",
            "http://h",
            "http://h:9000/path",
            "h",
        ] {
            assert_eq!(discovery_url(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn advertised_hosts_are_dialable() {
        assert!(advertise_host("10.1.2.3").is_some());
        assert!(advertise_host("peer.example").is_some());
        assert!(advertise_host("::1").is_some());
        for bad in ["0.0.0.0", "::", "host:9100", "", "a b"] {
            assert_eq!(advertise_host(bad), None, "{bad:?}");
        }
    }
}
