//! How `reflow-peer` sends its `--send` and `--send-file` messages: in
//! order, each once its network is linked, at most `--send-rate` a second,
//! in the configured delivery mode. Under acknowledged delivery it then
//! waits for every acknowledgement; at most once, it says how many messages
//! the bridge counted lost and never claims more were delivered than that
//! allows. Every wait is woken by bridge events or signals, and bounded.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use reflow_distributed::bridge::{BridgeError, BridgeEvent, DeliveryMode, SendOptions};
use reflow_distributed::distributed_network::DistributedError;
use reflow_distributed::{DistributedNetwork, Message, PeerConfig};

use crate::peer_cli::SendSpec;

/// How long a send waits for a connection to its network, or for room
/// toward it (plus one discovery refresh interval when discovery is
/// configured).
pub const SEND_CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Longest single wait inside a send, so a signal is noticed this soon.
const SLICE: Duration = Duration::from_millis(200);

/// Failures logged one by one; past this many only the total is reported.
const FAILURES_LOGGED: usize = 10;

/// How the sends ended when nothing failed.
pub enum Outcome {
    Done,
    Stopped,
}

/// What the sends need from the running peer.
pub struct Sender<'a> {
    pub peer: &'a DistributedNetwork,
    pub config: &'a PeerConfig,
    pub events: &'a Receiver<BridgeEvent>,
    pub signals: &'a Receiver<i32>,
}

/// How the messages are paced and how long acknowledgements may take.
pub struct Pacing {
    /// At most this many messages per second.
    pub rate: Option<u32>,
    /// Acknowledged delivery: the wait after the last send.
    pub ack_timeout: Duration,
}

/// The messages lost at most once before shutdown, to tell whether closing
/// the connections lost more.
pub struct Lost {
    networks: Vec<String>,
    counted: u64,
}

impl Lost {
    /// Says at warn how many more messages were lost since the summary
    /// (queued when the connections closed at shutdown).
    pub fn report_more(&self, peer: &DistributedNetwork) {
        let now = lost(peer, &self.networks);
        if now > self.counted {
            log::warn!(
                "{} more message(s) lost at shutdown: queued, not yet written when the connection closed",
                now - self.counted
            );
        }
    }
}

