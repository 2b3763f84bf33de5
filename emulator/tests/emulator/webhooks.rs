//! Webhooks: the resource, execute, the webhook message routes, their rate limits (the hidden
//! per-channel cap included) and persistence.

use std::time::Duration;

use dstore_emulator::{
    Access, Emulator, EmulatorConfig, Fault, FaultAction, FaultRoute, RateLimits, WebhookInfo,
};
use reqwest::multipart::{Form, Part};
use reqwest::Response;
use serde_json::{json, Value};

use crate::common::{bytes, id, start, start_with, Env};

/// Executes `hook` with a multipart body in serenity's order (files, then `payload_json`);
/// `query` is appended to the URL as is (e.g. `?&wait=true`).
async fn execute(
    env: &Env,
    hook: &WebhookInfo,
    query: &str,
    payload: Value,
    files: &[(&str, Vec<u8>)],
) -> Response {
    let mut form = Form::new();
    for (i, (name, data)) in files.iter().enumerate() {
        let part = Part::bytes(data.clone())
            .file_name(name.to_string())
            .mime_str("application/octet-stream")
            .unwrap();
        form = form.part(format!("files[{i}]"), part);
    }
    form = form.text("payload_json", payload.to_string());
    env.http
        .post(format!("{}{query}", hook.url))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// A text-only execute with `wait=true`.
async fn say(env: &Env, hook: &WebhookInfo, text: &str) -> Response {
    env.http
        .post(format!("{}?wait=true", hook.url))
        .json(&json!({ "content": text }))
        .send()
        .await
        .unwrap()
}

fn header<'a>(resp: &'a Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn execute_with_wait_returns_the_message_posted_as_the_webhook() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let hook = env.emu.create_webhook(ch);
    assert_eq!(hook.token.len(), 68);
    assert!(hook
        .token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    assert_eq!(
        hook.url,
        format!(
            "{}/api/v10/webhooks/{}/{}",
            env.emu.base_url(),
            hook.id,
            hook.token
        )
    );
    let data = bytes(50_000, 7);
    // serenity's query style; a nonce is not part of Execute Webhook and is ignored.
    let payload = json!({"content": "dstore/1 part", "nonce": "n1", "enforce_nonce": true,
        "attachments": [{"id": 0, "filename": "k.0.part"}]});
    let resp = execute(
        &env,
        &hook,
        "?&wait=true",
        payload.clone(),
        &[("x", data.clone())],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let msg: Value = resp.json().await.unwrap();
    assert_eq!(id(&msg["webhook_id"]), hook.id);
    assert_eq!(id(&msg["author"]["id"]), hook.id);
    assert_eq!(msg["author"]["bot"], true);
    assert_eq!(msg["author"]["username"], "hook-1");
    assert_eq!(id(&msg["channel_id"]), ch);
    assert!(msg.get("nonce").is_none());
    let att = &msg["attachments"][0];
    assert_eq!(att["filename"], "k.0.part");
    let got = env
        .http
        .get(att["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().to_vec(), data);
    // The same nonce again is a new message: nothing dedupes executes.
    let again: Value = execute(&env, &hook, "?wait=true", payload, &[("x", vec![1])])
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(again["id"], msg["id"]);
    // The bot sees it in the channel's history, as the webhook's.
    let list: Value = env
        .get(&format!("/channels/{ch}/messages"))
        .await
        .json()
        .await
        .unwrap();
    let listed = list.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|m| id(&m["webhook_id"]) == hook.id));
    let infos = env.emu.messages(ch);
    assert_eq!(infos[0].webhook_id, Some(hook.id));
    assert_eq!(infos[0].author_id, Some(hook.id));
    let stats = env.emu.stats();
    assert_eq!(stats.webhook(hook.id).messages_created, 2);
    assert_eq!(stats.channel(ch).webhooks.messages_created, 2);
    assert_eq!(stats.channel(ch).bot.messages_created, 0);
}

#[tokio::test]
async fn execute_without_wait_is_204_and_still_stored() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let hook = env.emu.create_webhook(ch);
    let resp = execute(
        &env,
        &hook,
        "",
        json!({"username": "lane 3"}),
        &[("a", vec![5; 10])],
    )
    .await;
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = execute(&env, &hook, "?wait=false", json!({"content": "x"}), &[]).await;
    assert_eq!(resp.status(), 204);
    let infos = env.emu.messages(ch);
    assert_eq!(infos.len(), 2);
    assert_eq!(infos[0].attachments[0].size, 10);
    let m: Value = env
        .get(&format!("/channels/{ch}/messages/{}", infos[0].id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["author"]["username"], "lane 3");
    // Same checks as Create Message: empty messages and oversize files are refused.
    let resp = execute(&env, &hook, "?wait=true", json!({}), &[]).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 50006);
    env.emu.set_upload_limit(env.emu.guild_id(), Some(1000));
    let resp = execute(
        &env,
        &hook,
        "?wait=true",
        json!({}),
        &[("a", vec![0; 1001])],
    )
    .await;
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 40005);
    let resp = execute(
        &env,
        &hook,
        "?wait=true",
        json!({}),
        &[("a", vec![0; 1000])],
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn wrong_token_is_401_50027_and_a_deleted_webhook_404_10015() {
    let env = start().await;
    let hook = env.emu.create_webhook(env.emu.channel_id());
    let forged = WebhookInfo {
        url: hook.url.replace(&hook.token, &"A".repeat(68)),
        ..hook.clone()
    };
    let resp = say(&env, &forged, "x").await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"message": "Invalid Webhook Token", "code": 50027})
    );
    // Token routes ignore whatever Authorization header comes along.
    let resp = env
        .http
        .post(format!("{}?wait=true", hook.url))
        .header("authorization", "Bot not-the-token")
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(env.emu.delete_webhook(hook.id));
    for resp in [
        say(&env, &hook, "x").await,
        env.http.get(&hook.url).send().await.unwrap(),
    ] {
        assert_eq!(resp.status(), 404);
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            json!({"message": "Unknown Webhook", "code": 10015})
        );
    }
    assert!(!env.emu.delete_webhook(hook.id));
    // Its messages stay.
    assert_eq!(env.emu.messages(env.emu.channel_id()).len(), 1);
}

