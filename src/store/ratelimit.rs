//! Pacing by Discord's rate-limit headers (discord-api.md §3.1): per-bucket `Remaining` and
//! `Reset-After`, 429 `retry_after` (route or global), and the 50 requests/s global limit.
//! serenity's own ratelimiter cannot be used: the proxy only works with it off (§5.1).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use reqwest::header::HeaderMap;

use super::error::StoreError;

/// The global limit for a bot: 50 requests per second (discord-api.md §3.1).
const GLOBAL_PER_SEC: usize = 50;

/// What a route's bucket is taken to allow until a reply says (discord-api.md §3.2, folklore):
/// a bot channel's creates 5 per 5 s, a webhook's executes 5 per 2 s. Without a guess the first
/// window of a fresh lane would be filled past its limit and answered with 429s.
fn folklore(kind: &str) -> Option<(u64, Duration)> {
    match kind {
        "create-message" => Some((5, Duration::from_secs(5))),
        "webhook-execute" => Some((5, Duration::from_secs(2))),
        _ => None,
    }
}

/// The hidden cap the webhooks of one channel share, until a `shared` 429 says otherwise: 30
/// executes per 60 s (discord/discord-api-docs#367, discord-api.md §3.2). No header announces
/// it, so it is paced from the start rather than found by a 429 on every channel.
const GROUP_CAP: (u64, Duration) = (30, Duration::from_secs(60));

/// Reserved slots not used within this long are given up (the request never came).
const PREPAID_FOR: Duration = Duration::from_secs(2);

/// The longest rate-limit wait dstore sits through. Bucket windows last seconds and a
/// webhook's `retry_after` has been seen at 45 s (discord-api.md §3.2); a wait longer than this
/// is a ban or an outage on Discord's side, better met by `resume` later than a silent hour.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// What a request is for, so requests that share a Discord bucket share our pacing.
/// Buckets are per route and per top-level resource (channel or guild).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteKey {
    pub kind: &'static str,
    pub major: u64,
}

#[derive(Debug)]
struct Bucket {
    remaining: u64,
    /// When the current window ends. Once a window has ended a new one is opened at once, its
    /// end guessed from the window's known length, so a bucket never waits on a reply that
    /// may never come (a request that fails without headers tells nothing).
    reset_at: Instant,
    /// `reset_at` is our guess: no reply from this window has come yet.
    guessed: bool,
    /// When this window was opened here; replies to requests sent before describe an older one.
    opened_at: Instant,
    /// `X-RateLimit-Limit`: what a fresh window allows.
    limit: Option<u64>,
    /// The longest `Reset-After` seen: the window's length, as best known.
    window: Duration,
    /// Made up from [`folklore`] before any reply: the first reply replaces it whole.
    folklore: bool,
}

/// The pacing of a group's hidden cap: a fixed window opened by its first request, as Discord's
/// appears to be; its end is moved to a period after the first reply (the server counted that
/// request between sending and the reply, so a window timed from the reply never ends early).
#[derive(Debug, Clone, Copy)]
struct GroupCap {
    limit: u64,
    period: Duration,
    end: Instant,
    count: u64,
    /// The route and ticket of the window's first request, until its reply fixes `end`.
    first: Option<(RouteKey, u64)>,
}

#[derive(Debug, Default)]
struct State {
    /// Discord's opaque bucket hash for each route, learnt from `X-RateLimit-Bucket`.
    bucket_of: HashMap<RouteKey, String>,
    buckets: HashMap<(String, u64), Bucket>,
    /// Requests sent per route so far: a reply's `Remaining` was counted before the requests
    /// sent after it, which the server has (or will have) counted too.
    sent: HashMap<RouteKey, u64>,
    global_until: Option<Instant>,
    recent: VecDeque<Instant>,
    /// Routes that share a limit no header announces: a webhook's executes and every other
    /// webhook of its channel (Discord's per-channel cap, answered with scope `shared`).
    group_of: HashMap<RouteKey, u64>,
    /// A group held back by a `shared` 429 until this instant.
    group_until: HashMap<u64, Instant>,
    /// Each group's hidden cap as paced here.
    caps: HashMap<u64, GroupCap>,
    /// Slots taken ahead by [`RateLimiter::reserve`], for the request about to be sent.
    prepaid: HashMap<RouteKey, VecDeque<Ticket>>,
}

/// A request's place among those sent on its route, and when it left, for reading its reply.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    seq: u64,
    sent_at: Instant,
}

