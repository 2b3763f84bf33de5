//! The JSON the emulator sends decodes into serenity 0.12.5's models, as dstore will decode it.

use serde_json::{json, Value};
use serenity::model::channel::{Channel, Message};
use serenity::model::guild::PartialGuild;
use serenity::model::user::CurrentUser;

use crate::common::start;

#[tokio::test]
async fn responses_decode_into_serenity_models() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let payload = json!({"content": "dstore/1 k3f9x2ab7q 5 52428800 10485760", "nonce": "k3f9x2ab7q.5", "enforce_nonce": true,
        "attachments": [{"id": 0, "filename": "k3f9x2ab7q.5.part"}]});
    let resp = env
        .post_files(ch, payload, &[("k3f9x2ab7q.5.part", vec![1; 1234])])
        .await;
    let msg: Message =
        serde_json::from_value(resp.json::<Value>().await.unwrap()).expect("Message");
    assert_eq!(msg.channel_id.get(), ch);
    assert_eq!(msg.attachments[0].size, 1234);
    assert_eq!(msg.attachments[0].filename, "k3f9x2ab7q.5.part");
    assert!(msg.author.bot);
    let list: Vec<Message> = serde_json::from_value(
        env.get(&format!("/channels/{ch}/messages"))
            .await
            .json()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(list[0].id, msg.id);
    let channel: Channel = serde_json::from_value(
        env.get(&format!("/channels/{ch}"))
            .await
            .json()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(channel.guild().unwrap().guild_id.get(), env.emu.guild_id());
    let guild: PartialGuild = serde_json::from_value(
        env.get(&format!("/guilds/{}", env.emu.guild_id()))
            .await
            .json()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(guild.id.get(), env.emu.guild_id());
    let me: CurrentUser =
        serde_json::from_value(env.get("/users/@me").await.json().await.unwrap()).unwrap();
    assert_eq!(me.id.get(), env.emu.bot_user_id());
}
