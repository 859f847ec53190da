//! Exponential backoff with full jitter, used for reconnects and retry delays.

use std::time::Duration;

/// Exponential backoff: `initial * 2^attempt`, capped at `max`, with random jitter so that many
/// replicas reconnecting after one outage do not stampede the broker together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and never waiting longer than `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The wait before attempt number `attempt` (0-based), jittered within [50%, 100%].
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(20));
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        let jitter = 0.5 + rand::random::<f64>() * 0.5;
        ceiling.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        assert!(b.delay(0) <= Duration::from_millis(100));
        assert!(b.delay(0) >= Duration::from_millis(50));
        assert!(b.delay(3) >= Duration::from_millis(400));
        for attempt in [10, 31, u32::MAX] {
            assert!(b.delay(attempt) <= Duration::from_secs(2));
            assert!(b.delay(attempt) >= Duration::from_secs(1));
        }
    }
}