impl State {
    /// Until when a 429 holds `key` back after `now`: a global one, or a `shared` one on the
    /// group it is in, whichever ends later.
    fn held_until(&self, key: &RouteKey, now: Instant) -> Option<Instant> {
        let group = self
            .group_of
            .get(key)
            .and_then(|g| self.group_until.get(g))
            .copied();
        group.max(self.global_until).filter(|u| *u > now)
    }

    fn bucket_name(&self, key: &RouteKey) -> (String, u64) {
        let name = self
            .bucket_of
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.kind.to_string());
        (name, key.major)
    }

    /// How long to wait before sending, or a ticket after taking a slot. Every wait it
    /// returns ends at a known instant, after which a slot is free.
    fn try_take(&mut self, key: &RouteKey, now: Instant) -> Result<Ticket, Duration> {
        if let Some(until) = self.held_until(key, now) {
            return Err(until - now);
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        let bot = !key.is_webhook();
        if bot && self.recent.len() >= GLOBAL_PER_SEC {
            return Err(Duration::from_secs(1) - now.duration_since(self.recent[0]));
        }
        let group = self.group_of.get(key).copied();
        if let Some(cap) = group.and_then(|g| self.caps.get(&g)) {
            if cap.end > now && cap.count >= cap.limit {
                return Err(cap.end - now);
            }
        }
        let name = self.bucket_name(key);
        if !self.buckets.contains_key(&name) {
            if let Some((limit, window)) = folklore(key.kind) {
                self.buckets.insert(
                    name.clone(),
                    Bucket {
                        remaining: limit,
                        reset_at: now + window,
                        guessed: true,
                        opened_at: now,
                        limit: Some(limit),
                        window,
                        folklore: true,
                    },
                );
            }
        }
        if let Some(b) = self.buckets.get_mut(&name) {
            if b.reset_at <= now {
                // The window ended: a fresh one allows `limit` and lasts as long as the last
                // one did, until a reply says otherwise. Without a limit nothing is known.
                match b.limit {
                    Some(limit) => {
                        b.remaining = limit;
                        b.opened_at = now;
                        b.reset_at = now + b.window;
                        b.guessed = true;
                    }
                    None => drop(self.buckets.remove(&name)),
                }
            }
        }
        if let Some(b) = self.buckets.get_mut(&name) {
            if b.remaining == 0 {
                return Err(b.reset_at - now);
            }
            b.remaining -= 1;
        }
        if bot {
            self.recent.push_back(now);
        }
        let sent = self.sent.entry(*key).or_default();
        *sent += 1;
        let seq = *sent;
        if let Some(g) = group {
            let cap = self.caps.entry(g).or_insert(GroupCap {
                limit: GROUP_CAP.0,
                period: GROUP_CAP.1,
                end: now,
                count: 0,
                first: None,
            });
            if cap.end <= now {
                cap.end = now + cap.period;
                cap.count = 0;
                cap.first = Some((*key, seq));
            }
            cap.count += 1;
        }
        Ok(Ticket { seq, sent_at: now })
    }
}

impl State {
    /// A slot reserved for `key` moments ago, if any; older ones are given up.
    /// A slot of a window that has ended since it was taken is given up too: the request
    /// would reach the server in the next window, where nothing counted it; and so is every
    /// slot while a 429 taken since holds the route back (globally, or its group).
    fn prepaid(&mut self, key: &RouteKey) -> Option<Ticket> {
        let now = Instant::now();
        let held = self.held_until(key, now).is_some();
        let window = self
            .buckets
            .get(&self.bucket_name(key))
            .map(|b| (b.opened_at, b.reset_at));
        let queue = self.prepaid.get_mut(key)?;
        if held {
            queue.clear();
            return None;
        }
        while let Some(t) = queue.pop_front() {
            let current = window.is_none_or(|(opened, ends)| t.sent_at >= opened && now < ends);
            if now.duration_since(t.sent_at) < PREPAID_FOR && current {
                return Some(t);
            }
        }
        None
    }

    /// The reply to the first request of `key`'s group window: the window ends a period after
    /// now, not after the request left.
    fn confirm_group(&mut self, key: &RouteKey, ticket: Ticket) {
        let Some(g) = self.group_of.get(key).copied() else {
            return;
        };
        if let Some(cap) = self.caps.get_mut(&g) {
            if cap.first == Some((*key, ticket.seq)) {
                cap.first = None;
                cap.end = cap.end.max(Instant::now() + cap.period);
            }
        }
    }
}

