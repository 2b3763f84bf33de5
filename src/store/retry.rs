//! The one retry mechanism for every request dstore sends, to the API and to the CDN alike:
//! which failures deserve another try, how long to pause, when to stop, and what is logged.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::error::StoreError;
use super::ratelimit::announce_wait;

/// Tries a request gets when nothing answers at its host (connection refused, unknown name):
/// a server that is busy answers, so a long budget would only delay the sentence.
const UNREACHABLE_TRIES: u32 = 3;

/// How many 429s in a row one request may meet before dstore stops (each is waited out).
const MAX_RATE_LIMITED: u32 = 64;

/// Why one try failed.
#[derive(Debug)]
pub enum Failure {
    /// Worth the whole budget: a 5xx or 408, a timeout, a dropped connection. `maybe_done`
    /// when the request may have reached Discord and been carried out.
    Transient { why: String, maybe_done: bool },
    /// Nothing answers at `host` (never a URL: a webhook's path holds its token).
    Unreachable { host: String, why: String },
}

/// The budget every request starts with.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub backoff: Backoff,
    pub retries: u32,
}

/// One request's tries so far.
#[derive(Debug)]
pub struct Attempts {
    policy: Policy,
    route: &'static str,
    failures: u32,
    unreachable: u32,
    limited: u32,
    last_sent: Option<(Instant, OffsetDateTime)>,
    /// When the first try that may have been carried out was sent.
    maybe_done_since: Option<(Instant, OffsetDateTime)>,
}

impl Attempts {
    pub fn new(policy: Policy, route: &'static str) -> Self {
        Self {
            policy,
            route,
            failures: 0,
            unreachable: 0,
            limited: 0,
            last_sent: None,
            maybe_done_since: None,
        }
    }

    /// Notes that a try is being sent now.
    pub fn sending(&mut self) {
        self.last_sent = Some((Instant::now(), OffsetDateTime::now_utc()));
    }

    /// Counts a failed try, then pauses before the next one; a spent budget ends the request.
    pub async fn failed(&mut self, failure: Failure) -> Result<(), StoreError> {
        let (delay, why) = match failure {
            Failure::Transient { why, maybe_done } => {
                if maybe_done && self.maybe_done_since.is_none() {
                    self.maybe_done_since = self.last_sent;
                }
                self.failures += 1;
                if self.failures > self.policy.retries {
                    return Err(StoreError::GaveUp {
                        attempts: self.failures,
                        last: why,
                    });
                }
                (self.policy.backoff.delay(self.failures), why)
            }
            Failure::Unreachable { host, why } => {
                self.unreachable += 1;
                if self.unreachable >= UNREACHABLE_TRIES {
                    return Err(StoreError::Unreachable {
                        host,
                        why,
                        attempts: self.unreachable,
                    });
                }
                (
                    self.short().delay(self.unreachable),
                    format!("cannot reach {host}: {why}"),
                )
            }
        };
        tracing::warn!(
            route = self.route,
            "{why}; retry {} in {:.1}s",
            self.failures + self.unreachable,
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Counts a 429 asking for `wait`; one too long or one too many ends the request.
    pub fn rate_limited(&mut self, wait: Duration, global: bool) -> Result<(), StoreError> {
        self.limited += 1;
        if self.limited > MAX_RATE_LIMITED {
            return Err(StoreError::GaveUp {
                attempts: self.limited,
                last: "rate limited every time".into(),
            });
        }
        tracing::warn!(
            route = self.route,
            global,
            "rate limited; waiting {:.2}s",
            wait.as_secs_f64()
        );
        // Logged just above; the wait itself happens in the limiter.
        announce_wait(self.route, wait, false)
    }

    /// When a try that may have been carried out was sent, if that is more than `trust` ago:
    /// Discord's nonce may have forgotten it, so a new try could post a second copy.
    pub fn late(&self, trust: Duration) -> Option<OffsetDateTime> {
        let (at, wall) = self.maybe_done_since?;
        (at.elapsed() > trust).then_some(wall)
    }

    /// The tries that may have been carried out were looked for and were not.
    pub fn none_done(&mut self) {
        self.maybe_done_since = None;
    }

    /// The pauses between tries at an unreachable host: a few seconds in all.
    fn short(&self) -> Backoff {
        Backoff {
            base: self.policy.backoff.base.saturating_mul(4),
            cap: Duration::from_secs(4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            backoff: Backoff {
                base: Duration::from_millis(250),
                cap: Duration::from_secs(30),
            },
            retries: 8,
        }
    }

    fn unreachable() -> Failure {
        Failure::Unreachable {
            host: "127.0.0.1:9".into(),
            why: "connection refused".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_host_gets_a_short_budget() {
        let mut a = Attempts::new(policy(), "get-channel");
        let start = Instant::now();
        a.failed(unreachable()).await.unwrap();
        a.failed(unreachable()).await.unwrap();
        let err = a.failed(unreachable()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Unreachable { attempts: 3, .. }),
            "{err}"
        );
        assert!(
            start.elapsed() <= Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_spend_the_whole_budget() {
        let mut a = Attempts::new(policy(), "create-message");
        for _ in 0..8 {
            let f = Failure::Transient {
                why: "Discord answered 502".into(),
                maybe_done: false,
            };
            a.failed(f).await.unwrap();
        }
        let f = Failure::Transient {
            why: "Discord answered 502".into(),
            maybe_done: false,
        };
        assert!(matches!(
            a.failed(f).await,
            Err(StoreError::GaveUp { attempts: 9, .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_try_that_may_have_been_done_becomes_late() {
        let mut a = Attempts::new(policy(), "create-message");
        a.sending();
        a.failed(Failure::Transient {
            why: "timed out".into(),
            maybe_done: true,
        })
        .await
        .unwrap();
        assert!(a.late(Duration::from_secs(60)).is_none());
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(a.late(Duration::from_secs(60)).is_some());
        a.none_done();
        assert!(a.late(Duration::from_secs(60)).is_none());
    }

    #[test]
    fn a_wait_past_the_maximum_ends_the_request() {
        let mut a = Attempts::new(policy(), "create-message");
        let err = a
            .rate_limited(Duration::from_secs(400), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("create-message") && err.contains("6 min 40 s") && err.contains("5 min"),
            "{err}"
        );
    }
}
