//! State survives a restart on the same directory.

use dstore_emulator::{Emulator, EmulatorConfig};
use serde_json::{json, Value};

use crate::common::{id, start};

#[tokio::test]
async fn restart_keeps_everything() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let other = env.emu.add_channel(env.emu.add_guild(2));
    env.emu.set_upload_limit(env.emu.guild_id(), Some(4096));
    let kept = env.upload(ch, "a.part", vec![3; 1000]).await;
    let gone = env.upload(ch, "b.part", vec![4; 1000]).await;
    let nonce = env
        .post_json(
            &format!("/channels/{other}/messages"),
            json!({"content": "x", "nonce": "k", "enforce_nonce": true}),
        )
        .await;
    let nonce: Value = nonce.json().await.unwrap();
    assert_eq!(
        env.delete(&format!("/channels/{ch}/messages/{}", id(&gone["id"])))
            .await
            .status(),
        204
    );
    let (token, guild, messages) = (env.emu.token(), env.emu.guild_id(), env.emu.messages(ch));
    let dir = env.dir;
    env.emu.shutdown().await;

    let mut config = EmulatorConfig::new(dir.path());
    config.rate_limits = None;
    let emu = Emulator::start(config).await.unwrap();
    assert_eq!(
        (emu.token(), emu.guild_id(), emu.channel_id()),
        (token, guild, ch)
    );
    assert_eq!(emu.messages(ch), messages);
    let aid = id(&kept["attachments"][0]["id"]);
    assert_eq!(emu.attachment_bytes(aid).unwrap(), vec![3; 1000]);
    assert!(emu
        .attachment_bytes(id(&gone["attachments"][0]["id"]))
        .is_none());
    // Old URLs stay valid (same secret); limits and nonces survive; new ids sort after old ones.
    let http = reqwest::Client::new();
    let old_url = kept["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .replace(&env_base(&kept), &emu.base_url());
    assert_eq!(http.get(old_url).send().await.unwrap().status(), 200);
    let auth = format!("Bot {}", emu.token());
    let post = |c: u64, body: Value| {
        http.post(format!("{}/api/v10/channels/{c}/messages", emu.base_url()))
            .header("authorization", &auth)
            .json(&body)
            .send()
    };
    let again: Value = post(
        other,
        json!({"content": "x", "nonce": "k", "enforce_nonce": true}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(again["id"], nonce["id"]);
    let newer: Value = post(ch, json!({"content": "later"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(id(&newer["id"]) > id(&nonce["id"]));
    emu.shutdown().await;
}

/// The origin a message's URL was issued under (the port changes across restarts).
fn env_base(msg: &Value) -> String {
    let url = msg["attachments"][0]["url"].as_str().unwrap();
    url[..url.find("/attachments/").unwrap()].to_string()
}
