use rand::Rng;
use std::time::Duration;

/// When a failed job runs again: exponential from `base`, capped at `cap`, with full jitter
/// (a random delay between zero and the exponential value), so that a burst of failures does
/// not come back as a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Attempts in all, the first included. After the last, the job is dead.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetrySchedule {
    pub const fn new(max_attempts: u32, base: Duration, cap: Duration) -> Self {
        RetrySchedule {
            max_attempts,
            base,
            cap,
        }
    }

    /// The exponential bound after `attempt` (1-based) failed: `min(cap, base * 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before the next attempt after `attempt` failed.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(if ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=ms)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_then_capped() {
        let s = RetrySchedule::new(8, Duration::from_secs(1), Duration::from_secs(60));
        let ceilings: Vec<u64> = (1..=8).map(|a| s.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(s.ceiling(1000), Duration::from_secs(60), "no overflow");
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_ceiling() {
        let s = RetrySchedule::new(12, Duration::from_secs(2), Duration::from_secs(600));
        let delays: Vec<Duration> = (0..500).map(|_| s.delay(4)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(16)));
        // Jitter really spreads them: not all equal, and some in each half.
        assert!(delays.iter().any(|d| *d < Duration::from_secs(8)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(8)));
    }
}
