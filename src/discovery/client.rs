//! `DiscoveryService`: the peer's side of discovery.
//!
//! One thread per service, `discovery-client-<network>`, owned by the
//! service. Each tick it registers with every endpoint, fetches every
//! endpoint's roster, merges them, and publishes the difference from the last
//! view as [`DiscoveryEvent`]s. Ticks come every `refresh_interval`, at once on
//! [`DiscoveryService::refresh_now`], and the first one right after start.
//!
//! An endpoint that is down or answers garbage is logged and skipped; the
//! others carry on. Roster entries that break the registration rules (an id
//! with a newline, say) are left out, with one log line per roster. When no
//! endpoint answers the roster request, the last known roster stands (a
//! discovery outage does not make peers disappear).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use super::backend::{Backend, Deregistered, Listing};
use super::config::DiscoveryClientConfig;
use super::endpoint::{self, Endpoint};
use super::error::DiscoveryError;
use super::etcd::EtcdBackend;
use super::info::{NetworkInfo, RegistrationInfo, validate_own_registration, validate_roster_entry};
use super::roster::{self, DiscoveryEvent, FlipWatch, Roster};
use super::server_backend::ServerBackend;
use crate::names::escaped;

/// State shared by the service handle and its thread.
struct Shared {
    known: Mutex<Roster>,
    /// The last registration with at least one endpoint succeeded.
    registered: AtomicBool,
    subscribers: Mutex<Vec<Sender<DiscoveryEvent>>>,
    subscriber_capacity: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Sends `event` to every subscriber without ever blocking: a full
    /// subscriber misses it (logged), a dropped one is forgotten.
    fn publish(&self, event: &DiscoveryEvent) {
        lock(&self.subscribers).retain(|tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                log::warn!(
                    "a discovery subscriber is {} events behind; dropped {}",
                    self.subscriber_capacity,
                    EventLog(event)
                );
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }
}

/// The thread's handles: a wake-up channel, a stop channel (closed to stop)
/// and the thread itself.
struct Control {
    wake: Sender<()>,
    stop: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Registers this peer with its discovery endpoints and follows the roster.
pub struct DiscoveryService {
    me: RegistrationInfo,
    shared: Arc<Shared>,
    control: Option<Control>,
}

impl DiscoveryService {
    /// Checks the settings and `me`, then starts the thread, which registers
    /// at once. With no endpoints configured no thread starts and nothing is
    /// ever published.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::InvalidConfig`] for a zero `refresh_interval` or
    /// `subscriber_capacity`; [`DiscoveryError::InvalidEndpoint`] for an
    /// endpoint that is not `http://host:port`;
    /// [`DiscoveryError::InvalidRegistration`] when `me`'s ids or endpoint
    /// break the rules (a wildcard endpoint with a port passes: each
    /// backend lists it under an address it finds);
    /// [`DiscoveryError::Spawn`] when the thread cannot start. A server that
    /// cannot be reached is no error: the thread keeps trying.
    pub fn start(
        config: DiscoveryClientConfig,
        me: RegistrationInfo,
    ) -> Result<DiscoveryService, DiscoveryError> {
        validate_own_registration(&me)?;
        if config.refresh_interval.is_zero() {
            return Err(DiscoveryError::InvalidConfig(
                "refresh_interval must be above zero".into(),
            ));
        }
        if config.subscriber_capacity == 0 {
            return Err(DiscoveryError::InvalidConfig(
                "subscriber_capacity must be above zero".into(),
            ));
        }
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| endpoint::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            known: Mutex::new(BTreeMap::new()),
            registered: AtomicBool::new(false),
            subscribers: Mutex::new(Vec::new()),
            subscriber_capacity: config.subscriber_capacity,
        });
        if endpoints.is_empty() {
            return Ok(DiscoveryService {
                me,
                shared,
                control: None,
            });
        }
        let (wake, wake_rx) = crossbeam_channel::bounded(1);
        let (stop, stop_rx) = crossbeam_channel::bounded(0);
        let worker = Worker::new(
            &config,
            &me,
            backends(&config, &me, endpoints)?,
            Arc::clone(&shared),
        );
        let thread = thread::Builder::new()
            .name(format!("discovery-client-{}", me.network_id))
            .spawn(move || worker.run(&wake_rx, &stop_rx))
            .map_err(DiscoveryError::Spawn)?;
        Ok(DiscoveryService {
            me,
            shared,
            control: Some(Control {
                wake,
                stop: Mutex::new(Some(stop)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// A new receiver of every event from now on, buffering up to
    /// `subscriber_capacity` events. Dropping it unsubscribes.
    pub fn subscribe(&self) -> Receiver<DiscoveryEvent> {
        let (tx, rx) = crossbeam_channel::bounded(self.shared.subscriber_capacity);
        lock(&self.shared.subscribers).push(tx);
        rx
    }

    /// The networks currently known (this peer's own excluded), by `network_id`.
    pub fn known_networks(&self) -> Vec<NetworkInfo> {
        lock(&self.shared.known).values().cloned().collect()
    }

    /// True while this peer's last registration with at least one
    /// endpoint succeeded (false before the first, without endpoints, and
    /// after stop).
    pub fn is_registered(&self) -> bool {
        self.shared.registered.load(Ordering::SeqCst)
    }

    /// What this peer registers.
    pub fn registration(&self) -> &RegistrationInfo {
        &self.me
    }

    /// True while the service thread runs (false without endpoints or after stop).
    pub fn is_running(&self) -> bool {
        self.control
            .as_ref()
            .is_some_and(|c| lock(&c.thread).as_ref().is_some_and(|t| !t.is_finished()))
    }

    /// Asks the thread for a tick now instead of at the next interval. Several
    /// calls before the thread gets to it make one tick.
    pub fn refresh_now(&self) {
        if let Some(control) = &self.control {
            let _ = control.wake.try_send(());
        }
    }

    /// Stops the thread and waits for it. It wakes at once; the tick in
    /// flight finishes first: for a discovery server, each request within
    /// `request_timeout`; for etcd, each read within `request_timeout` per
    /// member tried (a member that does not answer is waited for, so that
    /// the next one is tried) and each write within `request_timeout` in
    /// all. Then the thread
    /// deregisters from every endpoint whose last registration succeeded
    /// (`DELETE /networks/{network}?instance_id=…`), all within one more
    /// `request_timeout`; a failure is logged and does not hold the stop up
    /// longer. Calling again does nothing.
    pub fn stop(&self) {
        let Some(control) = &self.control else { return };
        lock(&control.stop).take();
        let thread = lock(&control.thread).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            log::error!(
                "the discovery client thread of {} panicked",
                escaped(&self.me.network_id)
            );
        }
    }
}

impl Drop for DiscoveryService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The backends the endpoints name, in the order configured: each
/// discovery server on its own, and every etcd member in one cluster
/// backend (placed where its first member is listed).
fn backends(
    config: &DiscoveryClientConfig,
    me: &RegistrationInfo,
    endpoints: Vec<Endpoint>,
) -> Result<Vec<Box<dyn Backend>>, DiscoveryError> {
    let body = serde_json::to_string(me).map_err(|e| DiscoveryError::InvalidRegistration(e.to_string()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(config.connect_timeout))
        .timeout_global(Some(config.request_timeout))
        // ureq reads proxy settings from the environment by default; a
        // discovery server or etcd member is dialled directly.
        .proxy(None)
        .http_status_as_error(false)
        .user_agent(format!("reflow-discovery-client/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let token = config.auth_token.as_ref().map(|t| t.expose().as_bytes().to_vec());
    let mut list: Vec<Box<dyn Backend>> = Vec::new();
    let mut etcd: Option<(usize, Vec<String>, String)> = None;
    for endpoint in endpoints {
        match endpoint {
            Endpoint::Server(base) => list.push(Box::new(ServerBackend::new(
                agent.clone(),
                base,
                body.clone(),
                &me.network_id,
                &me.instance_id,
                token.clone(),
            ))),
            Endpoint::EtcdMember { base, prefix } => match &mut etcd {
                None => etcd = Some((list.len(), vec![base], prefix)),
                Some((_, _, first)) if *first != prefix => {
                    return Err(DiscoveryError::InvalidEndpoint {
                        endpoint: format!("etcd://{}{prefix}", &base["http://".len()..]),
                        reason: format!(
                            "every etcd endpoint is a member of one cluster and must name the same \
                             prefix ({first} was named first)"
                        ),
                    });
                }
                Some((_, members, _)) if !members.contains(&base) => members.push(base),
                Some(_) => {}
            },
        }
    }
    if let Some((at, members, prefix)) = etcd {
        if config.entry_ttl < Duration::from_secs(1) || config.entry_ttl <= config.refresh_interval {
            return Err(DiscoveryError::InvalidConfig(format!(
                "entry_ttl ({} ms) must be at least 1 s and longer than refresh_interval ({} ms), \
                 or the entry lapses between refreshes",
                config.entry_ttl.as_millis(),
                config.refresh_interval.as_millis()
            )));
        }
        let backend = EtcdBackend::new(
            agent,
            members,
            prefix,
            config.etcd_credentials.clone(),
            me.clone(),
            config.entry_ttl,
            config.request_timeout,
        );
        list.insert(at, Box::new(backend));
    }
    Ok(list)
}

/// One backend as the thread tracks it.
struct Slot {
    backend: Box<dyn Backend>,
    /// The last registration succeeded.
    registered: bool,
}

/// The thread's side: the backends and the last roster.
struct Worker {
    slots: Vec<Slot>,
    own_network: String,
    request_timeout: Duration,
    flips: FlipWatch,
    interval: Duration,
    shared: Arc<Shared>,
    /// No backend answered the last roster request.
    in_outage: bool,
}

impl Worker {
    fn new(
        config: &DiscoveryClientConfig,
        me: &RegistrationInfo,
        backends: Vec<Box<dyn Backend>>,
        shared: Arc<Shared>,
    ) -> Worker {
        Worker {
            slots: backends
                .into_iter()
                .map(|backend| Slot {
                    backend,
                    registered: false,
                })
                .collect(),
            own_network: me.network_id.clone(),
            request_timeout: config.request_timeout,
            flips: FlipWatch::default(),
            interval: config.refresh_interval,
            shared,
            in_outage: false,
        }
    }

    /// The thread's loop: tick, then wait for the interval, a wake-up or
    /// stop; on stop, deregister.
    fn run(mut self, wake: &Receiver<()>, stop: &Receiver<()>) {
        loop {
            self.tick(stop);
            crossbeam_channel::select! {
                recv(stop) -> _ => break,
                recv(wake) -> _ => {},
                default(self.interval) => {},
            }
            if stopped(stop) {
                break;
            }
        }
        self.deregister_all();
    }

    /// Removes this instance's entry from every backend it is registered
    /// with, so that other peers see it leave on their next refresh instead
    /// of after the TTL. All requests share one `request_timeout`.
    fn deregister_all(&mut self) {
        self.shared.registered.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + self.request_timeout;
        for slot in self.slots.iter_mut().filter(|s| s.registered) {
            let name = slot.backend.name().to_string();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!("no time left to deregister from {name}");
                continue;
            }
            match slot.backend.deregister(left) {
                Ok(Deregistered::Removed) => log::info!("Deregistered from discovery endpoint: {name}"),
                Ok(Deregistered::NothingToRemove) => {
                    log::debug!("{name}: no entry of this instance to deregister");
                }
                Err(e) => log::warn!("deregistration from {name} failed: {e}"),
            }
        }
    }

    /// Registers everywhere, reads every roster, publishes the changes.
    fn tick(&mut self, stop: &Receiver<()>) {
        let mut lists = Vec::new();
        for i in 0..self.slots.len() {
            if stopped(stop) {
                return;
            }
            self.register(i);
            if stopped(stop) {
                return;
            }
            match self.slots[i].backend.roster() {
                Ok(listing) => lists.push(keep_valid(self.slots[i].backend.name(), listing)),
                Err(e) => log::warn!("roster request failed: {e}"),
            }
        }
        if lists.is_empty() {
            if !self.in_outage {
                self.in_outage = true;
                log::warn!(
                    "no discovery endpoint answered; keeping the {} known networks and their links \
                     until one does",
                    lock(&self.shared.known).len()
                );
            }
            return;
        }
        if std::mem::take(&mut self.in_outage) {
            log::info!("discovery answers again");
        }
        let new = roster::merge(lists, &self.own_network);
        let (events, flips) = {
            let mut known = lock(&self.shared.known);
            let events = roster::diff(&known, &new);
            let flips = self.flips.observe(&known, &new);
            *known = new;
            (events, flips)
        };
        for flip in &flips {
            log::warn!(
                "network {} went back from instance {} at {} to instance {} at {}: \
                 two live instances seem to claim it",
                escaped(&flip.network_id),
                escaped(&flip.other.0),
                escaped(&flip.other.1),
                escaped(&flip.now.0),
                escaped(&flip.now.1)
            );
        }
        for event in &events {
            // A network joining, moving or leaving is lifecycle: info.
            log::info!("discovery roster: {}", EventLog(event));
            self.shared.publish(event);
        }
    }

    fn register(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        match slot.backend.register() {
            Ok(()) if !slot.registered => {
                log::info!("Registered with discovery endpoint: {}", slot.backend.name());
                slot.registered = true;
            }
            Ok(()) => {}
            Err(e) => {
                log::warn!("registration failed: {e}");
                slot.registered = false;
            }
        }
        let any = self.slots.iter().any(|s| s.registered);
        self.shared.registered.store(any, Ordering::SeqCst);
    }
}

/// The entries of `listing` that keep the registration rules. One bad
/// entry must not cost the others, nor one log line each.
fn keep_valid(source: &str, listing: Listing) -> Vec<NetworkInfo> {
    let Listing {
        entries: mut list,
        unreadable,
        mut first_problem,
    } = listing;
    let listed = list.len() + unreadable;
    list.retain(|entry| match validate_roster_entry(entry) {
        Ok(()) => true,
        Err(why) => {
            first_problem.get_or_insert(why);
            false
        }
    });
    if let Some(why) = first_problem {
        log::warn!(
            "{source}: left out {} of {listed} roster entries that break the registration rules (first: {})",
            listed - list.len(),
            escaped(&why).max_chars(256)
        );
    }
    list
}

/// A discovery event in one bounded log line, its peer-supplied fields
/// escaped (`Debug` would print every capability in full).
struct EventLog<'a>(&'a DiscoveryEvent);

impl fmt::Display for EventLog<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, info) = match self.0 {
            DiscoveryEvent::Removed(network) => return write!(f, "removed {}", escaped(network)),
            DiscoveryEvent::Added(info) => ("added", info),
            DiscoveryEvent::Updated(info) => ("updated", info),
        };
        write!(
            f,
            "{what} {} (instance {} at {})",
            escaped(&info.network_id),
            escaped(&info.instance_id),
            escaped(&info.endpoint)
        )
    }
}

/// True once the stop channel is closed.
fn stopped(stop: &Receiver<()>) -> bool {
    matches!(stop.try_recv(), Err(TryRecvError::Disconnected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> RegistrationInfo {
        RegistrationInfo {
            network_id: "alpha".into(),
            instance_id: "alpha-1".into(),
            endpoint: "127.0.0.1:9100".into(),
            capabilities: vec![],
        }
    }

    #[test]
    fn without_endpoints_nothing_runs() {
        let service = DiscoveryService::start(DiscoveryClientConfig::default(), me()).expect("start");
        assert!(!service.is_running());
        let rx = service.subscribe();
        service.refresh_now();
        assert!(rx.try_recv().is_err());
        assert!(service.known_networks().is_empty());
        service.stop();
    }

    #[test]
    fn a_bad_registration_is_refused_at_start() {
        let mut bad = me();
        bad.endpoint = "0.0.0.0:0".into();
        let err = DiscoveryService::start(DiscoveryClientConfig::default(), bad)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("port 0"), "{err}");
        // A wildcard with a port is left to the backends to resolve.
        for wildcard in ["0.0.0.0:9100", "[::]:9100"] {
            let mut info = me();
            info.endpoint = wildcard.into();
            DiscoveryService::start(DiscoveryClientConfig::default(), info)
                .unwrap_or_else(|e| panic!("{wildcard}: {e}"));
        }
    }

    #[test]
    fn etcd_members_must_share_a_prefix_and_a_lease_must_outlive_a_refresh() {
        let mut config = DiscoveryClientConfig {
            endpoints: vec!["etcd://a:2379".into(), "etcd://b:2379/other".into()],
            ..DiscoveryClientConfig::default()
        };
        let err = DiscoveryService::start(config.clone(), me())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("same prefix"), "{err}");
        config.endpoints = vec!["etcd://a:2379".into(), "etcd://b:2379/reflow/networks/".into()];
        config.entry_ttl = config.refresh_interval;
        let err = DiscoveryService::start(config, me()).err().expect("refused");
        assert!(err.to_string().contains("longer than refresh_interval"), "{err}");
    }

    #[test]
    fn a_full_subscriber_loses_events_without_blocking_others() {
        let shared = Shared {
            known: Mutex::new(BTreeMap::new()),
            registered: AtomicBool::new(false),
            subscribers: Mutex::new(Vec::new()),
            subscriber_capacity: 1,
        };
        let (slow_tx, slow_rx) = crossbeam_channel::bounded(1);
        let (fast_tx, fast_rx) = crossbeam_channel::bounded(8);
        lock(&shared.subscribers).extend([slow_tx, fast_tx]);
        for i in 0..3 {
            shared.publish(&DiscoveryEvent::Removed(format!("n{i}")));
        }
        assert_eq!(slow_rx.len(), 1);
        assert_eq!(fast_rx.len(), 3);
        drop(slow_rx);
        shared.publish(&DiscoveryEvent::Removed("n3".into()));
        assert_eq!(
            lock(&shared.subscribers).len(),
            1,
            "a dropped receiver is forgotten"
        );
    }
}
