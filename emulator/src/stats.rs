//! Request counters for tests and benchmarks, in total and per lane (bot channel, webhook).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::ratelimit::Scope;

/// A snapshot of what the emulator has served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every request received, CDN included.
    pub requests: u64,
    /// Responses by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    pub messages_created: u64,
    /// 401, 403 and 429 responses, except 429s of scope `shared`: the ones Discord counts
    /// toward its 10,000 per 10 min Cloudflare ban (discord-api.md §3.1).
    pub invalid_requests: u64,
    /// 429 responses by `X-RateLimit-Scope`, faults' included.
    pub rate_limited: ScopeCounts,
    /// When (Unix ms, the clock of message timestamps) the last global 429 was answered: what a
    /// client can first have heard of a global wait.
    pub last_global_429_ms: Option<u64>,
    /// Per webhook id: the messages it created and the 429s its token routes got.
    pub by_webhook: BTreeMap<u64, LaneStats>,
    /// Per channel id: the bot's creates and the executes of the channel's webhooks, apart.
    pub by_channel: BTreeMap<u64, ChannelStats>,
    /// Body bytes (both ways) let through the shared link cap (`link_bytes_per_sec`).
    pub link_bytes: u64,
    /// Body bytes let through the per-connection caps (`connection_bytes_per_sec`).
    pub connection_capped_bytes: u64,
    /// Connections dropped by a `Reset` or `ResetAfterCommit` fault.
    pub connections_reset: u64,
    /// CDN GETs answered with an attachment's bytes (200 or 206).
    pub cdn_downloads: u64,
    /// Of those, the ones that asked for a `Range` and got a 206.
    pub cdn_ranged: u64,
    /// Body bytes the CDN announced (`Content-Length`) over those downloads.
    pub cdn_bytes: u64,
}

/// 429s by scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeCounts {
    pub user: u64,
    pub global: u64,
    pub shared: u64,
}

impl ScopeCounts {
    pub fn total(&self) -> u64 {
        self.user + self.global + self.shared
    }

    fn add(&mut self, scope: Scope) {
        match scope {
            Scope::User => self.user += 1,
            Scope::Global => self.global += 1,
            Scope::Shared => self.shared += 1,
        }
    }
}

/// What one lane did: messages created and 429s received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneStats {
    pub messages_created: u64,
    pub rate_limited: ScopeCounts,
}

/// One channel's lanes: the bot's Create Message, and its webhooks' executes together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub bot: LaneStats,
    pub webhooks: LaneStats,
}

/// The lane a request belongs to, for the per-lane counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Create Message in this channel.
    Bot(u64),
    /// A token route of this webhook, which posts in `channel_id`.
    Webhook { webhook_id: u64, channel_id: u64 },
}

impl Stats {
    /// Responses with exactly this status.
    pub fn status(&self, code: u16) -> u64 {
        self.by_status.get(&code).copied().unwrap_or(0)
    }

    /// A webhook's counters (zero if it did nothing).
    pub fn webhook(&self, webhook_id: u64) -> LaneStats {
        self.by_webhook
            .get(&webhook_id)
            .copied()
            .unwrap_or_default()
    }

    /// A channel's counters (zero if nothing happened there).
    pub fn channel(&self, channel_id: u64) -> ChannelStats {
        self.by_channel
            .get(&channel_id)
            .copied()
            .unwrap_or_default()
    }

    /// Responses with any 5xx status.
    pub fn server_errors(&self) -> u64 {
        self.by_status.range(500..600).map(|(_, n)| n).sum()
    }
}

impl Stats {
    /// The counters a lane's events go to: its channel's, and its webhook's.
    fn lane(&mut self, lane: Lane) -> Vec<&mut LaneStats> {
        match lane {
            Lane::Bot(c) => vec![&mut self.by_channel.entry(c).or_default().bot],
            Lane::Webhook {
                webhook_id,
                channel_id,
            } => vec![
                self.by_webhook.entry(webhook_id).or_default(),
                &mut self.by_channel.entry(channel_id).or_default().webhooks,
            ],
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters(Mutex<Stats>);

impl Counters {
    pub fn request(&self) {
        self.with(|s| s.requests += 1);
    }

    /// One response; `scope` is a 429's `X-RateLimit-Scope`.
    pub fn response(&self, status: u16, scope: Option<Scope>, lane: Option<Lane>) {
        self.with(|s| {
            *s.by_status.entry(status).or_default() += 1;
            if matches!(status, 401 | 403 | 429) && scope != Some(Scope::Shared) {
                s.invalid_requests += 1;
            }
            let Some(scope) = scope.filter(|_| status == 429) else {
                return;
            };
            s.rate_limited.add(scope);
            if scope == Scope::Global {
                s.last_global_429_ms = Some(crate::snowflake::now_ms());
            }
            if let Some(lane) = lane {
                for l in s.lane(lane) {
                    l.rate_limited.add(scope);
                }
            }
        });
    }

    pub fn message_created(&self, lane: Lane) {
        self.with(|s| {
            s.messages_created += 1;
            for l in s.lane(lane) {
                l.messages_created += 1;
            }
        });
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
