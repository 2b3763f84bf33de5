//! The network at its worst: an outage in the middle of a paced upload, a rate-limit wait too
//! long to sit through, slow links against the idle timeout, a host nothing listens on, and a
//! retry so late that Discord has forgotten its nonce.

use std::time::{Duration, Instant};

use dstore::config::PartSize;
use dstore::store::{BotStore, PartStore, PutPart};
use dstore_emulator::{FaultAction, FaultRoute, RateLimits};

use crate::common::{round_trip, upload, Env, PART};

/// The retry settings a user gets (config.rs defaults), not the shortened test ones.
fn normal_retries(c: &mut dstore::config::Config) {
    c.retries = 8;
    c.retry_base = Duration::from_millis(250);
}

#[tokio::test]
async fn a_paced_upload_rides_out_a_network_outage() {
    let env = Env::with(|c| {
        c.rate_limits = Some(RateLimits {
            create_message: (3, Duration::from_millis(800)),
            ..RateLimits::default()
        })
    })
    .await;
    let s = env.session_with(normal_retries);
    // A few parts go through, then every request is dropped for four seconds.
    env.fault(
        FaultRoute::Any,
        6,
        1,
        FaultAction::Outage(Duration::from_secs(4)),
    );
    let start = Instant::now();
    let m = tokio::time::timeout(
        Duration::from_secs(90),
        round_trip(&env, &s, 12 * PART as usize),
    )
    .await
    .expect("the upload finishes by itself once the network is back");
    assert!(start.elapsed() >= Duration::from_secs(4));
    // The outage cut requests off, and they were tried again through it.
    assert!(
        env.emu.stats().connections_reset >= 2,
        "{:?}",
        env.emu.stats()
    );
    assert_eq!(env.attachments_of(&m.id).len(), 12);
}

#[tokio::test]
async fn a_rate_limit_too_long_to_wait_ends_the_upload_naming_resume() {
    let env = Env::new().await;
    let s = env.strict_session();
    env.fault(
        FaultRoute::CreateMessage,
        1,
        1,
        FaultAction::RateLimit {
            retry_after: 400.0,
            global: false,
        },
    );
    let path = env.file("long.bin", 3 * PART as usize);
    let start = Instant::now();
    let err = upload(&s, &path).await.unwrap_err().to_string();
    assert!(start.elapsed() < Duration::from_secs(5), "it did not wait");
    let id = s.catalog.all().unwrap()[0].as_ref().unwrap().id.clone();
    assert_eq!(
        err,
        format!(
            "upload of {id} stopped after 1/3 parts: Discord's rate limit on create-message asks \
             for a wait of 6 min 40 s, longer than the 5 min dstore waits; try again later; \
             run `resume {id}` to continue"
        )
    );
}

/// The slow-link tests: a 48 MB part (a tier-2 server allows 50) at 6 MB/s takes eight
/// seconds, more than the five-second [`IDLE`] timeout, yet bytes move all the time. The
/// kernels' socket buffers (some 6 MB on loopback) take the last second or so of it at once,
/// so the idle timeout must be well over that.
const BIG: u64 = 48 * 1000 * 1000;
const SLOW: u64 = 6 * 1000 * 1000;
const IDLE: Duration = Duration::from_secs(5);

/// An emulator whose server takes [`BIG`] parts, and a session that sends them.
async fn slow_link_env() -> (Env, dstore::commands::Session) {
    let env = Env::new().await;
    env.emu.set_premium_tier(env.emu.guild_id(), 2);
    let s = env.session_with(|c| {
        c.part_size = PartSize::Fixed(BIG);
        c.request_timeout = IDLE;
        c.retries = 1;
    });
    (env, s)
}

#[tokio::test]
async fn a_slow_but_steady_upload_outlasts_the_idle_timeout() {
    let (env, s) = slow_link_env().await;
    env.fault(
        FaultRoute::CreateMessage,
        0,
        100,
        FaultAction::Trickle(SLOW),
    );
    let start = Instant::now();
    let m = round_trip(&env, &s, BIG as usize).await;
    assert!(start.elapsed() >= IDLE, "the link was slow");
    assert_eq!(env.attachments_of(&m.id).len(), 1);
    assert_eq!(env.emu.stats().connections_reset, 0);
}

