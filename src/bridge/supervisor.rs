//! A supervisor per dial target (`bridge-dial-<target>`): a `[[connect]]`
//! endpoint, a `Bridge::connect` that succeeded, or a network that discovery
//! lists. It owns the target's backoff, its one dial in flight and its
//! deadline, so a hung endpoint costs only its own supervisor. While the
//! target's network is connected (by this dial or by the peer dialing us) it
//! sleeps; when that session ends it redials with capped exponential backoff
//! and full jitter, for as long as the target is held.
//!
//! Log lines: `Reconnect attempt N/M for alpha failed: …` for the first M
//! attempts (`reconnect.max_attempts`), then `alpha (endpoint …) still
//! unreachable after N attempts, next attempt in …` at most every
//! `QUIET_LOG_EVERY`; `Reconnected to alpha (endpoint …) on attempt N`; an
//! auth refusal backs off to the cap and says so at warn every time; a link
//! down longer than `link_down_warning` says so once per outage.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select};

use super::backoff::Backoff;
use super::dial::{DialTarget, dial};
use super::error::{BridgeError, HandshakeError};
use super::events::{BridgeEvent, lock};
use super::hub::Hub;
use super::stats::bump;
use super::threads::join_quietly;

/// After the first `max_attempts`, a still-unreachable target is reported at
/// warn at most this often (every attempt is still logged at debug).
const QUIET_LOG_EVERY: Duration = Duration::from_secs(30);

/// The handle the bridge keeps for a running supervisor.
pub(crate) struct Supervisor {
    pub(crate) target: DialTarget,
    /// The network found at the target by the latest dial that reached it.
    pub(crate) learned: Arc<std::sync::Mutex<Option<String>>>,
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Supervisor {
    /// Starts supervising `target`. `linked` says that a dial of the
    /// caller's just reached `target.expected` (the supervisor then starts by
    /// waiting on that link).
    pub(crate) fn spawn(hub: &Arc<Hub>, target: DialTarget, linked: bool) -> std::io::Result<Supervisor> {
        let (stop, stop_rx) = bounded(0);
        let name = target.expected.clone().unwrap_or_else(|| target.endpoint.clone());
        let learned = Arc::new(std::sync::Mutex::new(target.expected.clone()));
        let state = State {
            learned: Arc::clone(&learned),
            hub: Arc::clone(hub),
            target: target.clone(),
            known: target.expected.clone(),
            backoff: Backoff::new(hub.config.reconnect.clone()),
            ever_connected: linked,
            warned_legacy: false,
            down_since: None,
            warned_down: false,
            last_quiet_log: None,
        };
        let thread = thread::Builder::new()
            .name(format!("bridge-dial-{name}"))
            .spawn(move || state.run(&stop_rx))?;
        Ok(Supervisor {
            target,
            learned,
            stop,
            thread,
        })
    }

    /// Stops the supervisor and joins it; a dial in flight ends at its
    /// deadline or when the bridge shuts down.
    pub(crate) fn stop(self) {
        join_quietly(self.signal_stop());
    }

    /// Tells the supervisor to stop without waiting for it (a dial in
    /// flight ends at its deadline); the caller joins the handle later.
    pub(crate) fn signal_stop(self) -> JoinHandle<()> {
        drop(self.stop);
        self.thread
    }
}

struct State {
    hub: Arc<Hub>,
    learned: Arc<std::sync::Mutex<Option<String>>>,
    target: DialTarget,
    /// The network at the target, once known (or expected from the start).
    known: Option<String>,
    backoff: Backoff,
    ever_connected: bool,
    warned_legacy: bool,
    down_since: Option<Instant>,
    warned_down: bool,
    last_quiet_log: Option<Instant>,
}

/// How a wait ended.
enum Woken {
    Due,
    Stop,
}

impl State {
    fn name(&self) -> &str {
        self.known.as_deref().unwrap_or(&self.target.endpoint)
    }

    fn connected(&self) -> bool {
        self.known
            .as_deref()
            .is_some_and(|n| self.hub.sessions.contains(n))
    }

    /// The supervisor's loop: wait while connected, dial when due.
    fn run(mut self, stop: &Receiver<()>) {
        let kicks = self.hub.watch();
        let stopped = self.hub.stopped();
        let mut delay: Option<Duration> = None;
        if self.ever_connected && !self.connected() {
            // The session the caller's dial made ended before this thread
            // ran (the watch above was not yet there to hear it): redial as
            // after any end, one backoff step later, not at once as attempt 0.
            self.down_since = Some(Instant::now());
            delay = Some(self.backoff.next_delay(roll()));
        }
        loop {
            if self.connected() {
                match wait(stop, &stopped, &kicks, None) {
                    Woken::Stop => return,
                    Woken::Due => {}
                }
                if !self.connected() {
                    // The session ended: the first redial comes after one backoff step.
                    self.down_since = Some(Instant::now());
                    self.warned_down = false;
                    delay = Some(self.backoff.next_delay(roll()));
                }
                continue;
            }
            if let Some(wait_for) = delay.take() {
                let until = Instant::now() + wait_for;
                // Kicks only matter if the network got connected meanwhile.
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() || self.connected() {
                        break;
                    }
                    if let Woken::Stop = wait(stop, &stopped, &kicks, Some(left)) {
                        return;
                    }
                }
                if self.connected() {
                    continue;
                }
            }
            if stop.try_recv() == Err(crossbeam_channel::TryRecvError::Disconnected) || self.hub.is_stopping()
            {
                return;
            }
            match dial(&self.hub, &self.target, &mut self.warned_legacy) {
                Ok(network) => self.connected_to(network),
                Err(BridgeError::ShuttingDown) => return,
                Err(err) => delay = Some(self.failed(&err)),
            }
        }
    }

