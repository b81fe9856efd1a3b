//! What a peer knows of the other networks, and how a new view of the roster
//! turns into events. Pure functions: no I/O, no clock.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::info::NetworkInfo;

/// A change in the set of networks a peer can reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A network appeared in the roster.
    Added(NetworkInfo),
    /// A network left the roster (it deregistered or its entry expired);
    /// carries its `network_id`.
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

/// A network whose entry went back to an instance it had left: two live
/// instances take turns claiming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Flip {
    pub network_id: String,
    /// The instance holding the entry now, and where.
    pub now: (String, String),
    /// The instance it took the entry back from, and where.
    pub other: (String, String),
}

/// Watches rosters for an instance flip (A→B→A) and reports each network
/// once, until the network leaves the roster.
#[derive(Default)]
pub(crate) struct FlipWatch {
    /// Per network, the instance (and its endpoint) last displaced.
    displaced: HashMap<String, (String, String)>,
    reported: HashSet<String>,
}

impl FlipWatch {
    /// The flips in the step from `old` to `new` not reported before.
    pub(crate) fn observe(&mut self, old: &Roster, new: &Roster) -> Vec<Flip> {
        self.displaced.retain(|id, _| new.contains_key(id));
        self.reported.retain(|id| new.contains_key(id));
        let mut flips = Vec::new();
        for (id, info) in new {
            let Some(before) = old.get(id).filter(|b| b.instance_id != info.instance_id) else {
                continue;
            };
            let came_back = self
                .displaced
                .get(id)
                .is_some_and(|(instance, _)| *instance == info.instance_id);
            if came_back && self.reported.insert(id.clone()) {
                flips.push(Flip {
                    network_id: id.clone(),
                    now: (info.instance_id.clone(), info.endpoint.clone()),
                    other: (before.instance_id.clone(), before.endpoint.clone()),
                });
            }
            self.displaced
                .insert(id.clone(), (before.instance_id.clone(), before.endpoint.clone()));
        }
        flips
    }
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
    fn an_instance_flip_is_reported_once_per_stay() {
        let with = |instance: &str, port: &str| {
            let mut n = net("beta", &format!("h:{port}"), "00");
            n.instance_id = instance.into();
            roster(vec![n])
        };
        let (a, b, c) = (with("beta-1", "1"), with("beta-2", "2"), with("beta-3", "3"));
        let mut watch = FlipWatch::default();
        assert!(watch.observe(&Roster::new(), &a).is_empty());
        assert!(watch.observe(&a, &b).is_empty(), "one takeover is a restart");
        let flips = watch.observe(&b, &a);
        assert_eq!(flips.len(), 1);
        assert_eq!(flips[0].now, ("beta-1".to_string(), "h:1".to_string()));
        assert_eq!(flips[0].other, ("beta-2".to_string(), "h:2".to_string()));
        assert!(watch.observe(&a, &b).is_empty(), "reported once");
        assert!(watch.observe(&b, &a).is_empty(), "reported once");
        assert!(watch.observe(&a, &Roster::new()).is_empty());
        assert!(watch.observe(&Roster::new(), &b).is_empty());
        assert!(
            watch.observe(&b, &c).is_empty(),
            "forgotten once the network left"
        );
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