impl Sender<'_> {
    /// Sends every spec in order; returns the outcome, and for at-most-once
    /// sends the count of lost messages so far. A send that fails is
    /// reported and the next one still goes. The first `logged` specs (the
    /// `--send` options) are logged one by one at info, the rest (a send
    /// file's) at debug.
    ///
    /// # Errors
    /// How many messages were not sent, or (acknowledged delivery) not
    /// acknowledged in time.
    pub fn send_all(
        &self,
        specs: &[SendSpec],
        logged: usize,
        pacing: &Pacing,
    ) -> (Result<Outcome, String>, Option<Lost>) {
        let mode = self.config.distributed.bridge.delivery.mode;
        let own = self.peer.network_id();
        let networks: Vec<String> = specs
            .iter()
            .filter(|s| s.network_id != own)
            .map(|s| s.network_id.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let lost_before = lost(self.peer, &networks);
        let mut state = SendState::new(self.wait());
        let mut pace = Pace::new(pacing.rate);
        let (mut sent, mut failed) = (0, 0);
        for (index, spec) in specs.iter().enumerate() {
            state.quiet = index >= logged;
            if pace.wait(self.signals) {
                return (Ok(self.stopped(sent, specs.len())), None);
            }
            match self.send_one(spec, mode, &mut state) {
                Ok(Outcome::Done) => sent += 1,
                Ok(Outcome::Stopped) => return (Ok(self.stopped(sent, specs.len())), None),
                Err(e) => {
                    failed += 1;
                    if failed <= FAILURES_LOGGED {
                        log::error!("{e}");
                    } else if failed == FAILURES_LOGGED + 1 {
                        log::error!("further failures are counted, not logged one by one");
                    }
                }
            }
        }
        let total = specs.len();
        let remote = state.remote_sent;
        let not_sent = (failed > 0).then(|| format!("{failed} of {total} message(s) not sent"));
        let result = match mode {
            DeliveryMode::Acknowledged if remote > 0 => {
                let unacknowledged = match self.await_acknowledgements(&networks, pacing.ack_timeout) {
                    Ok(left) => left,
                    Err(left) => {
                        log::info!(
                            "stopped by a signal with {left} of {remote} message(s) sent to other networks not acknowledged (acknowledged delivery)"
                        );
                        return (Ok(Outcome::Stopped), None);
                    }
                };
                if unacknowledged == 0 {
                    log::info!(
                        "sent {sent} of {total} message(s); all {remote} sent to other networks acknowledged (acknowledged delivery)"
                    );
                    not_sent.map_or(Ok(Outcome::Done), Err)
                } else {
                    let secs = pacing.ack_timeout.as_secs();
                    let why = format!(
                        "{unacknowledged} of {remote} message(s) sent to other networks not acknowledged after {secs} s (acknowledged delivery)"
                    );
                    Err(not_sent.map_or(why.clone(), |n| format!("{n}; {why}")))
                }
            }
            DeliveryMode::AtMostOnce if remote > 0 => {
                let lost_now = lost(self.peer, &networks).saturating_sub(lost_before);
                let lost_now = usize::try_from(lost_now).unwrap_or(usize::MAX).min(remote);
                log::info!(
                    "sent {sent} of {total} message(s) at most once; the bridge counted {lost_now} lost with connections that ended before writing them, so at most {} of the {remote} sent to other networks were delivered",
                    remote - lost_now
                );
                not_sent.map_or(Ok(Outcome::Done), Err)
            }
            _ => {
                if total > 0 {
                    log::info!("sent {sent} of {total} message(s)");
                }
                not_sent.map_or(Ok(Outcome::Done), Err)
            }
        };
        let lost = (mode == DeliveryMode::AtMostOnce).then(|| Lost {
            counted: lost(self.peer, &networks),
            networks,
        });
        (result, lost)
    }

    /// The wait for a link or for room: 10 s, plus one discovery refresh.
    fn wait(&self) -> Duration {
        let discovery = &self.config.distributed.discovery;
        if discovery.endpoints.is_empty() {
            SEND_CONNECT_WAIT
        } else {
            SEND_CONNECT_WAIT + discovery.refresh_interval
        }
    }

    fn stopped(&self, sent: usize, total: usize) -> Outcome {
        log::info!("stopped by a signal before every message was sent ({sent} of {total} sent)");
        Outcome::Stopped
    }

    fn send_one(
        &self,
        spec: &SendSpec,
        mode: DeliveryMode,
        state: &mut SendState,
    ) -> Result<Outcome, String> {
        let target = format!("{}/{}.{}", spec.network_id, spec.actor_id, spec.port);
        let payload = spec.payload.as_str();
        let done = |state: &SendState| {
            if state.quiet {
                log::debug!("sent message to {target}: {payload:?}");
            } else {
                log::info!("sent test message to {target}: {payload:?}");
            }
            Ok(Outcome::Done)
        };
        if spec.network_id == self.peer.network_id() {
            return match self.peer.send_to_actor(&spec.actor_id, &spec.port, payload) {
                Ok(()) => done(state),
                Err(e) => Err(format!("could not send to {target}: {e}")),
            };
        }
        let deadline = Instant::now() + state.wait;
        let mut message = Message::from(payload);
        loop {
            let slice = SLICE.min(deadline.saturating_duration_since(Instant::now()));
            let options = SendOptions::new(mode, slice);
            let error = match self.peer.send_to_remote_actor_with(
                &spec.network_id,
                &spec.actor_id,
                &spec.port,
                message,
                options,
            ) {
                Ok(()) => {
                    state.remote_sent += 1;
                    return done(state);
                }
                Err(error) => error,
            };
            let no_link = match retry_kind(&error) {
                Retry::Never => return Err(format!("could not send to {target}: {error}")),
                Retry::WhenLinked => true,
                Retry::WhenRoom => false,
            };
            if no_link {
                if state.unreachable.contains(&spec.network_id)
                    && !self.peer.is_connected_to(&spec.network_id)
                {
                    return Err(format!(
                        "could not send to {target}: no connection to network {} (gave up waiting for it earlier)",
                        spec.network_id
                    ));
                }
                match self.wait_for_connection(&spec.network_id, deadline, &mut state.last_errors) {
                    Waited::Linked => {}
                    Waited::Stopped => return Ok(Outcome::Stopped),
                    Waited::TimedOut => {
                        state.unreachable.insert(spec.network_id.clone());
                        return Err(format!(
                            "could not send to {target}: no connection to network {} after {} s ({})",
                            spec.network_id,
                            state.wait.as_secs(),
                            state.last_errors.explain(&spec.network_id, self.config)
                        ));
                    }
                }
            } else if self.signals.try_recv().is_ok() {
                return Ok(Outcome::Stopped);
            }
            if Instant::now() >= deadline {
                return Err(format!("could not send to {target}: {error}"));
            }
            let Some(back) = error.into_message() else {
                return Err(format!(
                    "could not send to {target}: the message was not handed back"
                ));
            };
            message = back;
        }
    }

    /// Waits for a link to `network` until `deadline`, woken by bridge
    /// events and signals rather than polling.
    fn wait_for_connection(&self, network: &str, deadline: Instant, last_errors: &mut LastErrors) -> Waited {
        loop {
            if self.peer.is_connected_to(network) {
                return Waited::Linked;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Waited::TimedOut;
            };
            crossbeam_channel::select! {
                recv(self.signals) -> _ => return Waited::Stopped,
                recv(self.events) -> event => match event {
                    Ok(event) => last_errors.note(&event),
                    Err(_) => return Waited::TimedOut,
                },
                default(left) => {}
            }
        }
    }

    /// Waits up to `timeout` for every network to acknowledge what was sent
    /// to it; returns how many are still unacknowledged, as an error when a
    /// signal stopped the wait.
    fn await_acknowledgements(&self, networks: &[String], timeout: Duration) -> Result<usize, usize> {
        let deadline = Instant::now() + timeout;
        let pending =
            |peer: &DistributedNetwork| -> usize { networks.iter().map(|n| peer.unacknowledged(n)).sum() };
        let waiting = pending(self.peer);
        if waiting > 0 {
            log::info!(
                "waiting up to {} s for {waiting} acknowledgement(s)",
                timeout.as_secs()
            );
        }
        for network in networks {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if self.peer.wait_acknowledged(network, SLICE.min(left)) == 0 || left.is_zero() {
                    break;
                }
                if self.signals.try_recv().is_ok() {
                    return Err(pending(self.peer));
                }
            }
        }
        Ok(pending(self.peer))
    }
}

