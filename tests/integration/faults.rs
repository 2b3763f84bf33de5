//! Discord misbehaving: 429 storms, 5xx, dropped connections, stalls past the timeout, lost
//! replies (no duplicate part), and the errors that must stop at once (401, 403, 404).

use std::time::{Duration, Instant};

use dstore_emulator::{Access, FaultAction, FaultRoute, RateLimits};

use crate::common::{round_trip, upload, Env, PART};

#[tokio::test]
async fn rate_limit_storm_is_waited_out() {
    let env = Env::new().await;
    let s = env.session();
    env.fault(
        FaultRoute::CreateMessage,
        1,
        6,
        FaultAction::RateLimit {
            retry_after: 0.2,
            global: false,
        },
    );
    env.fault(
        FaultRoute::CreateMessage,
        0,
        2,
        FaultAction::RateLimit {
            retry_after: 0.3,
            global: true,
        },
    );
    let start = Instant::now();
    let m = round_trip(&env, &s, 6 * PART as usize).await;
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "retry_after was honoured"
    );
    assert_eq!(env.emu.stats().status(429), 8);
    assert_eq!(env.attachments_of(&m.id).len(), 6);
}

#[tokio::test]
async fn real_buckets_pace_the_upload_without_429s() {
    let env = Env::with(|c| {
        c.rate_limits = Some(RateLimits {
            create_message: (3, Duration::from_millis(600)),
            ..RateLimits::default()
        })
    })
    .await;
    let s = env.session();
    // Replies come well after the server counted the request, as they do for large parts.
    env.fault(
        FaultRoute::CreateMessage,
        0,
        1000,
        FaultAction::StallAfterCommit(Duration::from_millis(150)),
    );
    round_trip(&env, &s, 30 * PART as usize).await;
    // Only the first burst, sent before any headers were known, can meet a 429; after that the
    // headers (counting requests still in flight) keep every window under the limit.
    assert!(env.emu.stats().status(429) <= 1, "{:?}", env.emu.stats());
}

#[tokio::test]
async fn server_errors_and_resets_are_retried_without_duplicates() {
    let env = Env::new().await;
    let s = env.session();
    env.fault(FaultRoute::CreateMessage, 0, 2, FaultAction::Status(502));
    env.fault(FaultRoute::CreateMessage, 1, 1, FaultAction::Status(500));
    env.fault(FaultRoute::CreateMessage, 0, 2, FaultAction::Reset);
    let m = round_trip(&env, &s, 5 * PART as usize).await;
    assert_eq!(env.attachments_of(&m.id).len(), 5);
    assert_eq!(env.emu.faults().pending(), 0);
}

#[tokio::test]
async fn lost_reply_after_commit_does_not_duplicate_the_part() {
    let env = Env::new().await;
    let s = env.session();
    env.fault(
        FaultRoute::CreateMessage,
        1,
        2,
        FaultAction::ResetAfterCommit,
    );
    let m = round_trip(&env, &s, 4 * PART as usize).await;
    // The retry carried the same nonce with enforce_nonce, so Discord returned the first message.
    assert_eq!(env.attachments_of(&m.id).len(), 4);
}

#[tokio::test]
async fn stall_past_the_timeout_is_retried() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.request_timeout = Duration::from_secs(1));
    env.fault(
        FaultRoute::CreateMessage,
        0,
        1,
        FaultAction::Stall(Duration::from_secs(3)),
    );
    let m = round_trip(&env, &s, 2 * PART as usize).await;
    assert_eq!(env.attachments_of(&m.id).len(), 2);
}

#[tokio::test]
async fn spent_retry_budget_fails_naming_resume_then_resume_finishes() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.retries = 2;
        c.set_concurrency(1);
    });
    env.fault(FaultRoute::CreateMessage, 2, 3, FaultAction::Status(503));
    let path = env.file("budget.bin", 5 * PART as usize);
    let err = upload(&s, &path).await.unwrap_err().to_string();
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    let id = s.catalog.all().unwrap()[0].as_ref().unwrap().id.clone();
    assert!(err.contains(&format!("run `resume {id}`")), "{err}");
    assert!(err.contains("2/5 parts"), "{err}");
    let m = crate::common::resume(&s, &id).await.unwrap();
    assert_eq!(env.stored_bytes(&s, &m.id), std::fs::read(&path).unwrap());
    assert_eq!(env.attachments_of(&id).len(), 5);
}

#[tokio::test]
async fn bad_token_stops_at_once() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.token = dstore::config::Secret::new("not-the-token"));
    let path = env.file("t.bin", 10);
    let err = upload(&s, &path).await.unwrap_err().to_string();
    assert!(err.contains("401") && err.contains("token"), "{err}");
    assert!(!err.contains("not-the-token"));
    assert_eq!(env.emu.stats().status(401), 1, "no retry loop on 401");
}

#[tokio::test]
async fn unknown_channel_and_missing_access_stop_at_once() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.channels = vec![4242424242424242]);
    let path = env.file("t.bin", 10);
    let err = upload(&s, &path).await.unwrap_err().to_string();
    assert!(
        err.contains("4242424242424242") && err.contains("Unknown Channel"),
        "{err}"
    );
    assert_eq!(env.emu.stats().status(404), 1);

    env.emu
        .set_channel_access(env.emu.channel_id(), Access::NoPermission);
    let s = env.session();
    let err = upload(&s, &path).await.unwrap_err().to_string();
    assert!(err.contains("Attach Files"), "{err}");
    assert_eq!(env.emu.stats().status(403), 1);
}
