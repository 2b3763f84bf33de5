//! Snowflake ids: ms since the Discord epoch in the top bits, strictly increasing.

use std::time::{SystemTime, UNIX_EPOCH};

/// 2015-01-01T00:00:00Z in Unix ms (discord-api.md §4 "Snowflakes").
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Hands out ids shaped like Discord's: `(ms since epoch) << 22 | increment`.
#[derive(Debug)]
pub struct Snowflakes {
    last: u64,
}

impl Snowflakes {
    /// Starts after `last`, the highest id already issued (0 for a fresh state).
    pub fn after(last: u64) -> Self {
        Snowflakes { last }
    }

    /// The next id; never equal to or below an earlier one, even if the clock steps back.
    pub fn next(&mut self) -> u64 {
        let from_clock = (now_ms().saturating_sub(DISCORD_EPOCH_MS)) << 22;
        self.last = from_clock.max(self.last + 1);
        self.last
    }

    /// Makes sure later ids sort after `seen` (used while replaying the journal).
    pub fn observe(&mut self, seen: u64) {
        self.last = self.last.max(seen);
    }

    pub fn last(&self) -> u64 {
        self.last
    }
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_carry_the_time() {
        let mut s = Snowflakes::after(0);
        let a = s.next();
        let b = s.next();
        assert!(b > a);
        let ms = (a >> 22) + DISCORD_EPOCH_MS;
        assert!(now_ms().abs_diff(ms) < 5_000);
        let mut later = Snowflakes::after(u64::MAX >> 1);
        assert!(later.next() > u64::MAX >> 1);
    }
}