#[tokio::test]
async fn a_slow_but_steady_download_outlasts_the_idle_timeout() {
    let (env, s) = slow_link_env().await;
    let m = round_trip(&env, &s, BIG as usize).await;
    env.fault(FaultRoute::Cdn, 0, 100, FaultAction::Trickle(SLOW));
    let out = env.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let start = Instant::now();
    let got = crate::download::get(&s, &m.id, &out, false).await.unwrap();
    assert!(start.elapsed() >= IDLE, "the link was slow");
    assert_eq!(
        std::fs::read(got).unwrap(),
        std::fs::read(env.dir.path().join(format!("f{BIG}.bin"))).unwrap()
    );
}

#[tokio::test]
async fn a_dead_stall_still_times_out() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.request_timeout = Duration::from_secs(1));
    env.fault(
        FaultRoute::CreateMessage,
        0,
        1,
        FaultAction::Stall(Duration::from_secs(60)),
    );
    let start = Instant::now();
    let m = round_trip(&env, &s, 2 * PART as usize).await;
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(env.attachments_of(&m.id).len(), 2);
}

#[tokio::test]
async fn a_host_nothing_listens_on_fails_fast_and_is_named() {
    let env = Env::new().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = env.session_with(|c| {
        normal_retries(c);
        c.api_base = format!("http://127.0.0.1:{port}");
    });
    let path = env.file("refused.bin", 10);
    let start = Instant::now();
    let err = format!("{:#}", upload(&s, &path).await.unwrap_err());
    assert!(
        err.contains(&format!(
            "cannot reach 127.0.0.1:{port}: connection refused (tried 3 times)"
        )),
        "{err}"
    );
    assert!(!err.contains(&env.emu.token()), "{err}");
    // Eight retries with the normal backoff take half a minute at least.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_fails_fast_and_is_named() {
    let env = Env::new().await;
    // `.invalid` never resolves (RFC 6761).
    let s = env.session_with(|c| {
        normal_retries(c);
        c.api_base = "http://dstore-test.invalid".into();
    });
    let path = env.file("dns.bin", 10);
    let err = format!("{:#}", upload(&s, &path).await.unwrap_err());
    assert!(
        err.contains(
            "cannot reach dstore-test.invalid:80: its name could not be resolved (tried 3 times)"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_retry_after_the_nonce_is_forgotten_finds_the_part_instead_of_posting_it_again() {
    let env = Env::with(|c| {
        c.rate_limits = None;
        c.nonce_window = Duration::from_secs(1);
    })
    .await;
    let store = BotStore::new(&env.config())
        .unwrap()
        .with_nonce_trust(Duration::from_millis(500));
    // The first try is stored but its reply is lost; the retry is held back by a 429 until
    // Discord no longer knows the nonce.
    env.fault(
        FaultRoute::CreateMessage,
        0,
        1,
        FaultAction::ResetAfterCommit,
    );
    env.fault(
        FaultRoute::CreateMessage,
        0,
        1,
        FaultAction::RateLimit {
            retry_after: 1.5,
            global: false,
        },
    );
    let data = crate::common::random_bytes(1000, 7);
    let put = store
        .put_part(PutPart {
            channel_id: env.emu.channel_id(),
            filename: "late.0.part".into(),
            nonce: "late.0".into(),
            data: data.clone().into(),
            reload: None,
        })
        .await
        .unwrap();
    let named: Vec<_> = env
        .emu
        .messages(env.emu.channel_id())
        .into_iter()
        .filter(|m| m.attachments.iter().any(|a| a.filename == "late.0.part"))
        .collect();
    assert_eq!(named.len(), 1, "one copy on Discord");
    assert_eq!(named[0].id, put.message_id);
    assert_eq!(env.emu.attachment_bytes(put.attachment_id).unwrap(), data);
}

#[tokio::test]
async fn a_cdn_rate_limit_is_waited_out_like_the_apis() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, PART as usize).await;
    env.fault(
        FaultRoute::Cdn,
        0,
        1,
        FaultAction::RateLimit {
            retry_after: 0.8,
            global: false,
        },
    );
    let out = env.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let start = Instant::now();
    crate::download::get(&s, &m.id, &out, false).await.unwrap();
    // `Retry-After: 1` (rounded up), not the 10 ms test backoff.
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(env.emu.stats().status(429), 1);
}