#[tokio::test]
async fn webhook_message_routes_reach_only_that_webhooks_messages() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let (a, b) = (env.emu.create_webhook(ch), env.emu.create_webhook(ch));
    let mine: Value = execute(
        &env,
        &a,
        "?wait=true",
        json!({"content": "a"}),
        &[("f", vec![1; 100])],
    )
    .await
    .json()
    .await
    .unwrap();
    let theirs: Value = say(&env, &b, "b").await.json().await.unwrap();
    let bots = env.upload(ch, "c.part", vec![2; 10]).await;
    let url = |hook: &WebhookInfo, m: &Value| format!("{}/messages/{}", hook.url, id(&m["id"]));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let got: Value = env
        .http
        .get(url(&a, &mine))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["id"], mine["id"]);
    // Freshly signed: issued now, not when it was posted.
    assert_ne!(got["attachments"][0]["url"], mine["attachments"][0]["url"]);
    for other in [&theirs, &bots] {
        let resp = env.http.get(url(&a, other)).send().await.unwrap();
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], 10008);
        let resp = env.http.delete(url(&a, other)).send().await.unwrap();
        assert_eq!(resp.status(), 404);
    }
    let edited: Value = env
        .http
        .patch(url(&a, &mine))
        .json(&json!({"content": "edited"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(edited["content"], "edited");
    assert!(edited["edited_timestamp"].is_string());
    assert_eq!(edited["attachments"][0]["size"], 100);
    let resp = env.http.delete(url(&a, &mine)).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        env.http.get(url(&a, &mine)).send().await.unwrap().status(),
        404
    );
    assert_eq!(env.emu.messages(ch).len(), 2);
}

#[tokio::test]
async fn create_webhook_route_needs_manage_webhooks_and_returns_discords_object() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let path = format!("/channels/{ch}/webhooks");
    let resp = env.post_json(&path, json!({"name": "lane"})).await;
    assert_eq!(resp.status(), 200);
    let hook: Value = resp.json().await.unwrap();
    assert_eq!(hook["type"], 1);
    assert_eq!(id(&hook["channel_id"]), ch);
    assert_eq!(id(&hook["guild_id"]), env.emu.guild_id());
    assert_eq!(hook["name"], "lane");
    assert_eq!(id(&hook["user"]["id"]), env.emu.bot_user_id());
    let token = hook["token"].as_str().unwrap();
    assert_eq!(token.len(), 68);
    let url = hook["url"].as_str().unwrap();
    assert_eq!(
        url,
        format!("{}/webhooks/{}/{token}", env.api(""), id(&hook["id"]))
    );
    // The token route returns it without a user, and executes work on it.
    let got: Value = env
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (got["id"].clone(), got["token"].clone()),
        (hook["id"].clone(), hook["token"].clone())
    );
    assert!(got.get("user").is_none());
    let listed: Value = env.get(&path).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(env.post_json(&path, json!({})).await.status(), 400);
    let resp = env.post_json(&path, json!({"name": "x".repeat(81)})).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 50035);
    // Without a bot token: 401; without the permission: 403 50013.
    let resp = env
        .http
        .post(env.api(&path))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    env.emu.set_channel_access(ch, Access::NoPermission);
    let resp = env.post_json(&path, json!({"name": "x"})).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 50013);
    env.emu.set_channel_access(ch, Access::Full);
    for _ in 1..15 {
        env.emu.create_webhook(ch);
    }
    let resp = env.post_json(&path, json!({"name": "sixteenth"})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 30007);
    // Deleting through the token route frees a place.
    assert_eq!(env.http.delete(url).send().await.unwrap().status(), 204);
    assert_eq!(
        env.post_json(&path, json!({"name": "again"}))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn per_webhook_bucket_announced_in_headers_429_after_5_in_2_s() {
    // The bot's global is tiny: webhook requests carry no bot token and do not count against it.
    let env = start_with(|c| {
        c.rate_limits = Some(RateLimits {
            global_per_sec: 2,
            ..Default::default()
        })
    })
    .await;
    let ch = env.emu.channel_id();
    let (a, b) = (env.emu.create_webhook(ch), env.emu.create_webhook(ch));
    let mut bucket = String::new();
    for remaining in (0..5).rev() {
        let resp = say(&env, &a, "x").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit"), "5");
        assert_eq!(
            header(&resp, "x-ratelimit-remaining"),
            remaining.to_string()
        );
        let after: f64 = header(&resp, "x-ratelimit-reset-after").parse().unwrap();
        assert!(after > 0.0 && after <= 2.0);
        bucket = header(&resp, "x-ratelimit-bucket").to_string();
    }
    let resp = say(&env, &a, "x").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-ratelimit-scope"), "user");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["global"], false);
    assert!(body["retry_after"].as_f64().unwrap() <= 2.0);
    // Another webhook of the same channel has its own bucket, with another hash.
    let resp = say(&env, &b, "x").await;
    assert_eq!(resp.status(), 200);
    assert_ne!(header(&resp, "x-ratelimit-bucket"), bucket);
    // The bot's global still has both its requests.
    assert_eq!(env.get("/users/@me").await.status(), 200);
    assert_eq!(env.get("/users/@me").await.status(), 200);
    let stats = env.emu.stats();
    assert_eq!(stats.webhook(a.id).rate_limited.user, 1);
    assert_eq!(stats.rate_limited.user, 1);
    assert_eq!(stats.invalid_requests, 1);
}

#[tokio::test]
async fn hidden_channel_cap_is_shared_by_its_webhooks_and_answered_with_scope_shared() {
    let env = start_with(|c| {
        c.rate_limits = Some(RateLimits {
            webhook_channel: (4, Duration::from_secs(60)),
            ..Default::default()
        })
    })
    .await;
    let ch = env.emu.channel_id();
    let (a, b) = (env.emu.create_webhook(ch), env.emu.create_webhook(ch));
    let elsewhere = env
        .emu
        .create_webhook(env.emu.add_channel(env.emu.guild_id()));
    for hook in [&a, &b, &a, &b] {
        assert_eq!(say(&env, hook, "x").await.status(), 200);
    }
    let resp = say(&env, &b, "x").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-ratelimit-scope"), "shared");
    // The webhook's own bucket still shows room: nothing announced this limit.
    assert_eq!(header(&resp, "x-ratelimit-remaining"), "3");
    let retry_header: u64 = header(&resp, "retry-after").parse().unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "You are being rate limited.");
    assert_eq!(body["global"], false);
    let retry = body["retry_after"].as_f64().unwrap();
    assert!((40.0..=45.0).contains(&retry), "retry_after {retry}");
    assert_eq!(retry_header, 45);
    // Every webhook of the channel is refused now; one of another channel is not.
    assert_eq!(say(&env, &a, "x").await.status(), 429);
    assert_eq!(say(&env, &elsewhere, "x").await.status(), 200);
    assert_eq!(env.emu.messages(ch).len(), 4);
    let stats = env.emu.stats();
    assert_eq!(stats.channel(ch).webhooks.messages_created, 4);
    assert_eq!(stats.channel(ch).webhooks.rate_limited.shared, 2);
    assert_eq!(
        (
            stats.webhook(a.id).rate_limited.shared,
            stats.webhook(b.id).rate_limited.shared
        ),
        (1, 1)
    );
    assert_eq!(stats.webhook(elsewhere.id).messages_created, 1);
    assert_eq!(stats.rate_limited.shared, 2);
    // Discord leaves `shared` 429s out of the invalid-request count (discord-api.md §3.1).
    assert_eq!(stats.invalid_requests, 0);
}

