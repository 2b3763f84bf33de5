//! Rate-limit headers on every API response and 429s when a bucket or the global limit runs out.

use std::time::Duration;

use dstore_emulator::RateLimits;
use serde_json::{json, Value};

use crate::common::start_with;

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn create_bucket_runs_out_then_429() {
    let env = start_with(|_| {}).await;
    let path = format!("/channels/{}/messages", env.emu.channel_id());
    let mut buckets = Vec::new();
    for remaining in (0..5).rev() {
        let resp = env.post_json(&path, json!({"content": "x"})).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit"), "5");
        assert_eq!(
            header(&resp, "x-ratelimit-remaining"),
            remaining.to_string()
        );
        let after: f64 = header(&resp, "x-ratelimit-reset-after").parse().unwrap();
        assert!(after > 0.0 && after <= 5.0);
        let reset: f64 = header(&resp, "x-ratelimit-reset").parse().unwrap();
        assert!(reset > 1.6e9);
        buckets.push(header(&resp, "x-ratelimit-bucket").to_string());
    }
    assert!(buckets.windows(2).all(|w| w[0] == w[1]));
    let resp = env.post_json(&path, json!({"content": "x"})).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-ratelimit-scope"), "user");
    assert_eq!(header(&resp, "x-ratelimit-remaining"), "0");
    let retry_header: u64 = header(&resp, "retry-after").parse().unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "You are being rate limited.");
    assert_eq!(body["global"], false);
    let retry = body["retry_after"].as_f64().unwrap();
    assert!(retry > 0.0 && retry <= 5.0 && retry_header == retry.ceil() as u64);
    assert_eq!(env.emu.messages(env.emu.channel_id()).len(), 5);
    // Another channel has its own bucket; reads have theirs.
    let other = env.emu.add_channel(env.emu.guild_id());
    assert_eq!(
        env.post_json(
            &format!("/channels/{other}/messages"),
            json!({"content": "x"})
        )
        .await
        .status(),
        200
    );
    assert_eq!(env.get(&path).await.status(), 200);
    assert_eq!(env.emu.stats().status(429), 1);
    assert_eq!(env.emu.stats().invalid_requests, 1);
}

#[tokio::test]
async fn bucket_refills_after_its_window() {
    let env = start_with(|c| {
        c.rate_limits = Some(RateLimits {
            create_message: (1, Duration::from_millis(300)),
            ..Default::default()
        })
    })
    .await;
    let path = format!("/channels/{}/messages", env.emu.channel_id());
    assert_eq!(
        env.post_json(&path, json!({"content": "x"})).await.status(),
        200
    );
    assert_eq!(
        env.post_json(&path, json!({"content": "x"})).await.status(),
        429
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        env.post_json(&path, json!({"content": "x"})).await.status(),
        200
    );
}

#[tokio::test]
async fn global_limit_is_flagged() {
    let env = start_with(|c| {
        c.rate_limits = Some(RateLimits {
            global_per_sec: 3,
            ..Default::default()
        })
    })
    .await;
    for _ in 0..3 {
        assert_eq!(env.get("/users/@me").await.status(), 200);
    }
    let resp = env.get("/users/@me").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-ratelimit-global"), "true");
    assert_eq!(header(&resp, "x-ratelimit-scope"), "global");
    assert_eq!(resp.json::<Value>().await.unwrap()["global"], true);
}

#[tokio::test]
async fn unlimited_still_sends_valid_headers() {
    let env = start_with(|c| c.rate_limits = None).await;
    for _ in 0..20 {
        let resp = env
            .post_json(
                &format!("/channels/{}/messages", env.emu.channel_id()),
                json!({"content": "x"}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        header(&resp, "x-ratelimit-limit").parse::<i64>().unwrap();
        header(&resp, "x-ratelimit-remaining")
            .parse::<i64>()
            .unwrap();
        header(&resp, "x-ratelimit-reset-after")
            .parse::<f64>()
            .unwrap();
    }
}
