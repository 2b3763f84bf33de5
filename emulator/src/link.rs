//! Paced bodies: token buckets that hold request and response bodies to a byte rate (the link
//! caps of `EmulatorConfig` and the `Trickle` fault).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;

/// A token bucket of `rate` bytes per second with no burst: bytes are let through as if sent
/// back to back at that rate. One pacer may be shared by many bodies (a shared link).
#[derive(Debug)]
pub struct Pacer {
    rate: u64,
    origin: Instant,
    /// When, in seconds after `origin`, the bytes let through so far will have been sent.
    busy_until: Mutex<f64>,
    totals: Arc<Totals>,
}

/// What one or several pacers have let through.
#[derive(Debug, Default)]
pub struct Totals {
    bytes: AtomicU64,
    /// The sum of the waits before each slice.
    held_ns: AtomicU64,
}

impl Totals {
    /// Body bytes let through, and the time they were held back (summed over slices).
    pub fn snapshot(&self) -> (u64, Duration) {
        (
            self.bytes.load(Ordering::Relaxed),
            Duration::from_nanos(self.held_ns.load(Ordering::Relaxed)),
        )
    }
}

impl Pacer {
    /// `rate` is at least 1 byte per second.
    pub fn new(rate: u64) -> Arc<Pacer> {
        Pacer::counted(rate, Arc::default())
    }

    /// A pacer that adds what it lets through to `totals` (shared by all connections' pacers).
    pub fn counted(rate: u64, totals: Arc<Totals>) -> Arc<Pacer> {
        Arc::new(Pacer {
            rate: rate.max(1),
            origin: Instant::now(),
            busy_until: Mutex::new(0.0),
            totals,
        })
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Books `n` bytes at `now` and says how long to wait before sending them.
    fn reserve_at(&self, n: usize, now: Instant) -> Duration {
        let now = now.duration_since(self.origin).as_secs_f64();
        let mut busy = self.busy_until.lock().unwrap_or_else(|e| e.into_inner());
        let done = busy.max(now) + n as f64 / self.rate as f64;
        *busy = done;
        let wait = Duration::from_secs_f64(done - now);
        self.totals.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.totals
            .held_ns
            .fetch_add(wait.as_nanos() as u64, Ordering::Relaxed);
        wait
    }

    /// The largest slice worth booking at once: a tenth of a second, so pacing stays steady.
    fn slice(&self) -> usize {
        (self.rate / 10).clamp(1, 1 << 20) as usize
    }
}

/// `body` let through every pacer in `pacers`: each slice waits for the slowest of them.
pub fn paced(body: Body, pacers: Vec<Arc<Pacer>>) -> Body {
    use futures_util::StreamExt;
    if pacers.is_empty() {
        return body;
    }
    let slice = pacers.iter().map(|p| p.slice()).min().unwrap_or(1);
    let slices = body.into_data_stream().flat_map(move |chunk| {
        let pieces: Vec<Result<Bytes, axum::Error>> = match chunk {
            Ok(mut c) => {
                let mut out = Vec::new();
                while !c.is_empty() {
                    out.push(Ok(c.split_to(slice.min(c.len()))));
                }
                out
            }
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(pieces)
    });
    let paced = slices.then(move |piece| {
        let pacers = pacers.clone();
        async move {
            let len = piece.as_ref().map_or(0, |p| p.len());
            let now = Instant::now();
            let wait = pacers
                .iter()
                .map(|p| p.reserve_at(len, now))
                .max()
                .unwrap_or_default();
            tokio::time::sleep(wait).await;
            piece
        }
    });
    Body::from_stream(paced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about_ms(d: Duration, ms: u64) {
        let got = d.as_secs_f64() * 1000.0;
        assert!((got - ms as f64).abs() < 0.01, "{got} ms, expected {ms}");
    }

    #[test]
    fn bytes_are_booked_back_to_back_at_the_rate() {
        let p = Pacer::new(1000);
        let t0 = p.origin;
        about_ms(p.reserve_at(100, t0), 100);
        // Booked right after: queued behind the first 100 bytes.
        about_ms(p.reserve_at(100, t0), 200);
        // Long idle: no credit is saved up (no burst), one slice costs its own time only.
        let later = t0 + Duration::from_secs(10);
        about_ms(p.reserve_at(50, later), 50);
        let (bytes, held) = p.totals().snapshot();
        assert_eq!(bytes, 250);
        about_ms(held, 350);
    }

    #[test]
    fn slices_are_a_tenth_of_a_second() {
        assert_eq!(Pacer::new(5000).slice(), 500);
        assert_eq!(Pacer::new(3).slice(), 1);
    }
}
