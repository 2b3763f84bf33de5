//! State shared by every connection: the store, faults, rate limiter, counters and URL signer.

use std::sync::Mutex;

use crate::cdn::Signer;
use crate::config::EmulatorConfig;
use crate::faults::Faults;
use crate::ratelimit::RateLimiter;
use crate::stats::Counters;
use crate::store::Store;

#[derive(Debug)]
pub struct Shared {
    pub config: EmulatorConfig,
    pub store: Mutex<Store>,
    pub faults: Faults,
    pub limiter: Mutex<RateLimiter>,
    pub stats: Counters,
    pub signer: Signer,
    pub token: String,
    pub bot_user_id: u64,
}

impl Shared {
    /// Runs `f` under the store lock. Keep `f` short: it never awaits and never streams bodies.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.store.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