impl RouteKey {
    /// Webhook routes carry no bot token, so the bot's global limit does not pace them.
    pub fn is_webhook(&self) -> bool {
        self.kind.starts_with("webhook")
    }
}

impl State {
    /// When a request on `key` could be sent without waiting, as [`State::try_take`] would
    /// find it; takes nothing.
    fn ready_at(&self, key: &RouteKey, now: Instant) -> Instant {
        let mut at = self.held_until(key, now).unwrap_or(now);
        let cap = self.group_of.get(key).and_then(|g| self.caps.get(g));
        if let Some(cap) = cap.filter(|c| c.end > now && c.count >= c.limit) {
            at = at.max(cap.end);
        }
        if !key.is_webhook() {
            let live: Vec<&Instant> = self
                .recent
                .iter()
                .filter(|t| now.duration_since(**t) < Duration::from_secs(1))
                .collect();
            if live.len() >= GLOBAL_PER_SEC {
                at = at.max(*live[live.len() - GLOBAL_PER_SEC] + Duration::from_secs(1));
            }
        }
        if let Some(b) = self.buckets.get(&self.bucket_name(key)) {
            // A window that ended opens a fresh one at once; one still running waits when empty.
            if b.reset_at > now && b.remaining == 0 {
                at = at.max(b.reset_at);
            }
        }
        at
    }
}

#[derive(Debug, Default)]
pub struct RateLimiter {
    state: Mutex<State>,
}

impl RateLimiter {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent between statements: a panic elsewhere must not spread.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request on `key` may be sent without being rate limited. A wait longer
    /// than [`MAX_WAIT`] is not waited: the request ends with [`StoreError::WaitTooLong`].
    pub async fn acquire(&self, key: &RouteKey) -> Result<Ticket, StoreError> {
        if let Some(ticket) = self.state().prepaid(key) {
            return Ok(ticket);
        }
        loop {
            let taken = self.state().try_take(key, Instant::now());
            match taken {
                Ok(ticket) => return Ok(ticket),
                Err(d) => {
                    announce_wait(key.kind, d, true)?;
                    tokio::time::sleep(d.max(Duration::from_millis(1))).await
                }
            }
        }
    }

    /// When a request on `key` could leave without waiting for a rate limit (now, if it can
    /// now). Never waits and takes no slot: the scheduler asks it of every lane.
    pub fn ready_at(&self, key: &RouteKey) -> Instant {
        self.state().ready_at(key, Instant::now())
    }

    /// Takes a slot on `key` now, if one is free, for the request about to be sent there: the
    /// next [`RateLimiter::acquire`] on `key` gets it without waiting. The scheduler reserves
    /// before it hands a pack to a lane, so it never hands two packs the same slot.
    pub fn reserve(&self, key: &RouteKey) -> bool {
        let mut st = self.state();
        let now = Instant::now();
        match st.try_take(key, now) {
            Ok(ticket) => {
                st.prepaid.entry(*key).or_default().push_back(ticket);
                true
            }
            Err(_) => false,
        }
    }

    /// Messages per second the routes `keys` allow together, as best known now: each bucket's
    /// limit over its window (learned, else Discord's folklore), a group's hidden cap over the
    /// group's routes, the bot's global over the bot's; `None` when nothing is known of one.
    pub fn rate(&self, keys: &[RouteKey]) -> Option<f64> {
        let st = self.state();
        let mut groups: HashMap<u64, f64> = HashMap::new();
        let (mut bot, mut hooks) = (0.0, 0.0);
        for key in keys {
            let own = match st.buckets.get(&st.bucket_name(key)) {
                Some(b) if b.limit.is_some() && !b.window.is_zero() => {
                    b.limit.unwrap_or(0) as f64 / b.window.as_secs_f64()
                }
                _ => {
                    let (limit, window) = folklore(key.kind)?;
                    limit as f64 / window.as_secs_f64()
                }
            };
            match st.group_of.get(key) {
                Some(g) => *groups.entry(*g).or_default() += own,
                None if key.is_webhook() => hooks += own,
                None => bot += own,
            }
        }
        for (g, sum) in groups {
            let (limit, period) = st.caps.get(&g).map_or(GROUP_CAP, |c| (c.limit, c.period));
            hooks += sum.min(limit as f64 / period.as_secs_f64());
        }
        Some(hooks + f64::min(bot, GLOBAL_PER_SEC as f64))
    }

    /// Learns the bucket state from the headers of the reply to request `ticket`.
    pub fn observe(&self, key: &RouteKey, ticket: Ticket, headers: &HeaderMap) {
        self.learn(key, ticket, headers, false);
    }

