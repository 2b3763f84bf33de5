//! Capped exponential backoff with jitter for transient failures (5xx, timeouts, resets).

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based): half fixed, half random, so many
    /// clients failing together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let d = exp.min(self.cap);
        let half = d / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        for _ in 0..50 {
            let d1 = b.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d4 = b.delay(4);
            assert!(d4 >= Duration::from_millis(400) && d4 <= Duration::from_millis(800));
            assert!(b.delay(30) <= Duration::from_secs(2));
        }
    }
}