/// Messages the bridge counted lost to `networks`.
fn lost(peer: &DistributedNetwork, networks: &[String]) -> u64 {
    networks.iter().map(|n| peer.lost_messages(n)).sum()
}

/// What one run of sends remembers from message to message.
struct SendState {
    wait: Duration,
    /// Per-message lines at debug rather than info: many messages.
    quiet: bool,
    remote_sent: usize,
    /// Networks that a send already waited for in vain.
    unreachable: HashSet<String>,
    last_errors: LastErrors,
}

impl SendState {
    fn new(wait: Duration) -> SendState {
        SendState {
            wait,
            quiet: false,
            remote_sent: 0,
            unreachable: HashSet::new(),
            last_errors: LastErrors::default(),
        }
    }
}

/// What to do after a failed send.
enum Retry {
    /// Wait for a link to the network, then send again.
    WhenLinked,
    /// Send again (each try waited a slice for room) until the deadline.
    WhenRoom,
    /// The message can never go: too large, a kind the peer cannot carry…
    Never,
}

fn retry_kind(error: &DistributedError) -> Retry {
    let DistributedError::NotSent(error) = error else {
        return Retry::Never;
    };
    match error.error() {
        BridgeError::NoConnection(_) | BridgeError::ConnectionClosed(_) => Retry::WhenLinked,
        BridgeError::QueueFull { .. } | BridgeError::WindowFull { .. } | BridgeError::OutboxFull { .. } => {
            Retry::WhenRoom
        }
        _ => Retry::Never,
    }
}

