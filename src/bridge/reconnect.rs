//! Redialing of connections this side dialed: the backoff schedule (a pure
//! type) and the one dispatcher thread that drives every redial.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::config::ReconnectPolicy;
use super::core::Shared;
use super::dialer;
use super::error::BridgeError;
use super::events::BridgeEvent;

/// Capped exponential backoff: `initial`, `initial × m`, `initial × m²`…, no
/// delay above `max_delay`, at most `max_attempts` delays.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: ReconnectPolicy,
    attempts: u32,
}

impl Backoff {
    pub(crate) fn new(policy: ReconnectPolicy) -> Self {
        Backoff { policy, attempts: 0 }
    }

    /// The delay before the next attempt, or `None` once every attempt is used.
    pub(crate) fn next_delay(&mut self) -> Option<Duration> {
        if self.attempts >= self.policy.max_attempts {
            return None;
        }
        let factor = self.policy.multiplier.max(1).saturating_pow(self.attempts);
        let delay = self
            .policy
            .initial_delay
            .saturating_mul(factor)
            .min(self.policy.max_delay);
        self.attempts += 1;
        Some(delay)
    }

    /// Attempts handed out so far (the number of the current attempt).
    pub(crate) fn attempt(&self) -> u32 {
        self.attempts
    }

    pub(crate) fn max_attempts(&self) -> u32 {
        self.policy.max_attempts
    }
}

/// A dialed connection dropped; redial `endpoint`, which was `network_id`.
#[derive(Debug, Clone)]
pub(crate) struct ReconnectRequest {
    pub(crate) network_id: String,
    pub(crate) endpoint: String,
}

struct Job {
    request: ReconnectRequest,
    backoff: Backoff,
    due: Instant,
}

/// The `bridge-reconnect` thread: waits for requests and for the earliest due
/// attempt; stops when its channel closes or the bridge stops.
pub(crate) fn run_dispatcher(shared: &Arc<Shared>, requests: Receiver<ReconnectRequest>) {
    let mut jobs: Vec<Job> = Vec::new();
    loop {
        let next_due = jobs.iter().map(|job| job.due).min();
        let received = match next_due {
            Some(due) => requests.recv_timeout(due.saturating_duration_since(Instant::now())),
            None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(request) => schedule(shared, &mut jobs, request),
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if shared.is_stopping() {
            return;
        }
        run_due_jobs(shared, &mut jobs);
    }
}

fn schedule(shared: &Shared, jobs: &mut Vec<Job>, request: ReconnectRequest) {
    if jobs
        .iter()
        .any(|job| job.request.network_id == request.network_id)
    {
        return;
    }
    let mut backoff = Backoff::new(shared.config.reconnect.clone());
    match backoff.next_delay() {
        Some(delay) => jobs.push(Job {
            request,
            backoff,
            due: Instant::now() + delay,
        }),
        None => log::info!(
            "Not redialing network {} (reconnect.max_attempts is 0)",
            request.network_id
        ),
    }
}

fn run_due_jobs(shared: &Arc<Shared>, jobs: &mut Vec<Job>) {
    let now = Instant::now();
    let mut index = 0;
    while index < jobs.len() {
        if jobs[index].due > now || shared.is_stopping() {
            index += 1;
            continue;
        }
        let finished = attempt(shared, &mut jobs[index]);
        if finished {
            jobs.swap_remove(index);
        } else {
            index += 1;
        }
    }
}

/// One redial. Returns true when the job is over (connected, or gave up).
fn attempt(shared: &Arc<Shared>, job: &mut Job) -> bool {
    let ReconnectRequest { network_id, endpoint } = job.request.clone();
    if shared.registry.contains(&network_id) {
        log::debug!("Network {network_id} is connected again; redial not needed");
        return true;
    }
    let number = job.backoff.attempt();
    let total = job.backoff.max_attempts();
    match dialer::dial(shared, &endpoint) {
        Ok(connected) => {
            log::info!("Reconnected to {connected} (endpoint {endpoint}) on attempt {number}");
            shared.events.emit(BridgeEvent::Reconnected {
                network_id: connected,
                endpoint,
                attempt: number,
            });
            true
        }
        Err(BridgeError::ShuttingDown) => true,
        Err(err) => {
            let reason = err.to_string();
            log::warn!("Reconnect attempt {number}/{total} for {network_id} failed: {reason}");
            shared.events.emit(BridgeEvent::ReconnectFailed {
                network_id: network_id.clone(),
                attempt: number,
                reason,
            });
            match job.backoff.next_delay() {
                Some(delay) => {
                    job.due = Instant::now() + delay;
                    false
                }
                None => {
                    log::warn!(
                        "Gave up reconnecting to {network_id} (endpoint {endpoint}) after {total} attempts"
                    );
                    shared.events.emit(BridgeEvent::GaveUp { network_id, endpoint });
                    true
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn default_schedule_doubles_from_200ms_and_stops_after_five() {
        let mut backoff = Backoff::new(ReconnectPolicy::default());
        let delays: Vec<_> = std::iter::from_fn(|| backoff.next_delay()).collect();
        assert_eq!(delays, vec![ms(200), ms(400), ms(800), ms(1600), ms(3200)]);
        assert_eq!(backoff.attempt(), 5);
    }

    #[test]
    fn delays_are_capped() {
        let policy = ReconnectPolicy {
            max_delay: ms(500),
            max_attempts: 4,
            ..ReconnectPolicy::default()
        };
        let mut backoff = Backoff::new(policy);
        let delays: Vec<_> = std::iter::from_fn(|| backoff.next_delay()).collect();
        assert_eq!(delays, vec![ms(200), ms(400), ms(500), ms(500)]);
    }

    #[test]
    fn zero_attempts_never_redials() {
        let policy = ReconnectPolicy {
            max_attempts: 0,
            ..ReconnectPolicy::default()
        };
        assert_eq!(Backoff::new(policy).next_delay(), None);
    }

    #[test]
    fn huge_multipliers_saturate_instead_of_overflowing() {
        let policy = ReconnectPolicy {
            multiplier: u32::MAX,
            max_attempts: 40,
            max_delay: Duration::from_secs(60),
            ..ReconnectPolicy::default()
        };
        let mut backoff = Backoff::new(policy);
        let last = std::iter::from_fn(|| backoff.next_delay()).last();
        assert_eq!(last, Some(Duration::from_secs(60)));
    }
}
