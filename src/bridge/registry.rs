//! The connection map, keyed by remote `network_id`, with the capacity bound
//! and the rule that leaves one connection per pair of networks.
//!
//! Duplicate rule (both sides apply it, so both keep the same connection):
//! when two connections link the same two networks, keep the one dialed by the
//! network whose id sorts first; if both were dialed by the same side (a peer
//! that restarted and redialed), keep the newer one. The loser is closed with
//! the reason `duplicate connection`, which the other side recognises and
//! does not redial.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::connection::Connection;

/// What became of a connection offered to the map.
pub(crate) enum Insert {
    /// In the map; `replaced` (if any) lost to it and must be closed.
    Added { replaced: Option<Arc<Connection>> },
    /// An existing connection to the same network wins; close the new one.
    Duplicate,
    /// `max_connections` reached.
    Full,
    /// The bridge is shutting down.
    Closed,
}

#[derive(Default)]
struct Map {
    connections: HashMap<String, Arc<Connection>>,
    closed: bool,
}

pub(crate) struct Registry {
    local_network: String,
    max_connections: usize,
    map: RwLock<Map>,
}

/// True when a new connection should replace an existing one to the same
/// network. `*_dialed` tells whether this side dialed each.
pub(crate) fn keep_new(local: &str, remote: &str, new_dialed: bool, existing_dialed: bool) -> bool {
    if new_dialed == existing_dialed {
        return true;
    }
    let local_wins = local < remote;
    new_dialed == local_wins
}

impl Registry {
    pub(crate) fn new(local_network: String, max_connections: usize) -> Self {
        Registry {
            local_network,
            max_connections,
            map: RwLock::new(Map::default()),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Map> {
        self.map.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Map> {
        self.map.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn insert(&self, connection: &Arc<Connection>) -> Insert {
        let mut map = self.write();
        if map.closed {
            return Insert::Closed;
        }
        let network = &connection.network_id;
        if let Some(existing) = map.connections.get(network) {
            let keep = keep_new(&self.local_network, network, connection.dialed, existing.dialed);
            log::debug!(
                "{}: second connection to {network} (new dialed here: {}, existing dialed here: {}); keeping the {}",
                self.local_network,
                connection.dialed,
                existing.dialed,
                if keep { "new one" } else { "existing one" }
            );
            if !keep {
                return Insert::Duplicate;
            }
            let replaced = map.connections.insert(network.clone(), Arc::clone(connection));
            return Insert::Added { replaced };
        }
        if map.connections.len() >= self.max_connections {
            return Insert::Full;
        }
        map.connections.insert(network.clone(), Arc::clone(connection));
        Insert::Added { replaced: None }
    }

    /// Removes `connection` if it is still the one mapped for its network.
    pub(crate) fn remove_if_same(&self, connection: &Connection) -> bool {
        let mut map = self.write();
        let same = map
            .connections
            .get(&connection.network_id)
            .is_some_and(|c| c.id == connection.id);
        if same {
            map.connections.remove(&connection.network_id);
        }
        same
    }

    pub(crate) fn get(&self, network_id: &str) -> Option<Arc<Connection>> {
        self.read().connections.get(network_id).cloned()
    }

    pub(crate) fn contains(&self, network_id: &str) -> bool {
        self.read().connections.contains_key(network_id)
    }

    pub(crate) fn len(&self) -> usize {
        self.read().connections.len()
    }

    pub(crate) fn networks(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().connections.keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) fn all(&self) -> Vec<Arc<Connection>> {
        self.read().connections.values().cloned().collect()
    }

    /// Empties the map and refuses further inserts.
    pub(crate) fn close(&self) -> Vec<Arc<Connection>> {
        let mut map = self.write();
        map.closed = true;
        map.connections.drain().map(|(_, c)| c).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::keep_new;

    #[test]
    fn both_sides_keep_the_connection_dialed_by_the_smaller_id() {
        // alpha < beta: keep the connection alpha dialed.
        // On alpha, its own dial is `dialed = true`.
        assert!(keep_new("alpha", "beta", true, false));
        assert!(!keep_new("alpha", "beta", false, true));
        // On beta, alpha's dial is an accepted connection (`dialed = false`).
        assert!(keep_new("beta", "alpha", false, true));
        assert!(!keep_new("beta", "alpha", true, false));
    }

    #[test]
    fn same_dialer_keeps_the_newer_connection() {
        assert!(keep_new("alpha", "beta", true, true));
        assert!(keep_new("alpha", "beta", false, false));
    }
}
