//! What a configured discovery endpoint names: a discovery server
//! (`http://host:port`, or a bare `host:port`) or a member of an etcd
//! cluster (`etcd://host:port[/prefix]`).

use super::error::DiscoveryError;

/// The key prefix etcd entries live under when the endpoint names none.
pub(crate) const DEFAULT_ETCD_PREFIX: &str = "/reflow/networks/";

/// A configured endpoint, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A discovery server's base URL, `http://host:port[/path]`, without a
    /// trailing `/`.
    Server(String),
    /// One member of an etcd cluster.
    EtcdMember {
        /// The member's v3 JSON gateway, `http://host:port`.
        base: String,
        /// The key prefix, starting and ending with `/`.
        prefix: String,
    },
}

/// Reads one configured endpoint.
///
/// # Errors
///
/// [`DiscoveryError::InvalidEndpoint`] for another scheme (`https://` among
/// them: this build has no TLS), a missing host, white space, or an etcd
/// member with a path other than a key prefix.
pub(crate) fn parse(raw: &str) -> Result<Endpoint, DiscoveryError> {
    let bad = |reason: &str| DiscoveryError::InvalidEndpoint {
        endpoint: raw.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = raw.trim();
    let (etcd, rest) = match trimmed.split_once("://") {
        None => (false, trimmed),
        Some(("http", rest)) => (false, rest),
        Some(("etcd", rest)) => (true, rest),
        Some(("https" | "etcds", _)) => {
            return Err(bad(
                "TLS is not supported by this build; reach a TLS server through a local \
                 TLS proxy (docs/discovery.md, \"TLS\")",
            ));
        }
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "scheme {scheme}:// is not supported, only http:// and etcd://"
            )));
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    if authority.is_empty() || rest.contains(char::is_whitespace) {
        return Err(bad("no host"));
    }
    if authority.contains(['@', '?', '#']) {
        return Err(bad(
            "credentials, queries and fragments do not belong in an endpoint",
        ));
    }
    if !etcd {
        return Ok(Endpoint::Server(format!("http://{}", rest.trim_end_matches('/'))));
    }
    let prefix = match path.trim_end_matches('/') {
        "" => DEFAULT_ETCD_PREFIX.to_string(),
        p if p.contains(['?', '#']) => return Err(bad("an etcd key prefix cannot hold '?' or '#'")),
        p => format!("{p}/"),
    };
    Ok(Endpoint::EtcdMember {
        base: format!("http://{authority}"),
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(raw: &str) -> String {
        match parse(raw).expect("valid") {
            Endpoint::Server(base) => base,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn servers_get_a_scheme_and_lose_trailing_slashes() {
        assert_eq!(server("127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(server("http://h:9/"), "http://h:9");
        assert_eq!(server("http://h:9/base/"), "http://h:9/base");
        assert!(parse("http://").is_err());
        assert!(parse("  ").is_err());
        assert!(parse("ftp://h:9").is_err());
    }

    #[test]
    fn tls_is_refused_with_the_way_round_it() {
        for raw in ["https://h:9", "etcds://h:2379"] {
            let err = parse(raw).expect_err("no TLS").to_string();
            assert!(err.contains("TLS proxy"), "{err}");
        }
    }

    #[test]
    fn etcd_members_carry_a_prefix_default_or_their_own() {
        assert_eq!(
            parse("etcd://10.0.0.5:2379").expect("valid"),
            Endpoint::EtcdMember {
                base: "http://10.0.0.5:2379".into(),
                prefix: "/reflow/networks/".into()
            }
        );
        assert_eq!(
            parse("etcd://h:2379/").expect("valid"),
            parse("etcd://h:2379").expect("valid")
        );
        assert_eq!(
            parse("etcd://h:2379/staging/reflow").expect("valid"),
            Endpoint::EtcdMember {
                base: "http://h:2379".into(),
                prefix: "/staging/reflow/".into()
            }
        );
        assert!(parse("etcd://user:pw@h:2379").is_err());
        assert!(parse("etcd:///prefix").is_err());
    }
}
