//! Every fault action, as a client sees it.

use std::time::Duration;

use dstore_emulator::{Fault, FaultAction, FaultRoute};
use serde_json::{json, Value};

use crate::common::{id, start, Env};

fn fault(route: FaultRoute, action: FaultAction) -> Fault {
    Fault {
        route,
        skip: 0,
        times: 1,
        action,
    }
}

fn create_body() -> Value {
    json!({"content": "part", "nonce": "n.1", "enforce_nonce": true})
}

async fn create(env: &Env) -> reqwest::Result<reqwest::Response> {
    let url = env.api(&format!("/channels/{}/messages", env.emu.channel_id()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    client
        .post(url)
        .header("authorization", env.auth())
        .json(&create_body())
        .send()
        .await
}

#[tokio::test]
async fn status_fault_sends_html_and_stores_nothing() {
    let env = start().await;
    env.emu.faults().push(Fault {
        skip: 1,
        ..fault(FaultRoute::CreateMessage, FaultAction::Status(502))
    });
    assert_eq!(create(&env).await.unwrap().status(), 200, "skipped");
    env.emu.delete_message(
        env.emu.channel_id(),
        env.emu.messages(env.emu.channel_id())[0].id,
    );
    let resp = create(&env).await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(resp.text().await.unwrap().contains("502 Bad Gateway"));
    assert!(env.emu.messages(env.emu.channel_id()).is_empty());
    assert_eq!(env.emu.faults().pending(), 0);
    assert_eq!(create(&env).await.unwrap().status(), 200);
    assert_eq!(env.emu.stats().server_errors(), 1);
}

#[tokio::test]
async fn rate_limit_fault_looks_like_discord() {
    let env = start().await;
    env.emu.faults().push(fault(
        FaultRoute::CreateMessage,
        FaultAction::RateLimit {
            retry_after: 1.5,
            global: false,
        },
    ));
    env.emu.faults().push(fault(
        FaultRoute::CreateMessage,
        FaultAction::RateLimit {
            retry_after: 0.2,
            global: true,
        },
    ));
    let resp = create(&env).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(resp.headers()["x-ratelimit-scope"], "user");
    assert!(resp.headers().get("x-ratelimit-global").is_none());
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"message": "You are being rate limited.", "retry_after": 1.5, "global": false})
    );
    let resp = create(&env).await.unwrap();
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.headers()["x-ratelimit-global"], "true");
    assert_eq!(resp.headers()["x-ratelimit-scope"], "global");
    assert!(env.emu.messages(env.emu.channel_id()).is_empty());
}

#[tokio::test]
async fn reset_drops_the_connection_before_storing() {
    let env = start().await;
    env.emu
        .faults()
        .push(fault(FaultRoute::CreateMessage, FaultAction::Reset));
    let payload = json!({"content": "p"});
    assert!(env
        .try_post_files(env.emu.channel_id(), payload, &[("a", vec![1; 200_000])])
        .await
        .is_err());
    assert!(env.emu.messages(env.emu.channel_id()).is_empty());
    assert_eq!(env.emu.stats().connections_reset, 1);
    assert_eq!(create(&env).await.unwrap().status(), 200);
}

#[tokio::test]
async fn reset_after_commit_stores_and_a_nonce_retry_finds_it() {
    let env = start().await;
    env.emu.faults().push(fault(
        FaultRoute::CreateMessage,
        FaultAction::ResetAfterCommit,
    ));
    assert!(create(&env).await.is_err());
    let stored = env.emu.messages(env.emu.channel_id());
    assert_eq!(stored.len(), 1);
    let again: Value = create(&env).await.unwrap().json().await.unwrap();
    assert_eq!(id(&again["id"]), stored[0].id);
    assert_eq!(env.emu.messages(env.emu.channel_id()).len(), 1);
}

#[tokio::test]
async fn stall_after_commit_outlasts_the_client_but_stores() {
    let env = start().await;
    env.emu.faults().push(fault(
        FaultRoute::CreateMessage,
        FaultAction::StallAfterCommit(Duration::from_secs(2)),
    ));
    let err = create(&env).await.unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(env.emu.messages(env.emu.channel_id()).len(), 1);
}

#[tokio::test]
async fn stall_delays_then_handles() {
    let env = start().await;
    env.emu.faults().push(fault(
        FaultRoute::GetChannel,
        FaultAction::Stall(Duration::from_secs(2)),
    ));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = env.api(&format!("/channels/{}", env.emu.channel_id()));
    assert!(client
        .get(&url)
        .header("authorization", env.auth())
        .send()
        .await
        .unwrap_err()
        .is_timeout());
    env.emu.faults().push(fault(
        FaultRoute::GetChannel,
        FaultAction::Stall(Duration::from_millis(300)),
    ));
    let started = std::time::Instant::now();
    assert_eq!(
        env.get(&format!("/channels/{}", env.emu.channel_id()))
            .await
            .status(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn corrupt_bytes_on_the_cdn() {
    let env = start().await;
    let data = vec![7u8; 4096];
    let msg = env
        .upload(env.emu.channel_id(), "a.part", data.clone())
        .await;
    let url = msg["attachments"][0]["url"].as_str().unwrap();
    env.emu
        .faults()
        .push(fault(FaultRoute::Cdn, FaultAction::CorruptBytes));
    let bad = env
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bad.len(), data.len());
    assert_ne!(bad.to_vec(), data);
    assert_eq!(
        env.http
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        data
    );
}

#[tokio::test]
async fn any_route_and_clear() {
    let env = start().await;
    env.emu.faults().push(Fault {
        times: 2,
        ..fault(FaultRoute::Any, FaultAction::Status(503))
    });
    assert_eq!(env.get("/users/@me").await.status(), 503);
    assert_eq!(
        env.get(&format!("/channels/{}/messages", env.emu.channel_id()))
            .await
            .status(),
        503
    );
    assert_eq!(env.get("/users/@me").await.status(), 200);
    env.emu
        .faults()
        .push(fault(FaultRoute::DeleteMessage, FaultAction::Status(500)));
    assert_eq!(env.emu.faults().pending(), 1);
    env.emu.faults().clear();
    assert_eq!(env.emu.faults().pending(), 0);
}

#[tokio::test]
async fn cut_off_sends_half_then_drops_the_connection() {
    let env = start().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let msg = env
        .upload(env.emu.channel_id(), "a.part", data.clone())
        .await;
    let url = msg["attachments"][0]["url"].as_str().unwrap();
    env.emu
        .faults()
        .push(fault(FaultRoute::Cdn, FaultAction::CutOff));
    let resp = env.http.get(url).send().await.unwrap();
    assert_eq!(resp.content_length(), Some(data.len() as u64));
    assert!(resp.bytes().await.is_err(), "the body is cut off");
    let whole = env
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(whole.to_vec(), data);
}

#[tokio::test]
async fn a_cdn_that_ignores_range_sends_the_whole_body() {
    let env = start().await;
    let data: Vec<u8> = (0..100u8).collect();
    let msg = env
        .upload(env.emu.channel_id(), "a.part", data.clone())
        .await;
    let url = msg["attachments"][0]["url"].as_str().unwrap();
    env.emu
        .faults()
        .push(fault(FaultRoute::Cdn, FaultAction::IgnoreRange));
    let get = || env.http.get(url).header("range", "bytes=10-19").send();
    let whole = get().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert!(whole.headers().get("content-range").is_none());
    assert_eq!(whole.bytes().await.unwrap().to_vec(), data);
    let part = get().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().to_vec(), data[10..20]);
}