    /// [`RateLimiter::observe`] for a 429: its `Reset-After` is the penalty, which says
    /// nothing about the window's length.
    pub fn observe_limited(&self, key: &RouteKey, ticket: Ticket, headers: &HeaderMap) {
        self.learn(key, ticket, headers, true);
    }

    fn learn(&self, key: &RouteKey, ticket: Ticket, headers: &HeaderMap, limited: bool) {
        self.state().confirm_group(key, ticket);
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let remaining = h("x-ratelimit-remaining").and_then(|v| v.parse::<u64>().ok());
        let reset_after = h("x-ratelimit-reset-after").and_then(|v| v.parse::<f64>().ok());
        let (Some(remaining), Some(reset_after)) = (remaining, reset_after) else {
            return;
        };
        let limit = h("x-ratelimit-limit").and_then(|v| v.parse::<u64>().ok());
        let now = Instant::now();
        let reset_after = secs(reset_after);
        let reset_at = now + reset_after;
        let mut st = self.state();
        // The server counted this request before the ones sent after it; count those too.
        let sent_since = st.sent.get(key).map_or(0, |n| n.saturating_sub(ticket.seq));
        let remaining = remaining.saturating_sub(sent_since);
        if let Some(hash) = h("x-ratelimit-bucket") {
            let before = st.bucket_name(key);
            st.bucket_of.insert(*key, hash.to_string());
            let name = st.bucket_name(key);
            // The window paced so far under the route's name is the one this hash names.
            if name != before && !st.buckets.contains_key(&name) {
                if let Some(b) = st.buckets.remove(&before) {
                    st.buckets.insert(name, b);
                }
            }
        }
        let name = st.bucket_name(key);
        // A reply's `Reset-After` is what is left of the window when it was written, which for
        // a large body is well after the window opened: the window is at least that, and at
        // least the folklore length of its route.
        let least = folklore(key.kind).map_or(Duration::ZERO, |(_, w)| w);
        let window = if limited {
            least
        } else {
            reset_after.max(least)
        };
        let fresh = Bucket {
            remaining,
            reset_at,
            guessed: false,
            opened_at: ticket.sent_at,
            limit,
            window,
            folklore: false,
        };
        let bucket = st.buckets.entry(name).or_insert(fresh);
        if bucket.folklore {
            // The guess made before any reply gives way to what Discord says. Every request
            // taken from the guess went into this window, reaching the server in whatever
            // order: what the window's limit leaves after them bounds what is left too.
            let taken = bucket.limit.unwrap_or(0).saturating_sub(bucket.remaining);
            bucket.folklore = false;
            bucket.remaining = limit.map_or(remaining, |l| remaining.min(l.saturating_sub(taken)));
            bucket.reset_at = reset_at;
            bucket.guessed = false;
            bucket.limit = limit;
            bucket.window = window;
            return;
        }
        bucket.limit = limit.or(bucket.limit);
        if !limited {
            bucket.window = bucket.window.max(reset_after);
        }
        if ticket.sent_at < bucket.opened_at {
            return; // a late reply from a window already over
        }
        if bucket.guessed || ticket.sent_at >= bucket.reset_at {
            // The first reply of a window we opened ourselves: it tells the real end.
            bucket.remaining = bucket.remaining.min(remaining);
            bucket.reset_at = reset_at;
            bucket.guessed = false;
        } else {
            // Replies within one window arrive out of order: keep the lowest count.
            bucket.remaining = bucket.remaining.min(remaining);
        }
    }

    /// Puts `key` in `group`: a `shared` 429 on any route of the group holds back all of them.
    pub fn join_group(&self, key: RouteKey, group: u64) {
        self.state().group_of.insert(key, group);
    }

    /// A 429 with scope `shared` on `key`: the limit is one the route shares with others no
    /// header names, so its whole group (a webhook's channel) waits `retry_after`, not only
    /// `key`: the other webhooks of that channel would be refused the same way.
    pub fn penalize_shared(&self, key: &RouteKey, retry_after: Duration) {
        self.penalize(key, retry_after, false);
        let until = Instant::now() + retry_after;
        let mut st = self.state();
        if let Some(&group) = st.group_of.get(key) {
            let at = st.group_until.entry(group).or_insert(until);
            *at = (*at).max(until);
            // The cap is lower than paced: the executes it took this window (all but the one
            // refused) are its size from now on; a fresh window opens after the wait.
            if let Some(cap) = st.caps.get_mut(&group) {
                let took = cap.count.saturating_sub(1).max(1);
                if took < cap.limit {
                    tracing::info!(
                        group,
                        "the webhooks of channel {group} share a cap of about {took} messages per {:.0}s",
                        cap.period.as_secs_f64()
                    );
                    cap.limit = took;
                }
                cap.end = until;
                cap.count = cap.limit;
            }
        }
    }

