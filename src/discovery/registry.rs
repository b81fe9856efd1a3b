//! The roster of live networks. [`Registry`] is the pure logic: every method
//! takes the current time, so TTL behaviour is tested with a fake clock.
//! [`SharedRegistry`] is the thread-safe handle the router and server use; it
//! reads the real clocks and keeps the metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::info::{NetworkInfo, RegistrationInfo};
use super::metrics::Metrics;
use crate::clock::format_rfc3339;
use crate::names::escaped;

/// Default time an entry stays live without a re-registration.
pub(crate) const DEFAULT_ENTRY_TTL: Duration = Duration::from_secs(60);
/// Default cap on distinct networks held at once.
pub(crate) const DEFAULT_MAX_ENTRIES: usize = 10_000;
/// Default cap on a request body the router accepts (bytes).
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;

struct Entry {
    info: RegistrationInfo,
    /// Monotonic time of the last registration: decides liveness.
    seen_at: Instant,
    /// Wall-clock time of the last registration: reported as `last_seen`.
    last_seen: SystemTime,
}

/// What a registration did to the roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Registered {
    /// A network not in the roster (or expired) was added.
    Added,
    /// The same instance re-registered; only `last_seen` moved.
    Refreshed,
    /// A new instance, endpoint or capability list replaced the old entry.
    Replaced,
}

/// What a registration did, with the entry it displaced (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Registration {
    /// Added, refreshed or replaced.
    pub outcome: Registered,
    /// The entry held before, live or expired but not yet swept.
    pub previous: Option<Previous>,
    /// The previous entry belonged to another `instance_id`.
    pub instance_changed: bool,
}

/// An entry a registration found in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Previous {
    /// What it registered.
    pub info: RegistrationInfo,
    /// Time since its last registration.
    pub age: Duration,
    /// It was still within the TTL.
    pub live: bool,
}

impl Registration {
    /// True when another instance took over an entry whose holder still
    /// refreshes: its last registration is less than TTL/2 old, i.e. within
    /// two refresh periods at the default 15 s refresh and 60 s TTL. A peer
    /// that stopped cleanly deregistered first, so this means two processes
    /// claim the network (or one crashed and restarted within TTL/2).
    pub(crate) fn is_contested(&self, ttl: Duration) -> bool {
        self.outcome == Registered::Replaced
            && self.instance_changed
            && self.previous.as_ref().is_some_and(|p| p.live && p.age < ttl / 2)
    }
}

/// What a deregistration did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Deregistered {
    /// The entry of that instance was removed; this is what it held.
    Removed(RegistrationInfo),
    /// No live entry for the network.
    Absent,
    /// Another instance holds the entry (a restarted peer); it was left alone.
    HeldBy(RegistrationInfo),
}

/// Why a registration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegisterError {
    /// The roster holds `max_entries` live networks already.
    Full,
}

/// One entry per `network_id`, each live for `ttl` after its last registration.
pub(crate) struct Registry {
    ttl: Duration,
    max_entries: usize,
    entries: HashMap<String, Entry>,
}

impl Registry {
    /// An empty roster whose entries live `ttl`, holding at most `max_entries`.
    pub(crate) fn new(ttl: Duration, max_entries: usize) -> Self {
        Registry {
            ttl,
            max_entries,
            entries: HashMap::new(),
        }
    }