/// Paces sends to at most `rate` a second. After a stall it sends the next
/// message at once and then keeps the pace: it never bursts to catch up.
struct Pace {
    period: Option<Duration>,
    due: Instant,
}

impl Pace {
    fn new(rate: Option<u32>) -> Pace {
        Pace {
            period: rate.map(|r| Duration::from_secs(1) / r.max(1)),
            due: Instant::now(),
        }
    }

    /// Waits for the next slot; true when a signal came instead.
    fn wait(&mut self, signals: &Receiver<i32>) -> bool {
        let Some(period) = self.period else {
            return signals.try_recv().is_ok();
        };
        let now = Instant::now();
        if self.due > now && signals.recv_timeout(self.due - now).is_ok() {
            return true;
        }
        let now = Instant::now();
        // A slot missed by less than a period counts as kept (the average
        // rate stays exact under jitter); after a longer stall the pace
        // starts again from now.
        self.due = if now.saturating_duration_since(self.due) > period {
            now + period
        } else {
            self.due + period
        };
        signals.try_recv().is_ok()
    }
}

enum Waited {
    Linked,
    Stopped,
    TimedOut,
}

/// The latest dial error per target name (network id, or endpoint while
/// the network there is unknown).
#[derive(Default)]
struct LastErrors(HashMap<String, String>);

impl LastErrors {
    fn note(&mut self, event: &BridgeEvent) {
        if let BridgeEvent::ReconnectFailed {
            network_id, reason, ..
        } = event
        {
            self.0.insert(network_id.clone(), reason.clone());
        }
    }

    /// Why `network` is not linked, as far as this peer can tell.
    fn explain(&self, network: &str, config: &PeerConfig) -> String {
        if let Some(reason) = self.0.get(network) {
            return format!("last dial error: {reason}");
        }
        let unnamed: Vec<&str> = config
            .connect
            .iter()
            .filter(|t| t.options.network_id.is_none())
            .map(|t| t.endpoint.as_str())
            .collect();
        if let Some(reason) = unnamed.iter().find_map(|e| self.0.get(*e)) {
            return format!("last dial error: {reason}");
        }
        let named = config
            .connect
            .iter()
            .any(|t| t.options.network_id.as_deref() == Some(network));
        if !named && unnamed.is_empty() && config.distributed.discovery.endpoints.is_empty() {
            return format!(
                "no [[connect]] entry and no discovery_endpoints for network {network}, and it did not dial this peer"
            );
        }
        "no dial has reached it yet".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_keeps_the_rate_and_never_bursts_after_a_stall() {
        let (_tx, signals) = crossbeam_channel::bounded::<i32>(1);
        let period = Duration::from_millis(10);
        let mut pace = Pace::new(Some(100));
        let started = Instant::now();
        for _ in 0..11 {
            assert!(!pace.wait(&signals));
        }
        // Ten periods between the first slot and the eleventh.
        assert!(started.elapsed() >= period * 10, "{:?}", started.elapsed());
        // A stall of many periods: one message at once, then the pace again.
        std::thread::sleep(period * 8);
        let resumed = Instant::now();
        for _ in 0..5 {
            assert!(!pace.wait(&signals));
        }
        assert!(
            resumed.elapsed() >= period * 4,
            "burst after a stall: {:?}",
            resumed.elapsed()
        );
    }

    #[test]
    fn a_signal_ends_a_paced_wait() {
        let (tx, signals) = crossbeam_channel::bounded::<i32>(1);
        let mut pace = Pace::new(Some(1));
        assert!(!pace.wait(&signals));
        tx.send(15).unwrap();
        let started = Instant::now();
        assert!(pace.wait(&signals));
        assert!(started.elapsed() < Duration::from_millis(900));
        assert!(!Pace::new(None).wait(&signals));
    }
}