    /// Holds back the bucket (or every request, when `global`) for `retry_after`.
    pub fn penalize(&self, key: &RouteKey, retry_after: Duration, global: bool) {
        let now = Instant::now();
        let until = now + retry_after;
        if retry_after > Duration::from_secs(1) {
            super::wait::note_wait(until);
        }
        let mut st = self.state();
        if global {
            st.global_until = Some(st.global_until.map_or(until, |u| u.max(until)));
            return;
        }
        let name = st.bucket_name(key);
        let old = st.buckets.get(&name);
        let limit = old.and_then(|b| b.limit);
        let window = old.map_or(retry_after, |b| b.window);
        st.buckets.insert(
            name,
            Bucket {
                remaining: 0,
                reset_at: until,
                guessed: false,
                opened_at: now,
                limit,
                window,
                folklore: false,
            },
        );
    }
}

/// Checks a rate-limit wait against [`MAX_WAIT`]; a wait over a second is noted for the
/// progress line and, when `log`, logged with its route and length.
pub fn announce_wait(route: &'static str, wait: Duration, log: bool) -> Result<(), StoreError> {
    if wait > MAX_WAIT {
        tracing::warn!(
            route,
            "Discord's rate limit asks for a wait of {:.1}s, longer than dstore waits",
            wait.as_secs_f64()
        );
        return Err(StoreError::WaitTooLong { route, wait });
    }
    if wait > Duration::from_secs(1) {
        if log {
            tracing::info!(
                route,
                "waiting {:.1}s for Discord's rate limit",
                wait.as_secs_f64()
            );
        }
        super::wait::note_wait(Instant::now() + wait);
    }
    Ok(())
}

