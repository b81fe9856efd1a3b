//! `PeerConfig`: the TOML file that `reflow-peer` takes, read and checked.
//!
//! ```
//! use reflow_distributed::peer_config::PeerConfig;
//!
//! let text = "network_id = \"alpha\"\nbind_port = 9100\n";
//! let config = PeerConfig::from_str_with_env(text, "alpha.toml", |_| None).expect("valid");
//! assert_eq!(config.distributed.instance_id, "alpha-1");
//! assert_eq!(config.distributed.bridge.bind_port, 9100);
//! ```
//!
//! Every key, its default and its meaning are listed in `docs/configuration.md`.
//! Errors name the file, the line and the key ([`ConfigError`]).
//!
//! Each key of the file sets one field of the library's own settings
//! ([`DistributedConfig`] and the bridge, discovery and runtime configs in
//! it); this module holds no copy of them, so a default lives in one place.

mod document;
mod error;
mod reader;
pub(crate) mod validate;

use std::ffi::OsString;
use std::path::Path;

use crate::bridge::HoldOptions;
use crate::distributed_config::DistributedConfig;

pub use error::{ConfigError, ConfigErrorKind};

/// Environment variable that supplies the auth token. When set and not empty
/// it replaces `auth_token` from the file, so the secret can stay out of it.
pub const AUTH_TOKEN_ENV: &str = "REFLOW_AUTH_TOKEN";

/// Environment variable that supplies the etcd password. When set and not
/// empty it replaces `[etcd] password_file`.
pub const ETCD_PASSWORD_ENV: &str = "REFLOW_ETCD_PASSWORD";

/// A peer's configuration as read from its TOML file.
///
/// `distributed` holds the peer's settings (identity, bridge, discovery,
/// runtime) with the file's values on top of their defaults; `connect` and
/// `remote_actors` are for the program that starts the peer to act on.
///
/// ```no_run
/// use reflow_distributed::{DistributedNetwork, PeerConfig};
///
/// let config = PeerConfig::from_path("examples/configs/beta.toml")?;
/// let peer = DistributedNetwork::new(config.distributed.clone())?;
/// for remote in &config.remote_actors {
///     peer.register_remote_actor(&remote.actor_id, &remote.network_id)?;
/// }
/// peer.start()?;
/// for target in &config.connect {
///     peer.hold_connection(&target.endpoint, target.options.clone())?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PeerConfig {
    /// Everything a `DistributedNetwork` needs. The token in it
    /// (`auth_token`) is a [`crate::Secret`], never printed.
    pub distributed: DistributedConfig,
    /// Peers to dial at start, from `[[connect]]` tables, in file order.
    pub connect: Vec<ConnectTarget>,
    /// Actors of other networks to register as proxies, from `[[remote_actor]]`.
    pub remote_actors: Vec<RemoteActor>,
}

/// A link to hold from the start (`[[connect]] endpoint = "host:port"`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ConnectTarget {
    /// `host:port` of the other peer's bridge, as written in the file.
    pub endpoint: String,
    /// The network expected there and whether the token may go in clear;
    /// `legacy_auth` defaults to the top-level `legacy_auth`.
    pub options: HoldOptions,
}

/// An actor of another network (`[[remote_actor]]`), reachable locally as
/// the proxy node `actor_id@network_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteActor {
    /// The actor's id in its own network.
    pub actor_id: String,
    /// The network that hosts it; never this peer's own.
    pub network_id: String,
}

impl PeerConfig {
    /// All defaults for network `network_id` (not checked; the file readers check).
    pub fn new(network_id: impl Into<String>) -> Self {
        PeerConfig {
            distributed: DistributedConfig::new(network_id),
            connect: Vec::new(),
            remote_actors: Vec::new(),
        }
    }

    /// Reads and checks the file at `path`; [`AUTH_TOKEN_ENV`] is read from
    /// the process environment. Errors are named after the path as given.
    /// A relative `[delivery] outbox_dir` is taken from the file's directory.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`], `FILE:LINE: message`, for the earliest problem in
    /// the file: unreadable ([`ConfigErrorKind::Io`]), not TOML, an unknown
    /// or missing key, a value of the wrong type or out of range, a
    /// duplicate entry, or a `REFLOW_AUTH_TOKEN` that is not UTF-8.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_path_with_env(path, |var| std::env::var_os(var))
    }

    /// As [`PeerConfig::from_path`], with `env` looking up environment variables.
    ///
    /// # Errors
    ///
    /// As [`PeerConfig::from_path`].
    pub fn from_path_with_env(
        path: impl AsRef<Path>,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|err| ConfigError::new(&name, None, ConfigErrorKind::Io(err)))?;
        let dir = path.parent().unwrap_or(Path::new(""));
        document::read(&text, &name, dir, &env)
    }

    /// Reads `text` as if it were the file `name`, with the process
    /// environment, exactly as [`PeerConfig::from_path`] would.
    ///
    /// # Errors
    ///
    /// As [`PeerConfig::from_path`], except that there is no file to read.
    pub fn from_str_named(text: &str, name: &str) -> Result<Self, ConfigError> {
        Self::from_str_with_env(text, name, |var| std::env::var_os(var))
    }

    /// Reads `text` as the file `name`, with `env` looking up environment
    /// variables (`|_| None` for none). A relative `outbox_dir` is taken
    /// from `name`'s directory, as it would be for that file.
    ///
    /// # Errors
    ///
    /// As [`PeerConfig::from_str_named`].
    pub fn from_str_with_env(
        text: &str,
        name: &str,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, ConfigError> {
        let dir = Path::new(name).parent().unwrap_or(Path::new(""));
        document::read(text, name, dir, &env)
    }

    /// A copy of [`PeerConfig::distributed`], for `DistributedNetwork::new`.
    pub fn to_distributed_config(&self) -> DistributedConfig {
        self.distributed.clone()
    }
}

#[cfg(test)]
mod documented;
#[cfg(test)]
mod tests;
