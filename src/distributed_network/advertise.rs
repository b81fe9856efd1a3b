//! Which address other peers should dial.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// The `host:port` to register with discovery: the configured advertise
/// address if any (a bare host gets the bound port), else the bound address,
/// else (bound to a wildcard) the address of the interface that routes
/// outward, else loopback.
pub(crate) fn advertised_endpoint(configured: Option<&str>, bound: SocketAddr) -> String {
    if let Some(configured) = configured.map(str::trim).filter(|s| !s.is_empty()) {
        return if has_port(configured) {
            configured.to_string()
        } else {
            format!("{}:{}", bracket(configured), bound.port())
        };
    }
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let ip = detect_outward_ip().unwrap_or_else(|| {
        log::warn!(
            "bound to {} and no outward interface found; advertising 127.0.0.1 (set advertise_address)",
            bound.ip()
        );
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    });
    SocketAddr::new(ip, bound.port()).to_string()
}

fn has_port(endpoint: &str) -> bool {
    endpoint.parse::<SocketAddr>().is_ok()
        || endpoint
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.contains(':') && port.parse::<u16>().is_ok())
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Connecting a UDP socket sends nothing; it only asks the kernel which local
/// address would be used to reach a (documentation-range) outside address.
fn detect_outward_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn configured_host_gets_the_bound_port() {
        assert_eq!(
            advertised_endpoint(Some("10.1.2.3"), addr("0.0.0.0:9100")),
            "10.1.2.3:9100"
        );
        assert_eq!(
            advertised_endpoint(Some("peer.local:7000"), addr("0.0.0.0:9100")),
            "peer.local:7000"
        );
    }

    #[test]
    fn a_specific_bind_is_advertised_as_it_is() {
        assert_eq!(
            advertised_endpoint(None, addr("127.0.0.1:9100")),
            "127.0.0.1:9100"
        );
    }

    #[test]
    fn a_wildcard_bind_is_never_advertised() {
        let endpoint = advertised_endpoint(None, addr("0.0.0.0:9100"));
        assert!(!endpoint.starts_with("0.0.0.0"), "{endpoint}");
        assert!(endpoint.ends_with(":9100"), "{endpoint}");
    }
}
