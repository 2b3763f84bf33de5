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

/// serenity's own client, pointed at the emulator the way dstore points it (discord-api.md §5.1).
#[tokio::test]
async fn serenity_http_client_round_trip() {
    use serenity::builder::{CreateAttachment, CreateMessage, GetMessages};
    use serenity::http::HttpBuilder;
    use serenity::model::channel::Nonce;
    use serenity::model::id::ChannelId;

    let env = start().await;
    let http = HttpBuilder::new(env.emu.token())
        .proxy(env.emu.base_url())
        .ratelimiter_disabled(true)
        .build();
    let channel = ChannelId::new(env.emu.channel_id());
    let data = vec![9u8; 5000];
    let send = || {
        let msg = CreateMessage::new()
            .content("dstore/1 k3f9x2ab7q 5 52428800 10485760")
            .nonce(Nonce::String("k3f9x2ab7q.5".into()))
            .enforce_nonce(true)
            .add_file(CreateAttachment::bytes(data.clone(), "k3f9x2ab7q.5.part"));
        channel.send_message(&http, msg)
    };
    let sent = send().await.unwrap();
    assert_eq!(
        send().await.unwrap().id,
        sent.id,
        "nonce dedupe through serenity"
    );
    let att = &sent.attachments[0];
    assert_eq!(
        (att.size, att.filename.as_str()),
        (5000, "k3f9x2ab7q.5.part")
    );
    assert_eq!(env.emu.attachment_bytes(att.id.get()).unwrap(), data);
    let fetched = channel.message(&http, sent.id).await.unwrap();
    assert_eq!(fetched.attachments[0].id, att.id);
    let page = channel
        .messages(&http, GetMessages::new().limit(100))
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(
        http.get_current_user().await.unwrap().id.get(),
        env.emu.bot_user_id()
    );
    channel.delete_message(&http, sent.id).await.unwrap();
    let err = channel.message(&http, sent.id).await.unwrap_err();
    assert!(err.to_string().contains("Unknown Message"), "{err}");
}
