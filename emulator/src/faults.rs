//! Scripted fault injection: a queue of faults, each matched against requests by route kind.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One scripted fault: let `skip` matching requests through, then apply `action` to the next `times`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub route: FaultRoute,
    pub skip: u32,
    pub times: u32,
    pub action: FaultAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultRoute {
    CreateMessage,
    GetMessage,
    ListMessages,
    DeleteMessage,
    BulkDelete,
    GetChannel,
    Cdn,
    /// `POST /webhooks/{id}/{token}` (the other token routes only match `Any`).
    ExecuteWebhook,
    /// `POST /webhooks/{id}/{token}` of this webhook only.
    ExecuteWebhookOf(u64),
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// This status with a non-JSON HTML body, as Cloudflare and Discord's edge send for 5xx.
    Status(u16),
    /// A 429 shaped like a real one (body, `Retry-After`, `X-RateLimit-Scope`, maybe `-Global`).
    RateLimit { retry_after: f64, global: bool },
    /// Drop the connection without a response; nothing is stored.
    Reset,
    /// Sleep, then handle the request normally.
    Stall(Duration),
    /// Handle the request (a create is stored), then drop the connection without replying.
    ResetAfterCommit,
    /// Handle the request (a create is stored), then sleep before replying.
    StallAfterCommit(Duration),
    /// CDN only: serve the bytes with some of them flipped (same length).
    CorruptBytes,
    /// CDN only: announce the full length, send the first half, then drop the connection.
    CutOff,
    /// CDN only: ignore a `Range` header and answer 200 with the whole attachment, as an HTTP
    /// server may (RFC 9110 §14.2); discord-api.md §2 leaves Range support uncertain.
    IgnoreRange,
    /// A network outage in time: from the first request it applies to, every matching request
    /// has its connection dropped (nothing stored) until this long has passed; `times` is
    /// not used. Requests after it go through.
    Outage(Duration),
    /// A slow link: the request's body is read, and the reply's body sent, at this many bytes
    /// per second, steadily (in slices of at most 100 ms each).
    Trickle(u64),
}

/// The fault queue. A request is matched against the first unfinished fault whose route fits,
/// so two faults on one route apply one after the other.
#[derive(Debug, Default)]
pub struct Faults {
    queue: Mutex<Vec<Slot>>,
}

#[derive(Debug)]
struct Slot {
    fault: Fault,
    seen: u32,
    /// When an outage began.
    began: Option<Instant>,
}

impl Faults {
    pub fn push(&self, f: Fault) {
        if f.times > 0 {
            self.lock().push(Slot {
                fault: f,
                seen: 0,
                began: None,
            });
        }
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Faults not yet used up.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Consumes one matching request and says which action, if any, applies to it.
    pub(crate) fn take(&self, route: FaultRoute) -> Option<FaultAction> {
        let mut queue = self.lock();
        let i = queue.iter().position(|s| fits(s.fault.route, route))?;
        let slot = &mut queue[i];
        slot.seen += 1;
        if slot.seen <= slot.fault.skip {
            return None;
        }
        if let FaultAction::Outage(length) = slot.fault.action {
            let began = *slot.began.get_or_insert_with(Instant::now);
            if began.elapsed() < length {
                return Some(FaultAction::Reset);
            }
            queue.remove(i);
            drop(queue);
            return self.take(route);
        }
        let action = slot.fault.action.clone();
        if slot.seen >= slot.fault.skip + slot.fault.times {
            queue.remove(i);
        }
        Some(action)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a fault on `fault` applies to a request on `request`.
fn fits(fault: FaultRoute, request: FaultRoute) -> bool {
    match (fault, request) {
        (FaultRoute::Any, _) => true,
        (FaultRoute::ExecuteWebhook, FaultRoute::ExecuteWebhookOf(_)) => true,
        (f, r) => f == r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_then_times_then_next_fault() {
        let f = Faults::default();
        f.push(Fault {
            route: FaultRoute::CreateMessage,
            skip: 1,
            times: 2,
            action: FaultAction::Reset,
        });
        f.push(Fault {
            route: FaultRoute::CreateMessage,
            skip: 0,
            times: 1,
            action: FaultAction::Status(502),
        });
        assert_eq!(f.take(FaultRoute::Cdn), None);
        assert_eq!(f.take(FaultRoute::CreateMessage), None);
        assert_eq!(f.take(FaultRoute::CreateMessage), Some(FaultAction::Reset));
        assert_eq!(f.take(FaultRoute::CreateMessage), Some(FaultAction::Reset));
        assert_eq!(f.pending(), 1);
        assert_eq!(
            f.take(FaultRoute::CreateMessage),
            Some(FaultAction::Status(502))
        );
        assert_eq!(f.take(FaultRoute::CreateMessage), None);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn a_webhook_fault_applies_to_that_webhook_and_a_general_one_to_all() {
        let f = Faults::default();
        f.push(Fault {
            route: FaultRoute::ExecuteWebhookOf(7),
            skip: 0,
            times: 1,
            action: FaultAction::Status(500),
        });
        assert_eq!(f.take(FaultRoute::ExecuteWebhookOf(8)), None);
        assert_eq!(
            f.take(FaultRoute::ExecuteWebhookOf(7)),
            Some(FaultAction::Status(500))
        );
        f.push(Fault {
            route: FaultRoute::ExecuteWebhook,
            skip: 0,
            times: 1,
            action: FaultAction::Reset,
        });
        assert_eq!(
            f.take(FaultRoute::ExecuteWebhookOf(8)),
            Some(FaultAction::Reset)
        );
    }

    #[test]
    fn an_outage_drops_every_request_until_its_time_is_up() {
        let f = Faults::default();
        f.push(Fault {
            route: FaultRoute::Any,
            skip: 1,
            times: 1,
            action: FaultAction::Outage(Duration::from_millis(200)),
        });
        assert_eq!(f.take(FaultRoute::CreateMessage), None);
        for _ in 0..5 {
            assert_eq!(f.take(FaultRoute::Cdn), Some(FaultAction::Reset));
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(f.take(FaultRoute::CreateMessage), None);
        assert_eq!(f.pending(), 0);
    }
}