    /// The entry TTL.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn is_live(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.seen_at) <= self.ttl
    }

    /// Records `info` as seen at `now` (monotonic) and `wall` (reported).
    /// A newer registration replaces the network's older entry outright.
    ///
    /// # Errors
    ///
    /// [`RegisterError::Full`] for a new network when `max_entries` live
    /// networks are held.
    #[cfg(test)]
    pub(crate) fn register(
        &mut self,
        info: RegistrationInfo,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Registered, RegisterError> {
        self.record(info, now, wall).map(|r| r.outcome)
    }

    /// As [`register`](Self::register), also describing the entry displaced.
    ///
    /// # Errors
    ///
    /// [`RegisterError::Full`] as for [`register`](Self::register).
    pub(crate) fn record(
        &mut self,
        info: RegistrationInfo,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Registration, RegisterError> {
        let previous = self.entries.get(&info.network_id).map(|old| Previous {
            info: old.info.clone(),
            age: now.saturating_duration_since(old.seen_at),
            live: self.is_live(old, now),
        });
        let outcome = match self.entries.get(&info.network_id) {
            Some(old) if self.is_live(old, now) => {
                if old.info.instance_id == info.instance_id
                    && old.info.endpoint == info.endpoint
                    && old.info.capabilities == info.capabilities
                {
                    Registered::Refreshed
                } else {
                    Registered::Replaced
                }
            }
            Some(_) => Registered::Added,
            None => {
                if self.entries.len() >= self.max_entries {
                    self.prune(now);
                }
                if self.entries.len() >= self.max_entries {
                    return Err(RegisterError::Full);
                }
                Registered::Added
            }
        };
        let instance_changed = previous
            .as_ref()
            .is_some_and(|p| p.info.instance_id != info.instance_id);
        let entry = Entry {
            info,
            seen_at: now,
            last_seen: wall,
        };
        self.entries.insert(entry.info.network_id.clone(), entry);
        Ok(Registration {
            outcome,
            previous,
            instance_changed,
        })
    }

    /// Removes the entry of `network_id` if `instance_id` holds it, so that
    /// an old instance shutting down never removes its successor's entry.
    pub(crate) fn deregister(&mut self, network_id: &str, instance_id: &str, now: Instant) -> Deregistered {
        let Some(entry) = self.entries.get(network_id) else {
            return Deregistered::Absent;
        };
        if !self.is_live(entry, now) {
            self.entries.remove(network_id);
            return Deregistered::Absent;
        }
        if entry.info.instance_id != instance_id {
            return Deregistered::HeldBy(entry.info.clone());
        }
        match self.entries.remove(network_id) {
            Some(entry) => Deregistered::Removed(entry.info),
            None => Deregistered::Absent,
        }
    }

    /// Live entries at `now`, sorted by `network_id`.
    pub(crate) fn live(&self, now: Instant) -> Vec<NetworkInfo> {
        let mut list: Vec<NetworkInfo> = self
            .entries
            .values()
            .filter(|e| self.is_live(e, now))
            .map(|e| NetworkInfo {
                network_id: e.info.network_id.clone(),
                instance_id: e.info.instance_id.clone(),
                endpoint: e.info.endpoint.clone(),
                capabilities: e.info.capabilities.clone(),
                last_seen: format_rfc3339(e.last_seen),
            })
            .collect();
        list.sort_by(|a, b| a.network_id.cmp(&b.network_id));
        list
    }

    /// When the first live entry expires (after `now`), if any is live.
    pub(crate) fn earliest_expiry(&self, now: Instant) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| self.is_live(e, now))
            .map(|e| e.seen_at + self.ttl)
            .min()
    }

    /// Number of live entries at `now`.
    pub(crate) fn live_count(&self, now: Instant) -> usize {
        self.entries.values().filter(|e| self.is_live(e, now)).count()
    }

    /// Drops entries expired at `now`; returns how many went.
    pub(crate) fn prune(&mut self, now: Instant) -> usize {
        self.prune_expired(now).len()
    }

    /// Drops entries expired at `now` and returns them with their age.
    pub(crate) fn prune_expired(&mut self, now: Instant) -> Vec<(RegistrationInfo, Duration)> {
        let ttl = self.ttl;
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.seen_at) > ttl)
            .map(|(id, _)| id.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|id| self.entries.remove(&id))
            .map(|e| (e.info, now.saturating_duration_since(e.seen_at)))
            .collect()
    }

    /// Entries held, live or not yet swept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Limits of the shared roster and of the HTTP contract in front of it.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// How long an entry stays live without re-registering. Default 60 s.
    pub entry_ttl: Duration,
    /// Most networks held at once; a registration beyond it gets 503. Default 10 000.
    pub max_entries: usize,
    /// Largest request body accepted; larger gets 413 unread. Default 16 KiB.
    pub max_body_bytes: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            entry_ttl: DEFAULT_ENTRY_TTL,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// How stale `last_seen` may be in a cached roster. Membership changes
/// (a network added, replaced or expired) are never served stale.
const ROSTER_CACHE_MAX_AGE: Duration = Duration::from_secs(1);

/// The encoded `GET /networks` body, shared by every request until it may
/// differ from the registry: encoding 10,000 entries takes milliseconds.
struct CachedRoster {
    json: Arc<str>,
    valid_until: Instant,
}

struct Shared {
    registry: Mutex<Registry>,
    roster: Mutex<Option<CachedRoster>>,
    metrics: Metrics,
    max_body_bytes: usize,
}

/// A cloneable, thread-safe roster with metrics: what the router answers from.
#[derive(Clone)]
pub struct SharedRegistry {
    shared: Arc<Shared>,
}

