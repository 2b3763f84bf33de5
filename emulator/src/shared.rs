//! State shared by every connection: the store, faults, rate limiter, counters, URL signer and
//! link caps.

use std::sync::{Arc, Mutex};

use crate::cdn::Signer;
use crate::config::EmulatorConfig;
use crate::faults::Faults;
use crate::link::{Pacer, Totals};
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
    /// The shared link cap, if configured.
    pub link: Option<Arc<Pacer>>,
    /// What the per-connection caps have let through, over all connections.
    pub connection_totals: Arc<Totals>,
}

impl Shared {
    /// The pacers a new connection's bodies go through: the shared link, then its own cap.
    pub fn connection_pacers(&self) -> Vec<Arc<Pacer>> {
        let own = self
            .config
            .connection_bytes_per_sec
            .map(|rate| Pacer::counted(rate, self.connection_totals.clone()));
        self.link.iter().cloned().chain(own).collect()
    }

    /// Runs `f` under the store lock. Keep `f` short: it never awaits and never streams bodies.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.store.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
