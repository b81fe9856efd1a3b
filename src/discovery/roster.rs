//! What a peer knows of the other networks, and how a new view of the roster
//! turns into events. Pure functions: no I/O, no clock.

use std::collections::BTreeMap;

use super::info::NetworkInfo;

/// A change in the set of networks a peer can reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A network appeared in the roster.
    Added(NetworkInfo),
    /// A network left the roster (its entry expired); carries its `network_id`.
    Removed(String),
    /// A known network now has another endpoint, instance or capability list.
    Updated(NetworkInfo),
}

/// The networks known to a peer, by `network_id`.
pub(crate) type Roster = BTreeMap<String, NetworkInfo>;

/// Merges the rosters of several discovery servers into one, leaving out the
/// peer's own network. When servers disagree about a network, the entry with
/// the latest `last_seen` wins (RFC 3339 UTC texts of one format sort as
/// times); on a tie, the server listed first wins.
pub(crate) fn merge(lists: Vec<Vec<NetworkInfo>>, own_network: &str) -> Roster {
    let mut roster = Roster::new();
    for info in lists.into_iter().flatten() {
        if info.network_id == own_network || info.network_id.is_empty() {
            continue;
        }
        match roster.get(&info.network_id) {
            Some(held) if held.last_seen >= info.last_seen => {}
            _ => {
                roster.insert(info.network_id.clone(), info);
            }
        }
    }
    roster
}

/// The events that take a subscriber from `old` to `new`, in `network_id`
/// order. A fresher `last_seen` alone is not an update.
pub(crate) fn diff(old: &Roster, new: &Roster) -> Vec<DiscoveryEvent> {
    let mut events = Vec::new();
    for (id, info) in new {
        match old.get(id) {
            None => events.push(DiscoveryEvent::Added(info.clone())),
            Some(before) if before.differs_from(info) => events.push(DiscoveryEvent::Updated(info.clone())),
            Some(_) => {}
        }
    }
    for id in old.keys() {
        if !new.contains_key(id) {
            events.push(DiscoveryEvent::Removed(id.clone()));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, endpoint: &str, seen: &str) -> NetworkInfo {
        NetworkInfo {
            network_id: id.into(),
            instance_id: format!("{id}-1"),
            endpoint: endpoint.into(),
            capabilities: vec!["actor_messaging".into()],
            last_seen: format!("2026-04-28T22:48:{seen}.000Z"),
        }
    }

    fn roster(list: Vec<NetworkInfo>) -> Roster {
        merge(vec![list], "me")
    }

    #[test]
    fn a_peer_never_lists_itself() {
        let r = roster(vec![net("me", "h:1", "00"), net("beta", "h:2", "00")]);
        assert_eq!(r.keys().collect::<Vec<_>>(), ["beta"]);
    }

    #[test]
    fn the_freshest_entry_wins_across_servers() {
        let r = merge(
            vec![vec![net("beta", "old:1", "10")], vec![net("beta", "new:1", "20")]],
            "me",
        );
        assert_eq!(r["beta"].endpoint, "new:1");
        let r = merge(
            vec![
                vec![net("beta", "first:1", "20")],
                vec![net("beta", "second:1", "20")],
            ],
            "me",
        );
        assert_eq!(r["beta"].endpoint, "first:1");
    }

    #[test]
    fn join_move_and_leave_make_three_events() {
        let empty = Roster::new();
        let joined = roster(vec![net("beta", "h:1", "00")]);
        let refreshed = roster(vec![net("beta", "h:1", "15")]);
        let moved = roster(vec![net("beta", "h:2", "30")]);
        assert_eq!(
            diff(&empty, &joined),
            [DiscoveryEvent::Added(joined["beta"].clone())]
        );
        assert!(
            diff(&joined, &refreshed).is_empty(),
            "last_seen alone is no update"
        );
        assert_eq!(
            diff(&refreshed, &moved),
            [DiscoveryEvent::Updated(moved["beta"].clone())]
        );
        assert_eq!(diff(&moved, &empty), [DiscoveryEvent::Removed("beta".into())]);
    }
}
