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
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use super::auth;
use super::config::DiscoveryClientConfig;
use super::error::DiscoveryError;
use super::info::{NetworkInfo, RegistrationInfo, validate_registration, validate_roster_entry};
use super::roster::{self, DiscoveryEvent, FlipWatch, Roster};
use super::router::percent_encode;
use crate::names::escaped;

/// State shared by the service handle and its thread.
struct Shared {
    known: Mutex<Roster>,
    /// The last registration with at least one endpoint succeeded.
    registered: std::sync::atomic::AtomicBool,
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
    /// break the rules;
    /// [`DiscoveryError::Spawn`] when the thread cannot start. A server that
    /// cannot be reached is no error: the thread keeps trying.
    pub fn start(
        config: DiscoveryClientConfig,
        me: RegistrationInfo,
    ) -> Result<DiscoveryService, DiscoveryError> {
        validate_registration(&me)?;
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
        let bases = config
            .endpoints
            .iter()
            .map(|e| normalize_endpoint(e))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            known: Mutex::new(BTreeMap::new()),
            registered: std::sync::atomic::AtomicBool::new(false),
            subscribers: Mutex::new(Vec::new()),
            subscriber_capacity: config.subscriber_capacity,
        });
        if bases.is_empty() {
            return Ok(DiscoveryService {
                me,
                shared,
                control: None,
            });
        }
        let (wake, wake_rx) = crossbeam_channel::bounded(1);
        let (stop, stop_rx) = crossbeam_channel::bounded(0);
        let worker = Worker::new(&config, &me, bases, Arc::clone(&shared))?;
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
        self.shared.registered.load(std::sync::atomic::Ordering::SeqCst)
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

    /// Stops the thread and waits for it. It wakes at once; a request in flight
    /// finishes first (bounded by `request_timeout`). Then the thread
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

/// `http://host:port` from a configured endpoint (`host:port` gets `http://`).
fn normalize_endpoint(raw: &str) -> Result<String, DiscoveryError> {
    let bad = |reason: &str| DiscoveryError::InvalidEndpoint {
        endpoint: raw.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = raw.trim();
    let rest = match trimmed.split_once("://") {
        None => trimmed,
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(bad(&format!("scheme {scheme}:// is not supported, only http://")));
        }
    };
    let base = format!("http://{}", rest.trim_end_matches('/'));
    let authority = base["http://".len()..].split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return Err(bad("no host"));
    }
    Ok(base)
}

/// One endpoint as the thread tracks it.
struct Endpoint {
    base: String,
    /// The last registration succeeded.
    registered: bool,
}

/// The thread's side: the HTTP agent, the endpoints and the last roster.
struct Worker {
    agent: ureq::Agent,
    endpoints: Vec<Endpoint>,
    body: String,
    own_network: String,
    own_instance: String,
    request_timeout: std::time::Duration,
    flips: FlipWatch,
    interval: std::time::Duration,
    max_response_bytes: u64,
    shared: Arc<Shared>,
    /// Signs every request when set (servers that require it check it).
    token: Option<Vec<u8>>,
}

/// Largest roster body read from an endpoint.
const MAX_ROSTER_BYTES: u64 = 16 * 1024 * 1024;

