//! Which lane takes the next pack (docs/lanes.md 3): the one whose rate-limit state lets it send
//! soonest, ties broken by fewest packs in flight, then by the one picked longest ago. A lane
//! that failed backs off on its own; a dead one is never chosen again.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::Lane;

/// The first pause of a lane after a failure; each failure in a row doubles it, up to [`MAX_REST`].
const FIRST_REST: Duration = Duration::from_secs(2);
const MAX_REST: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, Copy)]
struct Seat {
    in_flight: usize,
    /// Not before this instant, after failures.
    resting_until: Option<Instant>,
    failures_in_a_row: u32,
    dead: bool,
    /// When it was last picked (a count of picks; 0 for never).
    picked: u64,
}

/// What [`Scheduler::pick_now`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// This lane takes the pack now; its slot is taken.
    Now(Lane),
    /// No lane can send before this instant.
    Later(Instant),
    /// Every lane is dead.
    None,
}

/// Bytes of pack buffers an upload holds at most when spreading over lanes, the packs in flight
/// and the one being filled: the memory budget, whatever the number of lanes (six of Discord's
/// 10 MiB packs, so an upload's peak stays under 128 MiB; README, "Memory and packs in flight").
pub const PACK_MEMORY: u64 = 64 * 1024 * 1024;

/// How many packs of `pack_size` bytes may be in flight at once within [`PACK_MEMORY`], beside
/// the one being filled; at least one.
pub fn in_flight_budget(pack_size: u64) -> usize {
    (PACK_MEMORY / pack_size.max(1))
        .saturating_sub(1)
        .clamp(1, crate::config::MAX_CONCURRENCY as u64) as usize
}

/// The live lanes of one upload and how busy each is.
#[derive(Debug)]
pub struct Scheduler {
    order: Vec<Lane>,
    seats: HashMap<Lane, Seat>,
    picks: u64,
}

impl Scheduler {
    pub fn new(lanes: Vec<Lane>) -> Self {
        let seats = lanes.iter().map(|l| (*l, Seat::default())).collect();
        Self {
            order: lanes,
            seats,
            picks: 0,
        }
    }

    /// The lanes still alive, in configuration order.
    pub fn live_lanes(&self) -> Vec<Lane> {
        self.order
            .iter()
            .copied()
            .filter(|l| self.seats.get(l).is_some_and(|s| !s.dead))
            .collect()
    }

    /// Lanes still alive.
    pub fn live(&self) -> usize {
        self.seats.values().filter(|s| !s.dead).count()
    }

    /// The lane that can take a pack soonest, given when each lane's rate limit lets it send
    /// (`ready`), and the instant it can; `None` when every lane is dead. Marks it in flight.
    pub fn pick(&mut self, ready: impl Fn(Lane) -> Instant) -> Option<(Lane, Instant)> {
        let offers = self.offers(&ready);
        let (lane, at) = offers
            .into_iter()
            .min()
            .map(|(at, _, _, _, lane)| (lane, at))?;
        self.picks += 1;
        if let Some(seat) = self.seats.get_mut(&lane) {
            seat.in_flight += 1;
            seat.picked = self.picks;
        }
        Some((lane, at))
    }

    /// Every live lane as (when it can send, never before now; packs in flight; when last
    /// picked; its place in the order; the lane): the order of preference, smallest first.
    fn offers(&self, ready: impl Fn(Lane) -> Instant) -> Vec<(Instant, usize, u64, usize, Lane)> {
        let mut offers: Vec<(Instant, usize, u64, usize, Lane)> = self
            .order
            .iter()
            .enumerate()
            .filter_map(|(i, lane)| {
                let seat = self.seats.get(lane).filter(|s| !s.dead)?;
                let mut at = ready(*lane);
                if let Some(rest) = seat.resting_until {
                    at = at.max(rest);
                }
                Some((at, seat.in_flight, seat.picked, i, *lane))
            })
            .collect();
        // Every lane that can send now is as soon as any other: "now" is read once, after.
        let now = Instant::now();
        for offer in &mut offers {
            offer.0 = offer.0.max(now);
        }
        offers
    }

    /// The lane that can take a pack now, in the order [`Scheduler::pick`] prefers them, whose
    /// slot `reserve` could take (so no two packs are handed the same slot); marks it in flight.
    /// Else when the soonest lane could take one ([`Pick::Later`]), or [`Pick::None`] when every
    /// lane is dead. A pack is only ever handed to a lane that can send it at once: one held
    /// for a lane's next window could have left sooner on another.
    pub fn pick_now(
        &mut self,
        ready: impl Fn(Lane) -> Instant,
        mut reserve: impl FnMut(Lane) -> bool,
    ) -> Pick {
        let mut offers = self.offers(&ready);
        // Read after the offers were clamped to theirs: a lane ready then is ready now.
        let now = Instant::now();
        offers.sort();
        let Some(soonest) = offers.first().map(|o| o.0) else {
            return Pick::None;
        };
        for (at, _, _, _, lane) in offers {
            if at > now {
                break;
            }
            if reserve(lane) {
                self.picks += 1;
                if let Some(seat) = self.seats.get_mut(&lane) {
                    seat.in_flight += 1;
                    seat.picked = self.picks;
                }
                return Pick::Now(lane);
            }
        }
        // Ready by the forecast but the slot was gone: look again very soon.
        Pick::Later(soonest.max(now + Duration::from_millis(5)))
    }

    /// A pack on `lane` is posted.
    pub fn done(&mut self, lane: Lane) {
        if let Some(seat) = self.seats.get_mut(&lane) {
            seat.in_flight = seat.in_flight.saturating_sub(1);
            seat.failures_in_a_row = 0;
            seat.resting_until = None;
        }
    }

