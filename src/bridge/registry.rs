//! The map of sessions, keyed by remote `network_id`, with the capacity
//! bound and the rules that leave one session per pair of networks.
//!
//! Same instance (a simultaneous dial, or a redial after a cut): keep the
//! session dialed by the network whose id sorts first; if both were dialed
//! by the same side, keep the newer one. Both sides apply the rule, so both
//! keep the same session; the loser is closed with the reason `duplicate
//! connection`, which the other side recognises and does not redial.
//!
//! Another instance of a connected network (a restarted peer): the caller
//! asks the old session for a sign of life; if none comes within one
//! heartbeat interval, the new instance takes the old one's place.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::session::Session;

/// What became of a session offered to the map.
pub(crate) enum Insert {
    /// In the map; `replaced` (if any) lost to it and must be closed.
    Added { replaced: Option<Arc<Session>> },
    /// The existing session of the same instance wins by the dial rule;
    /// close the new one (unless the existing one has gone silent).
    Duplicate(Arc<Session>),
    /// A session of another instance of the same network is in the map.
    OtherInstance(Arc<Session>),
    /// `max_connections` reached.
    Full,
    /// The bridge is shutting down.
    Closed,
}

#[derive(Default)]
struct Map {
    /// Looked up by every send; its keys are proved in handshakes, so a
    /// fast hasher (Cargo.toml, foldhash).
    sessions: HashMap<String, Arc<Session>, foldhash::fast::RandomState>,
    closed: bool,
}

pub(crate) struct Registry {
    local_network: String,
    max_connections: usize,
    map: RwLock<Map>,
}

/// True when a new session should replace an existing one of the same
/// instance. `*_dialed` tells whether this side dialed each.
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

    pub(crate) fn insert(&self, session: &Arc<Session>) -> Insert {
        let mut map = self.write();
        if map.closed {
            return Insert::Closed;
        }
        let network = &session.peer.network_id;
        if let Some(existing) = map.sessions.get(network) {
            if existing.peer.instance_id != session.peer.instance_id {
                return Insert::OtherInstance(Arc::clone(existing));
            }
            let keep = keep_new(
                &self.local_network,
                network,
                session.peer.dialed,
                existing.peer.dialed,
            );
            log::debug!(
                "Second connection to network {network} (new dialed here: {}, existing dialed here: {}); keeping the {}",
                session.peer.dialed,
                existing.peer.dialed,
                if keep { "new one" } else { "existing one" }
            );
            if !keep {
                return Insert::Duplicate(Arc::clone(existing));
            }
            let replaced = map.sessions.insert(network.clone(), Arc::clone(session));
            return Insert::Added { replaced };
        }
        if map.sessions.len() >= self.max_connections {
            return Insert::Full;
        }
        map.sessions.insert(network.clone(), Arc::clone(session));
        Insert::Added { replaced: None }
    }

    /// Puts `new` in `old`'s place if `old` is still the one mapped.
    pub(crate) fn replace(&self, old: &Session, new: &Arc<Session>) -> bool {
        let mut map = self.write();
        let network = &new.peer.network_id;
        let same = !map.closed && map.sessions.get(network).is_some_and(|s| s.id == old.id);
        if same {
            map.sessions.insert(network.clone(), Arc::clone(new));
        }
        same
    }

    /// Removes `session` if it is still the one mapped for its network.
    pub(crate) fn remove_if_same(&self, session: &Session) -> bool {
        let mut map = self.write();
        let network = &session.peer.network_id;
        let same = map.sessions.get(network).is_some_and(|s| s.id == session.id);
        if same {
            map.sessions.remove(network);
        }
        same
    }

    pub(crate) fn get(&self, network_id: &str) -> Option<Arc<Session>> {
        self.read().sessions.get(network_id).cloned()
    }

    pub(crate) fn contains(&self, network_id: &str) -> bool {
        self.read().sessions.contains_key(network_id)
    }

    pub(crate) fn len(&self) -> usize {
        self.read().sessions.len()
    }

    pub(crate) fn networks(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().sessions.keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) fn all(&self) -> Vec<Arc<Session>> {
        self.read().sessions.values().cloned().collect()
    }

    /// Empties the map and refuses further inserts.
    pub(crate) fn close(&self) -> Vec<Arc<Session>> {
        let mut map = self.write();
        map.closed = true;
        map.sessions.drain().map(|(_, s)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::keep_new;

    #[test]
    fn both_sides_keep_the_session_dialed_by_the_smaller_id() {
        assert!(keep_new("alpha", "beta", true, false));
        assert!(!keep_new("alpha", "beta", false, true));
        assert!(keep_new("beta", "alpha", false, true));
        assert!(!keep_new("beta", "alpha", true, false));
    }

    #[test]
    fn same_dialer_keeps_the_newer_session() {
        assert!(keep_new("alpha", "beta", true, true));
        assert!(keep_new("alpha", "beta", false, false));
    }
}