impl SharedRegistry {
    /// A new empty roster with these limits.
    pub fn new(config: RegistryConfig) -> Self {
        SharedRegistry {
            shared: Arc::new(Shared {
                registry: Mutex::new(Registry::new(config.entry_ttl, config.max_entries)),
                roster: Mutex::new(None),
                metrics: Metrics::default(),
                max_body_bytes: config.max_body_bytes,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry's invariants hold between statements, so a panic while
        // locked leaves it usable: recover the guard rather than propagate.
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `info` now (server clocks), counts it and logs any change
    /// of the roster at info (a refresh at debug); a contested replacement
    /// (see [`Registration::is_contested`]) is logged at warn.
    ///
    /// # Errors
    ///
    /// [`RegisterError::Full`] for a new network when the roster is full.
    pub(crate) fn register(&self, info: RegistrationInfo) -> Result<Registered, RegisterError> {
        let (network, instance, endpoint) = (
            info.network_id.clone(),
            info.instance_id.clone(),
            info.endpoint.clone(),
        );
        let (recorded, ttl) = {
            let mut registry = self.lock();
            (
                registry.record(info, Instant::now(), SystemTime::now()),
                registry.ttl(),
            )
        };
        let registration = recorded?;
        self.shared.metrics.count_registration();
        // A refresh only moves `last_seen`, which the cache may lag by at
        // most ROSTER_CACHE_MAX_AGE.
        if registration.outcome != Registered::Refreshed {
            *self.roster_cache() = None;
        }
        let (network, instance, endpoint) = (escaped(&network), escaped(&instance), escaped(&endpoint));
        match (&registration.outcome, &registration.previous) {
            (Registered::Refreshed, _) => {
                log::debug!("refreshed network {network}: instance {instance} at {endpoint}");
            }
            (Registered::Replaced, Some(old)) if registration.is_contested(ttl) => log::warn!(
                "two live instances claim network {network}: {} at {} and {instance} at {endpoint}; \
                 {instance} now holds the entry ({} refreshed {} ms before)",
                escaped(&old.info.instance_id),
                escaped(&old.info.endpoint),
                escaped(&old.info.instance_id),
                old.age.as_millis()
            ),
            (Registered::Replaced, Some(old)) => log::info!(
                "replaced network {network}: instance {} at {} by instance {instance} at {endpoint}",
                escaped(&old.info.instance_id),
                escaped(&old.info.endpoint)
            ),
            (_, Some(old)) if !old.live => {
                log::info!(
                    "network {network} expired: instance {} at {}, not seen for {} s",
                    escaped(&old.info.instance_id),
                    escaped(&old.info.endpoint),
                    old.age.as_secs()
                );
                log::info!("registered network {network}: instance {instance} at {endpoint}");
            }
            _ => log::info!("registered network {network}: instance {instance} at {endpoint}"),
        }
        Ok(registration.outcome)
    }

    /// Removes `network_id`'s entry if `instance_id` holds it, and logs a
    /// removal at info.
    pub(crate) fn deregister(&self, network_id: &str, instance_id: &str) -> Deregistered {
        let outcome = self.lock().deregister(network_id, instance_id, Instant::now());
        if let Deregistered::Removed(info) = &outcome {
            *self.roster_cache() = None;
            self.shared.metrics.count_deregistration();
            log::info!(
                "deregistered network {}: instance {} at {}",
                escaped(&info.network_id),
                escaped(&info.instance_id),
                escaped(&info.endpoint)
            );
        }
        outcome
    }

    /// The live roster as the JSON array `GET /networks` returns. Encoded at
    /// most once per change: the cached text is reused until a network is
    /// added or replaced, the first entry expires, or it is a second old.
    pub(crate) fn roster_json(&self) -> Result<Arc<str>, serde_json::Error> {
        let now = Instant::now();
        let mut cache = self.roster_cache();
        if let Some(cached) = cache.as_ref().filter(|c| now < c.valid_until) {
            return Ok(cached.json.clone());
        }
        let (live, expiry) = {
            let registry = self.lock();
            (registry.live(now), registry.earliest_expiry(now))
        };
        let json: Arc<str> = serde_json::to_string(&live)?.into();
        let max_age = now + ROSTER_CACHE_MAX_AGE;
        *cache = Some(CachedRoster {
            json: json.clone(),
            valid_until: expiry.map_or(max_age, |e| e.min(max_age)),
        });
        Ok(json)
    }

    fn roster_cache(&self) -> MutexGuard<'_, Option<CachedRoster>> {
        self.shared
            .roster
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Live entries now, sorted by `network_id`.
    pub fn live(&self) -> Vec<NetworkInfo> {
        self.lock().live(Instant::now())
    }

    /// Number of live entries now.
    pub fn live_count(&self) -> usize {
        self.lock().live_count(Instant::now())
    }

    /// Sweeps expired entries now, logging each at info; returns how many went.
    pub fn prune(&self) -> usize {
        let expired = self.lock().prune_expired(Instant::now());
        for (info, age) in &expired {
            log::info!(
                "network {} expired: instance {} at {}, not seen for {} s",
                escaped(&info.network_id),
                escaped(&info.instance_id),
                escaped(&info.endpoint),
                age.as_secs()
            );
        }
        expired.len()
    }

    /// The counters behind `GET /metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The Prometheus text exposition of this roster's metrics.
    pub fn render_metrics(&self) -> String {
        self.shared.metrics.render(self.live_count())
    }

    /// Largest request body the router reads.
    pub fn max_body_bytes(&self) -> usize {
        self.shared.max_body_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(network: &str, instance: &str, endpoint: &str) -> RegistrationInfo {
        RegistrationInfo {
            network_id: network.into(),
            instance_id: instance.into(),
            endpoint: endpoint.into(),
            capabilities: vec!["actor_messaging".into()],
        }
    }

    fn wall(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_777_416_000 + secs)
    }

    #[test]
    fn an_entry_lives_for_the_ttl_and_not_after() {
        let t0 = Instant::now();
        let mut r = Registry::new(Duration::from_secs(60), 10);
        r.register(reg("alpha", "alpha-1", "h:1"), t0, wall(0))
            .expect("room");
        assert_eq!(r.live(t0 + Duration::from_secs(60)).len(), 1);
        assert!(r.live(t0 + Duration::from_secs(61)).is_empty());
        // Filtering on read does not remove; the sweep does.
        assert_eq!(r.len(), 1);
        assert_eq!(r.prune(t0 + Duration::from_secs(61)), 1);
        assert!(r.is_empty());
    }

    #[test]
    fn re_registering_extends_life_and_stamps_last_seen() {
        let t0 = Instant::now();
        let mut r = Registry::new(Duration::from_secs(60), 10);
        r.register(reg("alpha", "alpha-1", "h:1"), t0, wall(0))
            .expect("room");
        let again = r.register(
            reg("alpha", "alpha-1", "h:1"),
            t0 + Duration::from_secs(50),
            wall(50),
        );
        assert_eq!(again, Ok(Registered::Refreshed));
        let live = r.live(t0 + Duration::from_secs(100));
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].last_seen, format_rfc3339(wall(50)));
    }

    #[test]
    fn a_new_instance_replaces_the_old_at_once() {
        let t0 = Instant::now();
        let mut r = Registry::new(Duration::from_secs(60), 10);
        r.register(reg("alpha", "alpha-1", "h:1"), t0, wall(0))
            .expect("room");
        let outcome = r.register(reg("alpha", "alpha-2", "h:2"), t0, wall(0));
        assert_eq!(outcome, Ok(Registered::Replaced));
        let live = r.live(t0);
        assert_eq!(live.len(), 1);
        assert_eq!(
            (live[0].instance_id.as_str(), live[0].endpoint.as_str()),
            ("alpha-2", "h:2")
        );
    }

    #[test]
    fn an_expired_network_coming_back_counts_as_added() {
        let t0 = Instant::now();
        let mut r = Registry::new(Duration::from_secs(10), 10);
        r.register(reg("alpha", "alpha-1", "h:1"), t0, wall(0))
            .expect("room");
        let back = r.register(
            reg("alpha", "alpha-1", "h:1"),
            t0 + Duration::from_secs(30),
            wall(30),
        );
        assert_eq!(back, Ok(Registered::Added));
    }

    #[test]
    fn a_full_roster_refuses_new_networks_but_makes_room_from_expired_ones() {
        let t0 = Instant::now();
        let mut r = Registry::new(Duration::from_secs(10), 2);
        r.register(reg("a", "a-1", "h:1"), t0, wall(0)).expect("room");
        r.register(reg("b", "b-1", "h:2"), t0, wall(0)).expect("room");
        assert_eq!(
            r.register(reg("c", "c-1", "h:3"), t0, wall(0)),
            Err(RegisterError::Full)
        );
        // Known networks may still refresh.
        assert!(r.register(reg("a", "a-1", "h:1"), t0, wall(0)).is_ok());
        let later = t0 + Duration::from_secs(11);
        assert_eq!(
            r.register(reg("c", "c-1", "h:3"), later, wall(11)),
            Ok(Registered::Added)
        );
    }

    #[test]
    fn only_the_holding_instance_deregisters() {
        let t0 = Instant::now();
        let mut r = Registry::new(Duration::from_secs(60), 10);
        r.register(reg("alpha", "alpha-2", "h:2"), t0, wall(0))
            .expect("room");
        assert!(
            matches!(r.deregister("alpha", "alpha-1", t0), Deregistered::HeldBy(i) if i.instance_id == "alpha-2")
        );
        assert_eq!(r.live(t0).len(), 1);
        assert!(
            matches!(r.deregister("alpha", "alpha-2", t0), Deregistered::Removed(i) if i.endpoint == "h:2")
        );
        assert!(r.live(t0).is_empty());
        assert_eq!(r.deregister("alpha", "alpha-2", t0), Deregistered::Absent);
        r.register(reg("beta", "beta-1", "h:3"), t0, wall(0))
            .expect("room");
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            r.deregister("beta", "beta-1", later),
            Deregistered::Absent,
            "expired"
        );
    }

    #[test]
    fn a_takeover_is_contested_only_while_the_old_instance_still_refreshes() {
        let ttl = Duration::from_secs(60);
        let t0 = Instant::now();
        let mut r = Registry::new(ttl, 10);
        r.register(reg("alpha", "alpha-1", "h:1"), t0, wall(0))
            .expect("room");
        let fresh = r
            .record(
                reg("alpha", "alpha-2", "h:2"),
                t0 + Duration::from_secs(10),
                wall(10),
            )
            .expect("room");
        assert!(fresh.is_contested(ttl));
        let stale = r
            .record(
                reg("alpha", "alpha-3", "h:3"),
                t0 + Duration::from_secs(45),
                wall(45),
            )
            .expect("room");
        assert_eq!(stale.outcome, Registered::Replaced);
        assert!(
            !stale.is_contested(ttl),
            "alpha-2 went quiet 35 s ago, past TTL/2"
        );
        let moved = r
            .record(
                reg("alpha", "alpha-3", "h:4"),
                t0 + Duration::from_secs(46),
                wall(46),
            )
            .expect("room");
        assert!(!moved.is_contested(ttl), "the same instance moving is no contest");
    }

    #[test]
    fn the_sweep_returns_what_expired() {
        let t0 = Instant::now();
        let mut r = Registry::new(Duration::from_secs(10), 10);
        r.register(reg("a", "a-1", "h:1"), t0, wall(0)).expect("room");
        r.register(reg("b", "b-1", "h:2"), t0 + Duration::from_secs(5), wall(5))
            .expect("room");
        let gone = r.prune_expired(t0 + Duration::from_secs(12));
        assert_eq!(gone.len(), 1);
        assert_eq!(
            (gone[0].0.instance_id.as_str(), gone[0].1),
            ("a-1", Duration::from_secs(12))
        );
    }

    #[test]
    fn live_entries_are_sorted_by_network() {
        let t0 = Instant::now();
        let mut r = Registry::new(Duration::from_secs(10), 10);
        for n in ["gamma", "alpha", "beta"] {
            r.register(reg(n, "x", "h:1"), t0, wall(0)).expect("room");
        }
        let ids: Vec<String> = r.live(t0).into_iter().map(|n| n.network_id).collect();
        assert_eq!(ids, ["alpha", "beta", "gamma"]);
    }

    fn shared(ttl: Duration) -> SharedRegistry {
        SharedRegistry::new(RegistryConfig {
            entry_ttl: ttl,
            ..RegistryConfig::default()
        })
    }

    fn listed(registry: &SharedRegistry) -> Vec<String> {
        let json = registry.roster_json().expect("encodes");
        let list: Vec<NetworkInfo> = serde_json::from_str(&json).expect("a roster");
        list.into_iter().map(|n| n.network_id).collect()
    }

    #[test]
    fn cached_roster_shows_new_and_replaced_networks_at_once() {
        let registry = shared(Duration::from_secs(60));
        registry.register(reg("alpha", "alpha-1", "h:1")).expect("room");
        assert_eq!(listed(&registry), ["alpha"]);
        registry.register(reg("beta", "beta-1", "h:2")).expect("room");
        assert_eq!(listed(&registry), ["alpha", "beta"]);
        registry.register(reg("beta", "beta-2", "h:3")).expect("room");
        assert!(registry.roster_json().expect("encodes").contains("beta-2"));
    }

    #[test]
    fn cached_roster_never_serves_an_expired_entry() {
        let ttl = Duration::from_millis(50);
        let registry = shared(ttl);
        registry.register(reg("alpha", "alpha-1", "h:1")).expect("room");
        let registered = Instant::now();
        assert_eq!(listed(&registry), ["alpha"]);
        // Once past the TTL (measured from before the registration is known
        // to be done), the cached text must not be served.
        while registered.elapsed() <= ttl {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(listed(&registry).is_empty());
    }
}