    fn connected_to(&mut self, network: String) {
        let attempt = self.backoff.attempt();
        if self.ever_connected || attempt > 0 {
            log::info!(
                "Reconnected to {network} (endpoint {}) on attempt {attempt}",
                self.target.endpoint
            );
            bump(&self.hub.stats.reconnects, 1);
            self.hub.events.emit(BridgeEvent::Reconnected {
                network_id: network.clone(),
                endpoint: self.target.endpoint.clone(),
                attempt,
            });
        }
        if !self.ever_connected {
            let endpoint = &self.target.endpoint;
            if self.target.discovered {
                log::info!("connected to {network} at {endpoint} (found through discovery)");
            } else {
                log::info!("connected to peer at {endpoint} (network {network})");
            }
        }
        *lock(&self.learned) = Some(network.clone());
        self.known = Some(network);
        self.ever_connected = true;
        self.backoff.reset();
        self.down_since = None;
    }

    /// Logs a failed dial and returns the delay before the next one.
    fn failed(&mut self, err: &BridgeError) -> Duration {
        let now = Instant::now();
        let down_since = *self.down_since.get_or_insert(now);
        let attempt = self.backoff.attempt();
        let auth = is_auth_refusal(err);
        if auth {
            self.backoff.jump_to_cap();
        }
        let delay = self.backoff.next_delay(roll());
        let name = self.name().to_string();
        let endpoint = &self.target.endpoint;
        let reason = err.to_string();
        let loud = self.backoff.loud_attempts();
        if auth {
            log::warn!(
                "Dial of {name} (endpoint {endpoint}) refused: {reason}; the auth_token must match on both sides. Next attempt in {} ms",
                delay.as_millis()
            );
        } else if attempt == 0 && self.target.discovered {
            log::warn!(
                "could not connect to {name} at {endpoint} (found through discovery): {reason}; next attempt in {} ms",
                delay.as_millis()
            );
        } else if attempt == 0 {
            log::warn!(
                "could not connect to peer at {endpoint}: {reason}; next attempt in {} ms",
                delay.as_millis()
            );
        } else if attempt <= loud {
            log::warn!("Reconnect attempt {attempt}/{loud} for {name} failed: {reason}");
        } else if self.last_quiet_log.is_none_or(|at| now - at >= QUIET_LOG_EVERY) {
            self.last_quiet_log = Some(now);
            log::warn!(
                "{name} (endpoint {endpoint}) still unreachable after {attempt} attempts, next attempt in {} ms: {reason}",
                delay.as_millis()
            );
        } else {
            log::debug!("Reconnect attempt {attempt} for {name} failed: {reason}");
        }
        let threshold = self.hub.config.link_down_warning;
        if !self.warned_down && now - down_since >= threshold {
            self.warned_down = true;
            log::warn!(
                "Link to {name} (endpoint {endpoint}) has been down for {} s; last error: {reason}",
                (now - down_since).as_secs()
            );
        }
        self.hub.events.emit(BridgeEvent::ReconnectFailed {
            network_id: name,
            attempt,
            reason,
        });
        delay
    }
}

/// Waits for a kick, the stop of this supervisor or of the bridge, or `timeout`.
fn wait(
    stop: &Receiver<()>,
    stopped: &Receiver<()>,
    kicks: &Receiver<()>,
    timeout: Option<Duration>,
) -> Woken {
    let timer = timeout.map_or_else(crossbeam_channel::never, crossbeam_channel::after);
    select! {
        recv(stop) -> _ => Woken::Stop,
        recv(stopped) -> _ => Woken::Stop,
        recv(kicks) -> kicked => if kicked.is_ok() { Woken::Due } else { Woken::Stop },
        recv(timer) -> _ => Woken::Due,
    }
}

fn is_auth_refusal(err: &BridgeError) -> bool {
    match err {
        BridgeError::Handshake(HandshakeError::Refused(why)) => why.contains("auth"),
        BridgeError::Handshake(HandshakeError::Unproven(_)) => true,
        _ => false,
    }
}

/// A uniformly random number for the jitter; each process draws its own.
fn roll() -> u64 {
    getrandom::u64().unwrap_or_else(|_| crate::ids::random_u64())
}
