//! What the discovery client needs of a place that keeps the roster: a
//! discovery server ([`super::server_backend`]) or an etcd cluster
//! ([`super::etcd`]). The client's thread owns its backends and calls them
//! one after the other on every tick; each call is bounded by the client's
//! `request_timeout` (for etcd: a read per member tried, a write in all).

use std::time::Duration;

use super::error::DiscoveryError;
use super::info::NetworkInfo;

/// A roster as a backend read it.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// The entries, not yet checked against the registration rules.
    pub entries: Vec<NetworkInfo>,
    /// Entries the backend could not even read as entries (an etcd value
    /// that is not JSON, a key that does not match its network id).
    pub unreadable: usize,
    /// Why the first of those was left out.
    pub first_problem: Option<String>,
}

/// What a deregistration found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Deregistered {
    /// This instance's entry is gone.
    Removed,
    /// There was nothing of this instance's to remove (expired already, or
    /// a newer instance holds the network).
    NothingToRemove,
}

/// One place peers register with and read the roster from.
pub(crate) trait Backend: Send {
    /// Names the backend in log lines (`http://h:9000`, or
    /// `etcd http://a:2379,http://b:2379`).
    fn name(&self) -> &str;

    /// Registers (or refreshes) this peer's entry.
    fn register(&mut self) -> Result<(), DiscoveryError>;

    /// Reads the roster.
    fn roster(&mut self) -> Result<Listing, DiscoveryError>;

    /// Removes this instance's entry at a clean stop, within `timeout`.
    fn deregister(&mut self, timeout: Duration) -> Result<Deregistered, DiscoveryError>;
}