impl Worker {
    fn new(
        config: &DiscoveryClientConfig,
        me: &RegistrationInfo,
        bases: Vec<String>,
        shared: Arc<Shared>,
    ) -> Result<Worker, DiscoveryError> {
        let body =
            serde_json::to_string(me).map_err(|e| DiscoveryError::InvalidRegistration(e.to_string()))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.request_timeout))
            // ureq reads proxy settings from the environment by default; a
            // discovery server is dialled directly.
            .proxy(None)
            .http_status_as_error(false)
            .user_agent(format!("reflow-discovery-client/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Worker {
            agent,
            endpoints: bases
                .into_iter()
                .map(|base| Endpoint {
                    base,
                    registered: false,
                })
                .collect(),
            body,
            own_network: me.network_id.clone(),
            own_instance: me.instance_id.clone(),
            request_timeout: config.request_timeout,
            flips: FlipWatch::default(),
            interval: config.refresh_interval,
            max_response_bytes: MAX_ROSTER_BYTES,
            shared,
            token: config.auth_token.as_ref().map(|t| t.expose().as_bytes().to_vec()),
        })
    }

    /// The headers that sign a request to `url` with `body`; none without a token.
    fn signature(&self, method: &str, url: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        match &self.token {
            Some(token) => auth::signed_headers(token, method, target_of(url), body).to_vec(),
            None => Vec::new(),
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

    /// Removes this instance's entry from every endpoint it is registered
    /// with, so that other peers see it leave on their next refresh instead
    /// of after the TTL. All requests share one `request_timeout`.
    fn deregister_all(&self) {
        self.shared
            .registered
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let deadline = std::time::Instant::now() + self.request_timeout;
        for endpoint in self.endpoints.iter().filter(|e| e.registered) {
            let url = format!(
                "{}/networks/{}?instance_id={}",
                endpoint.base,
                percent_encode(&self.own_network),
                percent_encode(&self.own_instance)
            );
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                log::warn!("no time left to deregister from {}", endpoint.base);
                continue;
            }
            let mut request = self.agent.delete(&url);
            for (name, value) in self.signature("DELETE", &url, b"") {
                request = request.header(name, value);
            }
            let outcome = request.config().timeout_global(Some(left)).build().call();
            match outcome.map(|r| r.status().as_u16()) {
                Ok(200) => log::info!("Deregistered from discovery endpoint: {}", endpoint.base),
                // Expired already, or a newer instance of this network took
                // over: nothing of ours to remove.
                Ok(404 | 409) => log::debug!("{}: no entry of this instance to deregister", endpoint.base),
                Ok(status) => log::warn!("deregistration from {} answered {status}", endpoint.base),
                Err(e) => log::warn!("deregistration from {} failed: {e}", endpoint.base),
            }
        }
    }

    /// Registers everywhere, reads every roster, publishes the changes.
    fn tick(&mut self, stop: &Receiver<()>) {
        let mut lists = Vec::new();
        for i in 0..self.endpoints.len() {
            if stopped(stop) {
                return;
            }
            self.register(i);
            if stopped(stop) {
                return;
            }
            let url = format!("{}/networks", self.endpoints[i].base);
            match self.fetch_roster(&url) {
                Ok(list) => lists.push(list),
                Err(e) => log::warn!("{e}"),
            }
        }
        if lists.is_empty() {
            return;
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
        let url = format!("{}/register", self.endpoints[i].base);
        let mut request = self.agent.post(&url).header("Content-Type", "application/json");
        for (name, value) in self.signature("POST", &url, self.body.as_bytes()) {
            request = request.header(name, value);
        }
        let outcome = request
            .send(self.body.as_bytes())
            .map_err(|e| DiscoveryError::Http {
                url: url.clone(),
                reason: e.to_string(),
            })
            .and_then(|mut response| {
                let status = response.status().as_u16();
                if status == 200 {
                    return Ok(());
                }
                let text = response
                    .body_mut()
                    .with_config()
                    .limit(4096)
                    .read_to_string()
                    .unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or(text);
                Err(DiscoveryError::Status {
                    url: url.clone(),
                    status,
                    message,
                })
            });
        let endpoint = &mut self.endpoints[i];
        let now_registered = outcome.is_ok();
        match outcome {
            Ok(()) if !endpoint.registered => {
                log::info!("Registered with discovery endpoint: {}", endpoint.base);
                endpoint.registered = true;
            }
            Ok(()) => {}
            Err(e) => {
                log::warn!("registration failed: {e}");
                endpoint.registered = false;
            }
        }
        let any = now_registered || self.endpoints.iter().any(|e| e.registered);
        self.shared
            .registered
            .store(any, std::sync::atomic::Ordering::SeqCst);
    }

    fn fetch_roster(&self, url: &str) -> Result<Vec<NetworkInfo>, DiscoveryError> {
        let mut request = self.agent.get(url);
        for (name, value) in self.signature("GET", url, b"") {
            request = request.header(name, value);
        }
        let mut response = request.call().map_err(|e| DiscoveryError::Http {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(DiscoveryError::Status {
                url: url.to_string(),
                status,
                message: String::new(),
            });
        }
        let decode = |reason: String| DiscoveryError::Decode {
            url: url.to_string(),
            reason,
        };
        let bytes = response
            .body_mut()
            .with_config()
            .limit(self.max_response_bytes)
            .read_to_vec()
            .map_err(|e| decode(e.to_string()))?;
        let mut list: Vec<NetworkInfo> = serde_json::from_slice(&bytes).map_err(|e| decode(e.to_string()))?;
        // One bad entry must not cost the others, nor one log line each.
        let listed = list.len();
        let mut first_problem = None;
        list.retain(|entry| match validate_roster_entry(entry) {
            Ok(()) => true,
            Err(why) => {
                first_problem.get_or_insert(why);
                false
            }
        });
        if let Some(why) = first_problem {
            log::warn!(
                "{url}: left out {} of {listed} roster entries that break the registration rules (first: {})",
                listed - list.len(),
                escaped(&why).max_chars(256)
            );
        }
        Ok(list)
    }
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

/// The request target of a URL (`http://h:9/networks/a?x` → `/networks/a?x`),
/// as the server sees it on its request line and checks the signature over.
fn target_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("/", |at| &rest[at..])
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
    fn endpoints_get_a_scheme_and_lose_trailing_slashes() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:9000").expect("ok"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(normalize_endpoint("http://h:9/").expect("ok"), "http://h:9");
        assert!(normalize_endpoint("https://h:9").is_err());
        assert!(normalize_endpoint("http://").is_err());
        assert!(normalize_endpoint("  ").is_err());
    }

    #[test]
    fn the_signed_target_is_the_path_and_query() {
        assert_eq!(target_of("http://h:9/register"), "/register");
        assert_eq!(
            target_of("http://h:9/base/networks/a%20b?instance_id=a-1"),
            "/base/networks/a%20b?instance_id=a-1"
        );
        assert_eq!(target_of("http://h:9"), "/");
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
        bad.endpoint = "0.0.0.0:9100".into();
        let err = DiscoveryService::start(DiscoveryClientConfig::default(), bad)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("wildcard"), "{err}");
    }

    #[test]
    fn a_full_subscriber_loses_events_without_blocking_others() {
        let shared = Shared {
            known: Mutex::new(BTreeMap::new()),
            registered: std::sync::atomic::AtomicBool::new(false),
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
