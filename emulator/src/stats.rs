//! Request counters for tests and benchmarks.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A snapshot of what the emulator has served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every request received, CDN included.
    pub requests: u64,
    /// Responses by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    pub messages_created: u64,
    /// 401, 403 and 429 responses: the ones Discord counts toward its 10,000 per 10 min
    /// Cloudflare ban (discord-api.md §3.1).
    pub invalid_requests: u64,
    /// Connections dropped by a `Reset` or `ResetAfterCommit` fault.
    pub connections_reset: u64,
    /// CDN GETs answered with an attachment's bytes (200 or 206).
    pub cdn_downloads: u64,
    /// Of those, the ones that asked for a `Range` and got a 206.
    pub cdn_ranged: u64,
    /// Body bytes the CDN announced (`Content-Length`) over those downloads.
    pub cdn_bytes: u64,
}

impl Stats {
    /// Responses with exactly this status.
    pub fn status(&self, code: u16) -> u64 {
        self.by_status.get(&code).copied().unwrap_or(0)
    }

    /// Responses with any 5xx status.
    pub fn server_errors(&self) -> u64 {
        self.by_status.range(500..600).map(|(_, n)| n).sum()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters(Mutex<Stats>);

impl Counters {
    pub fn request(&self) {
        self.with(|s| s.requests += 1);
    }

    pub fn response(&self, status: u16) {
        self.with(|s| {
            *s.by_status.entry(status).or_default() += 1;
            if matches!(status, 401 | 403 | 429) {
                s.invalid_requests += 1;
            }
        });
    }

    pub fn message_created(&self) {
        self.with(|s| s.messages_created += 1);
    }

    pub fn cdn_download(&self, ranged: bool, bytes: u64) {
        self.with(|s| {
            s.cdn_downloads += 1;
            s.cdn_ranged += u64::from(ranged);
            s.cdn_bytes += bytes;
        });
    }

    pub fn reset(&self) {
        self.with(|s| s.connections_reset += 1);
    }

    pub fn snapshot(&self) -> Stats {
        self.with(|s| s.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Stats) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
