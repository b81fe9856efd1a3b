//! A discovery server (`reflow-discovery`, or the router mounted elsewhere)
//! as a [`Backend`]: `POST /register`, `GET /networks` and
//! `DELETE /networks/{network}?instance_id=…`, signed when a token is set.

use std::time::Duration;

use super::auth;
use super::backend::{Backend, Deregistered, Listing};
use super::error::DiscoveryError;
use super::info::NetworkInfo;
use super::router::percent_encode;

/// Largest roster body read from a server.
const MAX_ROSTER_BYTES: u64 = 16 * 1024 * 1024;
/// Largest error body read from a server.
const MAX_ERROR_BYTES: u64 = 4096;

/// One discovery server.
pub(crate) struct ServerBackend {
    agent: ureq::Agent,
    /// `http://host:port[/path]`, no trailing `/`.
    base: String,
    /// The registration JSON.
    body: String,
    network_id: String,
    instance_id: String,
    /// Signs every request when set.
    token: Option<Vec<u8>>,
}

impl ServerBackend {
    /// A server at `base`, registering `body` (the registration JSON) for
    /// `network_id`/`instance_id`.
    pub(crate) fn new(
        agent: ureq::Agent,
        base: String,
        body: String,
        network_id: &str,
        instance_id: &str,
        token: Option<Vec<u8>>,
    ) -> ServerBackend {
        ServerBackend {
            agent,
            base,
            body,
            network_id: network_id.to_string(),
            instance_id: instance_id.to_string(),
            token,
        }
    }

    /// The headers that sign a request to `url` with `body`; none without a token.
    fn signature(&self, method: &str, url: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        match &self.token {
            Some(token) => auth::signed_headers(token, method, target_of(url), body).to_vec(),
            None => Vec::new(),
        }
    }
}

impl Backend for ServerBackend {
    fn name(&self) -> &str {
        &self.base
    }

    fn register(&mut self) -> Result<(), DiscoveryError> {
        let url = format!("{}/register", self.base);
        let mut request = self.agent.post(&url).header("Content-Type", "application/json");
        for (name, value) in self.signature("POST", &url, self.body.as_bytes()) {
            request = request.header(name, value);
        }
        let mut response = request
            .send(self.body.as_bytes())
            .map_err(|e| DiscoveryError::Http {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BYTES)
            .read_to_string()
            .unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        Err(DiscoveryError::Status { url, status, message })
    }

    fn roster(&mut self) -> Result<Listing, DiscoveryError> {
        let url = format!("{}/networks", self.base);
        let mut request = self.agent.get(&url);
        for (name, value) in self.signature("GET", &url, b"") {
            request = request.header(name, value);
        }
        let mut response = request.call().map_err(|e| DiscoveryError::Http {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(DiscoveryError::Status {
                url,
                status,
                message: String::new(),
            });
        }
        let decode = |reason: String| DiscoveryError::Decode {
            url: url.clone(),
            reason,
        };
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_ROSTER_BYTES)
            .read_to_vec()
            .map_err(|e| decode(e.to_string()))?;
        let entries: Vec<NetworkInfo> = serde_json::from_slice(&bytes).map_err(|e| decode(e.to_string()))?;
        Ok(Listing {
            entries,
            ..Listing::default()
        })
    }

    fn deregister(&mut self, timeout: Duration) -> Result<Deregistered, DiscoveryError> {
        let url = format!(
            "{}/networks/{}?instance_id={}",
            self.base,
            percent_encode(&self.network_id),
            percent_encode(&self.instance_id)
        );
        let mut request = self.agent.delete(&url);
        for (name, value) in self.signature("DELETE", &url, b"") {
            request = request.header(name, value);
        }
        let response = request
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call()
            .map_err(|e| DiscoveryError::Http {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        match response.status().as_u16() {
            200 => Ok(Deregistered::Removed),
            // Expired already, or a newer instance of this network took over.
            404 | 409 => Ok(Deregistered::NothingToRemove),
            status => Err(DiscoveryError::Status {
                url,
                status,
                message: String::new(),
            }),
        }
    }
}

/// The request target of a URL (`http://h:9/networks/a?x` → `/networks/a?x`),
/// as the server sees it on its request line and checks the signature over.
fn target_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("/", |at| &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_target_is_the_path_and_query() {
        assert_eq!(target_of("http://h:9/register"), "/register");
        assert_eq!(
            target_of("http://h:9/base/networks/a%20b?instance_id=a-1"),
            "/base/networks/a%20b?instance_id=a-1"
        );
        assert_eq!(target_of("http://h:9"), "/");
    }
}
