//! Link caps: a shared byte rate over all connections, and one per connection. Only lower bounds
//! on time are asserted (pacing can only slow a transfer down), with the limiters' byte counts.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{bytes, start_with, Env};

/// Downloads `url` on a connection of its own; returns how long it took.
async fn download(url: String, want: usize) -> Duration {
    let t = Instant::now();
    let got = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().len(), want);
    t.elapsed()
}

async fn url_of(env: &Env, name: &str, n: usize) -> String {
    let msg: Value = env.upload(env.emu.channel_id(), name, bytes(n, 3)).await;
    msg["attachments"][0]["url"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn shared_link_cap_paces_uploads_and_downloads_over_all_connections() {
    let env = start_with(|c| {
        c.rate_limits = None;
        c.link_bytes_per_sec = Some(200_000);
    })
    .await;
    let t = Instant::now();
    let url = url_of(&env, "a.part", 100_000).await;
    // 100 kB up at 200 kB/s: at least half a second.
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "{:?}",
        t.elapsed()
    );
    let up = env.emu.stats().link_bytes;
    assert!(up >= 100_000, "{up}");
    // Two downloads at once on two connections share the link: 200 kB take about a second.
    let t = Instant::now();
    tokio::join!(download(url.clone(), 100_000), download(url, 100_000));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert!(env.emu.stats().link_bytes >= up + 200_000);
    assert_eq!(env.emu.stats().connection_capped_bytes, 0);
}

#[tokio::test]
async fn connection_cap_paces_each_connection_on_its_own() {
    let env = start_with(|c| {
        c.rate_limits = None;
        c.connection_bytes_per_sec = Some(100_000);
    })
    .await;
    let url = url_of(&env, "a.part", 50_000).await;
    let before = env.emu.stats().connection_capped_bytes;
    assert!(before >= 50_000, "{before}");
    let (a, b) = tokio::join!(download(url.clone(), 50_000), download(url, 50_000));
    // Each connection is held to 100 kB/s: 50 kB take at least half a second on each.
    for d in [a, b] {
        assert!(d >= Duration::from_millis(450), "{d:?}");
    }
    let s = env.emu.stats();
    assert!(s.connection_capped_bytes >= before + 100_000);
    assert_eq!(s.link_bytes, 0);
}

#[tokio::test]
async fn no_caps_by_default() {
    let env = start_with(|c| c.rate_limits = None).await;
    let url = url_of(&env, "a.part", 100_000).await;
    download(url, 100_000).await;
    let s = env.emu.stats();
    assert_eq!((s.link_bytes, s.connection_capped_bytes), (0, 0));
}
