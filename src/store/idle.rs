//! An idle timeout instead of a total one: a request fails when no byte has moved for a while,
//! however long it takes as a whole, so a 100 MB part on a slow uplink can finish while a dead
//! connection is still noticed. reqwest's own `read_timeout` cannot do this: until the reply's
//! headers come it runs from the start of the request, not from the last byte sent.
//!
//! Progress is seen when the connection takes a slice of the body, so the last few MB (what
//! the kernel's socket buffers hold, about 4 MB on Linux) drain unseen: the idle timeout
//! (`request_timeout`, 120 s by default) covers that down to some 35 KB/s.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use tokio::time::Instant;

/// Request bodies are handed to the connection in slices this big, so progress is seen while
/// a large part is sent and not only once it is all in the socket.
const SLICE: usize = 64 * 1024;

/// When a request last made progress.
#[derive(Clone, Debug)]
pub struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Runs `fut` until it ends, or until nothing has moved for `idle` (then `None`).
    pub async fn guard<F: Future>(&self, idle: Duration, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            let deadline = self.last() + idle;
            tokio::select! {
                out = &mut fut => return Some(out),
                _ = tokio::time::sleep_until(deadline) => {
                    if self.last() + idle <= Instant::now() {
                        return None;
                    }
                }
            }
        }
    }

    /// `body`, handed over in slices, each one noted as progress when the connection takes it.
    pub fn track(&self, body: reqwest::Body) -> reqwest::Body {
        let activity = self.clone();
        let slices = body
            .into_data_stream()
            .map_ok(|chunk| {
                futures::stream::iter(slices(chunk).into_iter().map(Ok::<Bytes, reqwest::Error>))
            })
            .try_flatten()
            .inspect_ok(move |_| activity.touch());
        reqwest::Body::wrap_stream(slices)
    }
}

fn slices(mut chunk: Bytes) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(chunk.len() / SLICE + 1);
    while chunk.len() > SLICE {
        out.push(chunk.split_to(SLICE));
    }
    out.push(chunk);
    out
}

/// Each item of `stream`, or `on_idle()` once when none comes for `idle`.
pub fn per_item<T, E>(
    stream: impl Stream<Item = Result<T, E>> + Send + Unpin + 'static,
    idle: Duration,
    on_idle: impl Fn() -> E + Clone + Send + 'static,
) -> impl Stream<Item = Result<T, E>> + Send + 'static
where
    T: Send + 'static,
    E: Send + 'static,
{
    futures::stream::unfold(Some(stream), move |s| {
        let on_idle = on_idle.clone();
        async move {
            let mut s = s?;
            match tokio::time::timeout(idle, s.next()).await {
                Ok(Some(item)) => Some((item, Some(s))),
                Ok(None) => None,
                Err(_) => Some((Err(on_idle()), None)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_chunk_in_order() {
        let data: Vec<u8> = (0..(SLICE * 2 + 5)).map(|i| i as u8).collect();
        let parts = slices(Bytes::from(data.clone()));
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), data);
    }

    #[tokio::test(start_paused = true)]
    async fn guard_waits_while_there_is_progress_and_stops_when_there_is_none() {
        let a = Activity::new();
        let toucher = a.clone();
        let busy = async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                toucher.touch();
            }
            "done"
        };
        // Five seconds in all, never a second without progress.
        assert_eq!(a.guard(Duration::from_secs(1), busy).await, Some("done"));
        let dead = std::future::pending::<()>();
        let start = Instant::now();
        assert_eq!(a.guard(Duration::from_secs(1), dead).await, None);
        assert!(start.elapsed() <= Duration::from_secs(1));
    }
}