    /// A pack on `lane` failed in a way another try may not: the lane rests alone, longer
    /// after each failure in a row.
    pub fn failed(&mut self, lane: Lane) {
        if let Some(seat) = self.seats.get_mut(&lane) {
            seat.in_flight = seat.in_flight.saturating_sub(1);
            seat.failures_in_a_row += 1;
            let rest = FIRST_REST
                .saturating_mul(1 << seat.failures_in_a_row.saturating_sub(1).min(8))
                .min(MAX_REST);
            seat.resting_until = Some(Instant::now() + rest);
        }
    }

    /// `lane` cannot be used again (an unknown webhook, a wrong token).
    pub fn dead(&mut self, lane: Lane) {
        if let Some(seat) = self.seats.get_mut(&lane) {
            seat.in_flight = seat.in_flight.saturating_sub(1);
            seat.dead = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Lane = Lane::Channel(1);
    const B: Lane = Lane::Webhook(2);
    const C: Lane = Lane::Webhook(3);

    #[tokio::test(start_paused = true)]
    async fn the_soonest_lane_wins_then_the_least_busy() {
        let now = Instant::now();
        let mut s = Scheduler::new(vec![A, B, C]);
        // B is limited for a second: A, then C (A busy), then A and C again before B.
        let ready = |l: Lane| {
            if l == B {
                now + Duration::from_secs(1)
            } else {
                now
            }
        };
        assert_eq!(s.pick(ready).unwrap().0, A);
        assert_eq!(s.pick(ready).unwrap().0, C);
        assert_eq!(s.pick(ready).unwrap().0, A);
        assert_eq!(s.pick(ready).unwrap().0, C);
        let (lane, at) = s.pick(|_| now).unwrap();
        assert_eq!((lane, at), (B, now), "fewest in flight once all are ready");
        // Everything is busy and B's limit is later: the pick says when B could send.
        let (lane, at) = s.pick(ready).unwrap();
        assert_eq!(lane, A);
        assert_eq!(at, now);
    }

    #[test]
    fn lanes_ready_now_tie_though_each_was_asked_a_moment_apart() {
        let mut s = Scheduler::new(vec![A, B, C]);
        let mut got = Vec::new();
        for _ in 0..3 {
            // Each call reads the clock anew, as the limiter does.
            got.push(s.pick(|_| Instant::now()).unwrap().0);
        }
        assert_eq!(got, vec![A, B, C]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_lane_per_pack_in_turn_when_nothing_limits_them() {
        let mut s = Scheduler::new(vec![A, B, C]);
        let mut got = Vec::new();
        for _ in 0..6 {
            let (lane, _) = s.pick(|_| Instant::now()).unwrap();
            got.push(lane);
            s.done(lane);
        }
        // All ready and idle: ties go to the lane picked longest ago.
        assert_eq!(got, vec![A, B, C, A, B, C]);
        let mut busy = Vec::new();
        for _ in 0..3 {
            busy.push(s.pick(|_| Instant::now()).unwrap().0);
        }
        assert_eq!(busy, vec![A, B, C]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pack_goes_only_to_a_lane_that_can_send_now_and_takes_its_slot() {
        let now = Instant::now();
        let mut s = Scheduler::new(vec![A, B]);
        // A has one slot left, B none until a second from now.
        let mut slots = std::collections::HashMap::from([(A, 1), (B, 0)]);
        let ready = |l: Lane| {
            if l == B {
                now + Duration::from_secs(1)
            } else {
                now
            }
        };
        let mut reserve = |l: Lane| {
            let n = slots.get_mut(&l).unwrap();
            *n > 0 && {
                *n -= 1;
                true
            }
        };
        assert_eq!(s.pick_now(ready, &mut reserve), Pick::Now(A));
        // A is ready by the forecast but its slot is gone; B is a second away: nothing now.
        match s.pick_now(ready, &mut reserve) {
            Pick::Later(at) => assert!(at > now && at <= now + Duration::from_millis(5)),
            p => panic!("{p:?}"),
        }
        let later = |l: Lane| {
            if l == A {
                now + Duration::from_secs(5)
            } else {
                now + Duration::from_secs(1)
            }
        };
        assert_eq!(
            s.pick_now(later, &mut reserve),
            Pick::Later(now + Duration::from_secs(1)),
            "the soonest lane's instant"
        );
        s.dead(A);
        s.dead(B);
        assert_eq!(s.pick_now(later, &mut reserve), Pick::None);
    }

    #[test]
    fn the_memory_budget_bounds_packs_in_flight() {
        // Discord's 10 MiB attachments make packs 64 KiB short of 10 MiB: five fly, one fills.
        assert_eq!(in_flight_budget(10 * 1024 * 1024 - 64 * 1024), 5);
        assert_eq!(in_flight_budget(10 * 1024 * 1024), 5);
        assert_eq!(in_flight_budget(100 * 1024 * 1024), 1);
        assert_eq!(in_flight_budget(1024), crate::config::MAX_CONCURRENCY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_lane_rests_alone_and_a_dead_one_is_never_picked() {
        let mut s = Scheduler::new(vec![A, B]);
        let (first, _) = s.pick(|_| Instant::now()).unwrap();
        assert_eq!(first, A);
        s.failed(A);
        assert_eq!(s.pick(|_| Instant::now()).unwrap().0, B);
        s.done(B);
        assert_eq!(s.pick(|_| Instant::now()).unwrap().0, B, "A is resting");
        s.done(B);
        tokio::time::sleep(FIRST_REST).await;
        assert_eq!(s.pick(|_| Instant::now()).unwrap().0, A, "rested");
        s.dead(A);
        s.dead(B);
        assert_eq!(s.live(), 0);
        assert!(s.pick(|_| Instant::now()).is_none());
    }
}