#[tokio::test]
async fn defaults_let_30_executes_per_channel_through_then_refuse() {
    let env = start_with(|_| {}).await;
    let ch = env.emu.channel_id();
    let hooks: Vec<WebhookInfo> = (0..7).map(|_| env.emu.create_webhook(ch)).collect();
    // 7 webhooks × 5 = 35 announced, but the channel takes 30.
    let mut statuses = Vec::new();
    for hook in hooks.iter().cycle().take(35) {
        statuses.push(say(&env, hook, "x").await.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 30);
    assert!(statuses[30..].iter().all(|s| *s == 429));
    assert_eq!(env.emu.stats().rate_limited.shared, 5);
}

#[tokio::test]
async fn faults_reach_executes() {
    let env = start().await;
    let hook = env.emu.create_webhook(env.emu.channel_id());
    env.emu.faults().push(Fault {
        route: FaultRoute::ExecuteWebhook,
        skip: 0,
        times: 1,
        action: FaultAction::Status(502),
    });
    assert_eq!(say(&env, &hook, "x").await.status(), 502);
    assert_eq!(say(&env, &hook, "x").await.status(), 200);
    assert_eq!(env.emu.messages(env.emu.channel_id()).len(), 1);
}

#[tokio::test]
async fn webhooks_and_their_messages_survive_a_restart() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let (kept, gone) = (env.emu.create_webhook(ch), env.emu.create_webhook(ch));
    let msg: Value = say(&env, &kept, "before").await.json().await.unwrap();
    let edit = format!("{}/messages/{}", kept.url, id(&msg["id"]));
    let resp = env
        .http
        .patch(&edit)
        .json(&json!({"content": "edited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(env.emu.delete_webhook(gone.id));
    let (messages, old_base) = (env.emu.messages(ch), env.emu.base_url());
    let dir = env.dir;
    env.emu.shutdown().await;

    let mut config = EmulatorConfig::new(dir.path());
    config.rate_limits = None;
    let emu = Emulator::start(config).await.unwrap();
    assert_eq!(emu.messages(ch), messages);
    assert_eq!(messages[0].content, "edited");
    let http = reqwest::Client::new();
    let url = kept.url.replace(&old_base, &emu.base_url());
    let got: Value = http
        .get(format!("{url}/messages/{}", id(&msg["id"])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(id(&got["webhook_id"]), kept.id);
    assert_eq!(got["content"], "edited");
    assert!(got["edited_timestamp"].is_string());
    let resp = http
        .post(format!("{url}?wait=true"))
        .json(&json!({"content": "after"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let gone_url = gone.url.replace(&old_base, &emu.base_url());
    let resp = http
        .post(&gone_url)
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // A new webhook gets a new id, after the old ones.
    assert!(emu.create_webhook(ch).id > gone.id);
    emu.shutdown().await;
}