/// Seconds as a duration; negative or absurd values are clamped (a bad header must not panic).
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() {
        s.clamp(0.0, 3600.0)
    } else {
        1.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(remaining: &str, reset_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-remaining",
            HeaderValue::from_str(remaining).unwrap(),
        );
        h.insert(
            "x-ratelimit-reset-after",
            HeaderValue::from_str(reset_after).unwrap(),
        );
        h.insert("x-ratelimit-bucket", HeaderValue::from_static("abcd"));
        h
    }

    const KEY: RouteKey = RouteKey {
        kind: "create",
        major: 7,
    };

    #[tokio::test(start_paused = true)]
    async fn waits_for_reset_when_bucket_is_empty() {
        let rl = RateLimiter::default();
        rl.observe(
            &KEY,
            Ticket {
                seq: 0,
                sent_at: Instant::now(),
            },
            &headers("0", "2.5"),
        );
        let start = tokio::time::Instant::now();
        rl.acquire(&KEY).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(2400),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn remaining_counts_down_and_other_channels_are_separate() {
        let rl = RateLimiter::default();
        rl.observe(
            &KEY,
            Ticket {
                seq: 0,
                sent_at: Instant::now(),
            },
            &headers("1", "5"),
        );
        let now = Instant::now();
        let mut st = rl.state();
        assert!(st.try_take(&KEY, now).is_ok());
        assert!(st.try_take(&KEY, now).is_err());
        let other = RouteKey {
            kind: "create",
            major: 8,
        };
        assert!(st.try_take(&other, now).is_ok());
    }

    #[test]
    fn global_penalty_blocks_every_route() {
        let rl = RateLimiter::default();
        rl.penalize(&KEY, Duration::from_secs(3), true);
        let other = RouteKey {
            kind: "get",
            major: 1,
        };
        assert!(rl
            .state
            .lock()
            .unwrap()
            .try_take(&other, Instant::now())
            .is_err());
    }

    #[test]
    fn ready_at_says_when_an_empty_bucket_refills_and_takes_nothing() {
        let rl = RateLimiter::default();
        let now = Instant::now();
        assert!(rl.ready_at(&KEY) <= Instant::now());
        let t = Ticket {
            seq: 0,
            sent_at: now,
        };
        rl.observe(&KEY, t, &headers("1", "4"));
        // One left: ready now, and asking twice takes nothing.
        assert!(rl.ready_at(&KEY) <= Instant::now());
        assert!(rl.ready_at(&KEY) <= Instant::now());
        rl.state().try_take(&KEY, Instant::now()).unwrap();
        let at = rl.ready_at(&KEY);
        assert!(at >= now + Duration::from_millis(3900), "{:?}", at - now);
        // Another route is not held up.
        let other = RouteKey {
            kind: "create",
            major: 8,
        };
        assert!(rl.ready_at(&other) <= Instant::now());
    }

    #[test]
    fn webhook_routes_are_not_paced_by_the_bots_global_limit() {
        let st = &mut State::default();
        let now = Instant::now();
        for i in 0..50 {
            let k = RouteKey {
                kind: "get",
                major: i,
            };
            st.try_take(&k, now).unwrap();
        }
        let bot = RouteKey {
            kind: "get",
            major: 99,
        };
        let hook = RouteKey {
            kind: "webhook-execute",
            major: 99,
        };
        assert!(st.try_take(&bot, now).is_err());
        assert!(st.ready_at(&bot, now) > now);
        assert_eq!(st.ready_at(&hook, now), now);
        assert!(st.try_take(&hook, now).is_ok());
    }

    #[test]
    fn global_limit_is_fifty_per_second() {
        let st = &mut State::default();
        let now = Instant::now();
        for i in 0..50 {
            let k = RouteKey {
                kind: "get",
                major: i,
            };
            assert!(st.try_take(&k, now).is_ok());
        }
        assert!(st
            .try_take(
                &RouteKey {
                    kind: "get",
                    major: 99
                },
                now
            )
            .is_err());
    }

    #[test]
    fn requests_sent_after_a_reply_count_against_its_remaining() {
        let rl = RateLimiter::default();
        let now = Instant::now();
        // Four requests go out before any reply; the first reply says 4 of 5 are left, but
        // the three sent after it were counted by the server too: one is left, not four.
        let tickets: Vec<Ticket> = (0..4)
            .map(|_| rl.state().try_take(&KEY, now).unwrap())
            .collect();
        rl.observe(&KEY, tickets[0], &headers("4", "5"));
        let mut st = rl.state();
        assert!(st.try_take(&KEY, now).is_ok());
        assert!(st.try_take(&KEY, now).is_err());
    }

    /// A bot channel nothing is known of, and the five creates its folklore guess lets go.
    fn folklore_window(rl: &RateLimiter) -> (RouteKey, Vec<Ticket>) {
        let bot = RouteKey {
            kind: "create-message",
            major: 3,
        };
        let tickets = (0..5)
            .map(|_| rl.state().try_take(&bot, Instant::now()).unwrap())
            .collect();
        (bot, tickets)
    }

    #[test]
    fn the_first_reply_to_reach_dstore_may_be_of_a_request_the_server_counted_first() {
        // Five creates leave at once on the folklore guess; the fourth taken reached the
        // server first (4 of 5 left then). Counting only those taken after it would leave one
        // slot; all five are in the window.
        let rl = RateLimiter::default();
        let (bot, tickets) = folklore_window(&rl);
        rl.observe(&bot, tickets[3], &with_limit("4", "4.9", "5"));
        assert!(!rl.reserve(&bot));
        assert!(rl.ready_at(&bot) > Instant::now() + Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_reserved_in_a_window_that_ended_is_not_used_in_the_next() {
        let rl = RateLimiter::default();
        let t = Ticket {
            seq: 0,
            sent_at: Instant::now(),
        };
        rl.observe(&KEY, t, &with_limit("1", "1", "2"));
        assert!(rl.reserve(&KEY));
        // The request is slow to leave: the window ends and a fresh one opens meanwhile.
        tokio::time::advance(Duration::from_millis(1_500)).await;
        let before = rl.state().sent[&KEY];
        rl.acquire(&KEY).await.unwrap();
        assert_eq!(rl.state().sent[&KEY], before + 1, "a fresh slot was taken");
        assert!(rl.reserve(&KEY));
        assert!(!rl.reserve(&KEY), "the fresh window allows two");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_reserved_before_a_global_429_waits_out_the_429() {
        let rl = RateLimiter::default();
        assert!(rl.reserve(&KEY));
        // Another request's reply: a global 429 for 2 s, before this one leaves.
        rl.penalize(&KEY, Duration::from_secs(2), true);
        let start = Instant::now();
        rl.acquire(&KEY).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    fn with_limit(remaining: &str, reset_after: &str, limit: &'static str) -> HeaderMap {
        let mut h = headers(remaining, reset_after);
        h.insert("x-ratelimit-limit", HeaderValue::from_static(limit));
        h
    }

    #[test]
    fn a_new_window_allows_the_limit_then_waits_at_most_its_length() {
        let rl = RateLimiter::default();
        let ticket = Ticket {
            seq: 0,
            sent_at: Instant::now(),
        };
        rl.observe(&KEY, ticket, &with_limit("0", "1", "2"));
        let later = Instant::now() + Duration::from_secs(2);
        let mut st = rl.state();
        assert!(st.try_take(&KEY, later).is_ok());
        assert!(st.try_take(&KEY, later).is_ok());
        let wait = st.try_take(&KEY, later).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1),
            "not past the window: {wait:?}"
        );
    }

    /// The hang of a paced upload through an outage: the window ends, a new one is opened
    /// with `limit` slots, and each of `limit` requests fails without any headers (reset,
    /// timeout, refused). No reply ever tells the new window's end; the next request must
    /// still go out once the window's known length has passed.
    #[tokio::test(start_paused = true)]
    async fn header_less_failures_after_a_refill_never_wait_forever() {
        let rl = RateLimiter::default();
        let first = rl.acquire(&KEY).await.unwrap();
        rl.observe(&KEY, first, &with_limit("0", "5", "5"));
        tokio::time::sleep(Duration::from_secs(6)).await;
        for _ in 0..5 {
            // Sent; the connection is reset, so nothing is observed.
            rl.acquire(&KEY).await.unwrap();
        }
        let start = Instant::now();
        let next = tokio::time::timeout(Duration::from_secs(60), rl.acquire(&KEY)).await;
        assert!(next.is_ok(), "still waiting after a minute");
        assert!(
            start.elapsed() <= Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        // A reply from the new window is believed again.
        rl.observe(&KEY, next.unwrap().unwrap(), &with_limit("4", "5", "5"));
        assert!(rl.state().try_take(&KEY, Instant::now()).is_ok());
    }

    #[test]
    fn a_long_429_does_not_stretch_the_window() {
        let rl = RateLimiter::default();
        let now = Instant::now();
        let t = |seq| Ticket { seq, sent_at: now };
        rl.observe(&KEY, t(1), &with_limit("4", "5", "5"));
        rl.observe_limited(&KEY, t(2), &with_limit("0", "200", "5"));
        rl.penalize(&KEY, Duration::from_secs(200), false);
        let mut st = rl.state();
        let after = now + Duration::from_secs(201);
        for _ in 0..5 {
            st.try_take(&KEY, after).unwrap();
        }
        // Five requests that told nothing: the next window is guessed at 5 s, not 200.
        let wait = st.try_take(&KEY, after).unwrap_err();
        assert!(wait <= Duration::from_secs(5), "{wait:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_maximum_is_refused_not_waited() {
        let rl = RateLimiter::default();
        rl.penalize(&KEY, MAX_WAIT + Duration::from_secs(1), false);
        let start = Instant::now();
        let err = rl.acquire(&KEY).await.unwrap_err();
        assert!(matches!(
            err,
            StoreError::WaitTooLong {
                route: "create",
                ..
            }
        ));
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_penalty_over_a_second_is_reported_while_it_lasts() {
        let rl = std::sync::Arc::new(RateLimiter::default());
        rl.penalize(&KEY, Duration::from_secs(3), false);
        let waiter = tokio::spawn({
            let rl = rl.clone();
            async move { rl.acquire(&KEY).await.map(drop) }
        });
        tokio::task::yield_now().await;
        let shown = crate::store::rate_limit_wait().expect("the wait is reported");
        assert!(shown > Duration::from_secs(2), "{shown:?}");
        waiter.await.unwrap().unwrap();
    }

    /// Log lines written while the guard lives, as text.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_over_a_second_is_logged_with_its_route_and_length() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let rl = RateLimiter::default();
        let first = rl.acquire(&KEY).await.unwrap();
        rl.observe(&KEY, first, &headers("0", "3"));
        rl.acquire(&KEY).await.unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("route=\"create\"") && text.contains("waiting 3.0s"),
            "{text}"
        );
    }

    #[test]
    fn the_rate_of_lanes_adds_their_buckets_within_a_groups_hidden_cap() {
        let rl = RateLimiter::default();
        let hook = |id| RouteKey {
            kind: "webhook-execute",
            major: id,
        };
        let bot = |c| RouteKey {
            kind: "create-message",
            major: c,
        };
        // Folklore before any reply: 1 per second per channel, 2.5 per webhook.
        assert_eq!(rl.rate(&[bot(1), bot(2)]), Some(2.0));
        assert_eq!(rl.rate(&[hook(1)]), Some(2.5));
        // Two webhooks of one channel: 5 per second, but the channel's cap is 30 per 60 s.
        rl.join_group(hook(1), 9);
        rl.join_group(hook(2), 9);
        assert_eq!(rl.rate(&[hook(1), hook(2), bot(1)]), Some(1.5));
        // A learned bucket replaces the guess.
        let t = rl.state().try_take(&bot(1), Instant::now()).unwrap();
        rl.observe(&bot(1), t, &with_limit("19", "10", "20"));
        assert_eq!(rl.rate(&[bot(1)]), Some(2.0));
        let other = RouteKey {
            kind: "get-message",
            major: 1,
        };
        assert_eq!(rl.rate(&[other]), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_lane_is_paced_at_the_folklore_limit_until_a_reply_says_more() {
        let rl = RateLimiter::default();
        // Five creates may leave at once on a channel nothing is known of, not a sixth.
        let (bot, tickets) = folklore_window(&rl);
        assert!(!rl.reserve(&bot));
        assert!(rl.ready_at(&bot) > Instant::now() + Duration::from_secs(4));
        // The first reply says the window allows 50: the guess gives way.
        rl.observe(&bot, tickets[0], &with_limit("49", "1", "50"));
        assert!(rl.reserve(&bot));
        // The reserved slot is the next acquire's, at once.
        let before = rl.state().sent[&bot];
        rl.acquire(&bot).await.unwrap();
        assert_eq!(rl.state().sent[&bot], before);
    }

    #[test]
    fn a_reply_written_late_in_its_window_does_not_shorten_the_window() {
        let rl = RateLimiter::default();
        let hook = RouteKey {
            kind: "webhook-execute",
            major: 4,
        };
        let now = Instant::now();
        let t = rl.state().try_take(&hook, now).unwrap();
        // The body took 1.6 s: the reply says 0.4 s are left of the 2 s window.
        rl.observe(&hook, t, &with_limit("4", "0.4", "5"));
        let mut st = rl.state();
        let later = Instant::now() + Duration::from_millis(500);
        for _ in 0..5 {
            st.try_take(&hook, later).unwrap();
        }
        // The next window is guessed at the route's 2 s, not at 0.4 s.
        let wait = st.try_take(&hook, later).unwrap_err();
        assert!(wait >= Duration::from_millis(1900), "{wait:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_groups_hidden_cap_is_paced_from_the_start_and_learned_from_a_shared_429() {
        let rl = RateLimiter::default();
        let hook = |id| RouteKey {
            kind: "webhook-execute",
            major: id,
        };
        for id in 1..=8 {
            rl.join_group(hook(id), 5);
        }
        // Eight webhooks have 40 slots between them; the channel's cap takes 30.
        let mut sent = 0;
        for id in 1..=8 {
            while rl.reserve(&hook(id)) {
                sent += 1;
            }
        }
        assert_eq!(sent, 30);
        assert!(rl.ready_at(&hook(1)) >= Instant::now() + Duration::from_secs(59));
        // A new window; this time Discord refuses the 11th: the cap is 10 from then on.
        tokio::time::advance(Duration::from_secs(61)).await;
        for n in 0..11 {
            assert!(rl.reserve(&hook(1 + n % 2)), "{n}");
            if n % 4 == 3 {
                tokio::time::advance(Duration::from_secs(2)).await;
            }
        }
        rl.penalize_shared(&hook(2), Duration::from_secs(45));
        tokio::time::advance(Duration::from_secs(46)).await;
        let mut again = 0;
        for id in 1..=8 {
            while rl.reserve(&hook(id)) {
                again += 1;
            }
        }
        assert_eq!(again, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_429_holds_back_every_route_of_its_group_and_no_other() {
        let rl = RateLimiter::default();
        let hook = |id| RouteKey {
            kind: "webhook-execute",
            major: id,
        };
        rl.join_group(hook(1), 77);
        rl.join_group(hook(2), 77);
        rl.join_group(hook(3), 88);
        let now = Instant::now();
        rl.penalize_shared(&hook(1), Duration::from_secs(40));
        assert_eq!(
            rl.ready_at(&hook(2)),
            now + Duration::from_secs(40),
            "same channel"
        );
        assert_eq!(rl.ready_at(&hook(3)), now, "another channel");
        assert_eq!(rl.ready_at(&KEY), now, "bot routes");
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(rl.ready_at(&hook(2)), Instant::now());
        rl.acquire(&hook(2)).await.unwrap();
    }
}
