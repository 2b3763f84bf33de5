//! Auth, users/@me, channels, guilds and access rules.

use dstore_emulator::Access;
use serde_json::Value;

use crate::common::{id, start};

#[tokio::test]
async fn missing_or_wrong_token_is_401() {
    let env = start().await;
    let url = env.api("/users/@me");
    for auth in [None, Some("Bot wrong".to_string()), Some(env.emu.token())] {
        let mut req = env.http.get(&url);
        if let Some(a) = &auth {
            req = req.header("authorization", a.as_str());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "auth {auth:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"message": "401: Unauthorized", "code": 0})
        );
    }
    assert_eq!(env.emu.stats().invalid_requests, 3);
    assert_eq!(env.get("/users/@me").await.status(), 200);
}

#[tokio::test]
async fn v9_and_serenity_query_strings_are_served() {
    let env = start().await;
    let url = format!(
        "{}/api/v9/channels/{}/messages?&limit=5&",
        env.emu.base_url(),
        env.emu.channel_id()
    );
    let resp = env
        .http
        .get(url)
        .header("authorization", env.auth())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), serde_json::json!([]));
}

#[tokio::test]
async fn channel_and_guild_objects() {
    let env = start().await;
    let ch: Value = env
        .get(&format!("/channels/{}", env.emu.channel_id()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(id(&ch["id"]), env.emu.channel_id());
    assert_eq!(id(&ch["guild_id"]), env.emu.guild_id());
    assert_eq!(ch["type"], 0);
    let g: Value = env
        .get(&format!("/guilds/{}", env.emu.guild_id()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(g["premium_tier"], 0);
    env.emu.set_premium_tier(env.emu.guild_id(), 2);
    let g: Value = env
        .get(&format!("/guilds/{}", env.emu.guild_id()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(g["premium_tier"], 2);
    let second = env.emu.add_guild(3);
    let ch2 = env.emu.add_channel(second);
    let ch: Value = env
        .get(&format!("/channels/{ch2}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(id(&ch["guild_id"]), second);
}

#[tokio::test]
async fn unknown_ids_are_404_with_codes() {
    let env = start().await;
    let cases = [
        ("/channels/123456789012345678", 10003),
        ("/guilds/123456789012345678", 10004),
    ];
    for (path, code) in cases {
        let resp = env.get(path).await;
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], code);
    }
    let resp = env
        .get(&format!(
            "/channels/{}/messages/123456789012345678",
            env.emu.channel_id()
        ))
        .await;
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 10008);
}

#[tokio::test]
async fn access_rules_give_403() {
    let env = start().await;
    let ch = env.emu.channel_id();
    env.emu.set_channel_access(ch, Access::NoAccess);
    let resp = env.get(&format!("/channels/{ch}")).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 50001);
    env.emu.set_channel_access(ch, Access::NoPermission);
    assert_eq!(env.get(&format!("/channels/{ch}")).await.status(), 200);
    let resp = env
        .post_json(
            &format!("/channels/{ch}/messages"),
            serde_json::json!({"content": "hi"}),
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 50013);
    env.emu.set_channel_access(ch, Access::Full);
    let resp = env
        .post_json(
            &format!("/channels/{ch}/messages"),
            serde_json::json!({"content": "hi"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
}
