//! The redial schedule, without a clock or a random source of its own: a
//! capped exponential ceiling (`initial × multiplier^n`, at most `max_delay`)
//! and full jitter (each delay drawn uniformly from zero to its ceiling, from
//! a number the caller hands in), so a fleet that lost the same hub does not
//! redial it in lockstep. The schedule never runs out: a held link is
//! redialed for as long as it is held.

use std::time::Duration;

use super::config::ReconnectPolicy;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: ReconnectPolicy,
    attempts: u32,
}

impl Backoff {
    pub(crate) fn new(policy: ReconnectPolicy) -> Self {
        Backoff { policy, attempts: 0 }
    }

    /// The ceiling of the delay before attempt `n` (1-based).
    pub(crate) fn ceiling(&self, n: u32) -> Duration {
        let factor = self.policy.multiplier.max(1).saturating_pow(n.saturating_sub(1));
        self.policy
            .initial_delay
            .saturating_mul(factor)
            .min(self.policy.max_delay)
    }

    /// The delay before the next attempt, given a uniformly random `roll`.
    pub(crate) fn next_delay(&mut self, roll: u64) -> Duration {
        self.attempts = self.attempts.saturating_add(1);
        let ceiling = self.ceiling(self.attempts);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        // Full jitter: uniform in [0, ceiling].
        let drawn = ((u128::from(roll) * (u128::from(nanos) + 1)) >> 64) as u64;
        Duration::from_nanos(drawn)
    }

    /// Attempts handed out so far (the number of the next one's predecessor).
    pub(crate) fn attempt(&self) -> u32 {
        self.attempts
    }

    /// How many attempts are logged one by one (`N/max`) before the quieter phase.
    pub(crate) fn loud_attempts(&self) -> u32 {
        self.policy.max_attempts
    }

    /// Back to the first step (after a success).
    pub(crate) fn reset(&mut self) {
        self.attempts = 0;
    }

    /// Jump to the cap (an auth refusal: someone has to fix a token first).
    pub(crate) fn jump_to_cap(&mut self) {
        while self.attempts < 64 && self.ceiling(self.attempts + 1) < self.policy.max_delay {
            self.attempts += 1;
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
    fn ceilings_double_from_200ms_to_the_cap() {
        let backoff = Backoff::new(ReconnectPolicy::default());
        let ceilings: Vec<_> = (1..=7).map(|n| backoff.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            vec![ms(200), ms(400), ms(800), ms(1600), ms(3200), ms(3200), ms(3200)]
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let mut low = Backoff::new(ReconnectPolicy::default());
        assert_eq!(low.next_delay(0), Duration::ZERO);
        let mut high = Backoff::new(ReconnectPolicy::default());
        assert_eq!(high.next_delay(u64::MAX), ms(200));
        let mut mid = Backoff::new(ReconnectPolicy::default());
        let half = mid.next_delay(u64::MAX / 2);
        assert!(half > ms(99) && half < ms(101), "{half:?}");
    }

    #[test]
    fn the_schedule_never_runs_out() {
        let mut backoff = Backoff::new(ReconnectPolicy::default());
        for _ in 0..1000 {
            assert!(backoff.next_delay(u64::MAX) <= ms(3200));
        }
        assert_eq!(backoff.attempt(), 1000);
    }

    #[test]
    fn huge_multipliers_saturate_instead_of_overflowing() {
        let policy = ReconnectPolicy {
            multiplier: u32::MAX,
            max_delay: Duration::from_secs(60),
            ..ReconnectPolicy::default()
        };
        let backoff = Backoff::new(policy);
        assert_eq!(backoff.ceiling(40), Duration::from_secs(60));
    }

    #[test]
    fn an_auth_refusal_jumps_to_the_cap() {
        let mut backoff = Backoff::new(ReconnectPolicy::default());
        backoff.jump_to_cap();
        assert_eq!(backoff.next_delay(u64::MAX), ms(3200));
    }
}
