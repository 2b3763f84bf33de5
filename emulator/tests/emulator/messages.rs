//! Create (multipart, limits, nonce), list, get, delete and bulk delete.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{bytes, id, start, start_with};

#[tokio::test]
async fn multipart_create_round_trips_through_the_cdn() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let data = bytes(300_000, 1);
    let payload = json!({"content": "dstore/1 k3f9x2ab7q 5 52428800 10485760", "nonce": "k3f9x2ab7q.5", "enforce_nonce": true,
        "attachments": [{"id": 0, "filename": "k3f9x2ab7q.5.part"}]});
    let resp = env
        .post_files(ch, payload, &[("ignored.bin", data.clone())])
        .await;
    assert_eq!(resp.status(), 200);
    let msg: Value = resp.json().await.unwrap();
    assert_eq!(msg["nonce"], "k3f9x2ab7q.5");
    assert_eq!(id(&msg["channel_id"]), ch);
    let att = &msg["attachments"][0];
    assert_eq!(att["filename"], "k3f9x2ab7q.5.part");
    assert_eq!(att["size"], 300_000);
    assert_eq!(att["content_type"], "application/octet-stream");
    assert_eq!(att["url"], att["proxy_url"]);
    let url = att["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/attachments/{ch}/", env.emu.base_url())) && url.ends_with('&')
    );
    let got = env.http.get(url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-length"], "300000");
    assert_eq!(got.bytes().await.unwrap().to_vec(), data);
    assert_eq!(env.emu.attachment_bytes(id(&att["id"])).unwrap(), data);
    let info = &env.emu.messages(ch)[0];
    assert_eq!(info.nonce.as_deref(), Some("k3f9x2ab7q.5"));
    assert_eq!(env.emu.stats().messages_created, 1);
}

#[tokio::test]
async fn several_files_in_any_order_and_plain_json() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let payload = json!({"attachments": [{"id": "1", "filename": "b.part"}, {"id": 0, "filename": "a.part", "description": null}], "tts": false, "embeds": [], "sticker_ids": []});
    let resp = env
        .post_files(ch, payload, &[("x", vec![1; 10]), ("y", vec![2; 20])])
        .await;
    let msg: Value = resp.json().await.unwrap();
    let names: Vec<&str> = msg["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.part", "b.part"]);
    let resp = env
        .post_json(
            &format!("/channels/{ch}/messages"),
            json!({"content": "text only"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["attachments"],
        json!([])
    );
}

#[tokio::test]
async fn ten_attachments_in_one_message_each_on_the_cdn_and_one_nonce_for_them_all() {
    let env = start().await;
    let (ch, guild) = (env.emu.channel_id(), env.emu.guild_id());
    // Each file may be as large as the limit; together they are ten times that.
    env.emu.set_upload_limit(guild, Some(1000));
    let names: Vec<String> = (0..10).map(|i| format!("e{i}.bin")).collect();
    let files: Vec<(&str, Vec<u8>)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), bytes(1000 - i, i as u8)))
        .collect();
    let listed: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"id": i, "filename": n}))
        .collect();
    let payload = json!({"nonce": "batch-1", "enforce_nonce": true, "attachments": listed});
    let first: Value = env
        .post_files(ch, payload.clone(), &files)
        .await
        .json()
        .await
        .unwrap();
    let atts = first["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), 10);
    for (a, (name, data)) in atts.iter().zip(&files) {
        assert_eq!(a["filename"], *name);
        assert_eq!(a["size"], data.len());
        let got = env
            .http
            .get(a["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(got.bytes().await.unwrap().to_vec(), *data);
    }
    let mut ids: Vec<u64> = atts.iter().map(|a| id(&a["id"])).collect();
    ids.dedup();
    assert_eq!(ids.len(), 10, "each attachment has its own ID");
    // A retry of the whole message with its nonce gets the first one back, every attachment.
    let again: Value = env
        .post_files(ch, payload, &files)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], first["id"]);
    // The same attachments (their URLs are signed afresh, so may differ).
    let shape = |m: &Value| -> Vec<(Value, Value, Value)> {
        m["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["id"].clone(), a["filename"].clone(), a["size"].clone()))
            .collect()
    };
    assert_eq!(shape(&again), shape(&first));
    assert_eq!(env.emu.messages(ch).len(), 1);
    assert_eq!(env.emu.messages(ch)[0].attachments.len(), 10);
}

#[tokio::test]
async fn upload_limit_is_per_file_and_inclusive() {
    let env = start().await;
    let (ch, guild) = (env.emu.channel_id(), env.emu.guild_id());
    env.emu.set_upload_limit(guild, Some(1000));
    let resp = env
        .post_files(ch, json!({}), &[("a", vec![0; 1000]), ("b", vec![0; 1000])])
        .await;
    assert_eq!(resp.status(), 200);
    let resp = env.post_files(ch, json!({}), &[("a", vec![0; 1001])]).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"message": "Request entity too large", "code": 40005})
    );
    assert_eq!(env.emu.messages(ch).len(), 1);
    env.emu.set_upload_limit(guild, None);
    let resp = env
        .post_files(ch, json!({}), &[("a", vec![0; 10_485_761])])
        .await;
    assert_eq!(resp.status(), 413, "tier 0 default is 10 MiB");
    env.emu.set_premium_tier(guild, 2);
    let resp = env
        .post_files(ch, json!({}), &[("a", vec![0; 10_485_761])])
        .await;
    assert_eq!(resp.status(), 200, "tier 2 allows 50 MB");
}

#[tokio::test]
async fn whole_request_cap_when_configured() {
    let env = start_with(|c| {
        c.rate_limits = None;
        c.max_request_bytes = Some(1500);
    })
    .await;
    let resp = env
        .post_files(
            env.emu.channel_id(),
            json!({}),
            &[("a", vec![0; 1000]), ("b", vec![0; 1000])],
        )
        .await;
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn form_errors() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let eleven: Vec<(&str, Vec<u8>)> = (0..11).map(|_| ("f", vec![1])).collect();
    let resp = env.post_files(ch, json!({}), &eleven).await;
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.json::<Value>().await.unwrap()["code"].clone()
        ),
        (400, json!(30015))
    );
    let cases = [
        (json!({"content": ""}), 50006),
        (json!({"content": "x".repeat(2001)}), 50035),
        (json!({"content": "x", "nonce": "n".repeat(26)}), 50035),
    ];
    for (body, code) in cases {
        let resp = env
            .post_json(&format!("/channels/{ch}/messages"), body)
            .await;
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], code);
    }
    let ok = env
        .post_json(
            &format!("/channels/{ch}/messages"),
            json!({"content": "é".repeat(2000)}),
        )
        .await;
    assert_eq!(ok.status(), 200, "2000 characters, not bytes");
    assert_eq!(env.emu.messages(ch).len(), 1);
}

#[tokio::test]
async fn enforce_nonce_returns_the_existing_message() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let payload = json!({"content": "part", "nonce": "abc.1", "enforce_nonce": true});
    let first: Value = env
        .post_files(ch, payload.clone(), &[("a.part", vec![1; 50])])
        .await
        .json()
        .await
        .unwrap();
    let second: Value = env
        .post_files(ch, payload, &[("a.part", vec![1; 50])])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(
        first["attachments"][0]["id"],
        second["attachments"][0]["id"]
    );
    assert_eq!(env.emu.messages(ch).len(), 1);
    // Integer nonce 7 and string "7" are the same nonce; without enforce_nonce there is no dedupe.
    let a: Value = env
        .post_json(
            &format!("/channels/{ch}/messages"),
            json!({"content": "x", "nonce": 7, "enforce_nonce": true}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a["nonce"], 7);
    let b: Value = env
        .post_json(
            &format!("/channels/{ch}/messages"),
            json!({"content": "x", "nonce": "7", "enforce_nonce": true}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a["id"], b["id"]);
    let c: Value = env
        .post_json(
            &format!("/channels/{ch}/messages"),
            json!({"content": "x", "nonce": "7"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(a["id"], c["id"]);
    // Another channel does not share nonces.
    let other = env.emu.add_channel(env.emu.guild_id());
    let d: Value = env
        .post_json(
            &format!("/channels/{other}/messages"),
            json!({"content": "x", "nonce": "7", "enforce_nonce": true}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(a["id"], d["id"]);
}

#[tokio::test]
async fn nonce_window_expires() {
    let env = start_with(|c| {
        c.rate_limits = None;
        c.nonce_window = Duration::from_millis(200);
    })
    .await;
    let path = format!("/channels/{}/messages", env.emu.channel_id());
    let body = json!({"content": "x", "nonce": "n", "enforce_nonce": true});
    let a: Value = env
        .post_json(&path, body.clone())
        .await
        .json()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b: Value = env.post_json(&path, body).await.json().await.unwrap();
    assert_ne!(a["id"], b["id"]);
}

async fn post_n(env: &crate::common::Env, n: usize) -> Vec<u64> {
    let path = format!("/channels/{}/messages", env.emu.channel_id());
    let mut ids = Vec::new();
    for i in 0..n {
        let m: Value = env
            .post_json(&path, json!({"content": format!("m{i}")}))
            .await
            .json()
            .await
            .unwrap();
        ids.push(id(&m["id"]));
    }
    ids
}

fn ids_of(list: &Value) -> Vec<u64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| id(&m["id"]))
        .collect()
}

#[tokio::test]
async fn list_pages_newest_first() {
    let env = start().await;
    let ids = post_n(&env, 7).await;
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "snowflakes increase");
    let base = format!("/channels/{}/messages", env.emu.channel_id());
    let get = |q: String| {
        let env = &env;
        let base = base.clone();
        async move {
            ids_of(
                &env.get(&format!("{base}{q}"))
                    .await
                    .json::<Value>()
                    .await
                    .unwrap(),
            )
        }
    };
    let rev = |v: &[u64]| v.iter().rev().copied().collect::<Vec<_>>();
    assert_eq!(get(String::new()).await, rev(&ids));
    assert_eq!(get("?&limit=3".into()).await, rev(&ids[4..]));
    assert_eq!(
        get(format!("?&limit=2&before={}", ids[4])).await,
        rev(&ids[2..4])
    );
    assert_eq!(
        get(format!("?&limit=2&after={}", ids[1])).await,
        rev(&ids[2..4])
    );
    assert_eq!(get(format!("?after={}", ids[5])).await, vec![ids[6]]);
    assert_eq!(
        get(format!("?around={}&limit=3", ids[3])).await,
        rev(&ids[2..5])
    );
    for bad in ["?limit=0", "?limit=101", "?before=abc"] {
        assert_eq!(
            env.get(&format!("{base}{bad}")).await.status(),
            400,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn get_message_signs_urls_afresh() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let msg = env.upload(ch, "a.part", vec![5; 10]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again: Value = env
        .get(&format!("/channels/{ch}/messages/{}", id(&msg["id"])))
        .await
        .json()
        .await
        .unwrap();
    let (old, new) = (
        msg["attachments"][0]["url"].as_str().unwrap(),
        again["attachments"][0]["url"].as_str().unwrap(),
    );
    assert_ne!(old, new, "new is/ex/hm");
    assert_eq!(old.split('?').next(), new.split('?').next());
    for url in [old, new] {
        assert_eq!(env.http.get(url).send().await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn delete_then_404_everywhere() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let msg = env.upload(ch, "a.part", vec![5; 10]).await;
    let path = format!("/channels/{ch}/messages/{}", id(&msg["id"]));
    let resp = env.delete(&path).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        env.get(&path).await.json::<Value>().await.unwrap(),
        json!({"message": "Unknown Message", "code": 10008})
    );
    let resp = env.delete(&path).await;
    assert_eq!(resp.status(), 404);
    let cdn = env
        .http
        .get(msg["attachments"][0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(cdn.status(), 404);
    assert_eq!(
        cdn.text().await.unwrap(),
        "This content is no longer available."
    );
    // A moderator deletion looks the same.
    let msg = env.upload(ch, "b.part", vec![5; 10]).await;
    assert!(env.emu.delete_message(ch, id(&msg["id"])));
    assert!(!env.emu.delete_message(ch, id(&msg["id"])));
    assert_eq!(
        env.http
            .get(msg["attachments"][0]["url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn bulk_delete_rules() {
    let env = start().await;
    let ch = env.emu.channel_id();
    let ids = post_n(&env, 4).await;
    let path = format!("/channels/{ch}/messages/bulk-delete");
    let s = |v: &[u64]| json!({"messages": v.iter().map(|i| i.to_string()).collect::<Vec<_>>()});
    let code = |resp: reqwest::Response| async move {
        (
            resp.status().as_u16(),
            resp.json::<Value>().await.unwrap()["code"].clone(),
        )
    };
    assert_eq!(
        code(env.post_json(&path, s(&ids[..1])).await).await,
        (400, json!(50016))
    );
    assert_eq!(
        code(env.post_json(&path, s(&[1; 101])).await).await,
        (400, json!(50016))
    );
    assert_eq!(
        code(env.post_json(&path, s(&[ids[0], ids[0]])).await).await,
        (400, json!(50034))
    );
    env.emu
        .age_message(ch, ids[1], Duration::from_secs(15 * 24 * 3600));
    assert_eq!(
        code(env.post_json(&path, s(&ids[..2])).await).await,
        (400, json!(50034))
    );
    assert_eq!(env.emu.messages(ch).len(), 4, "nothing deleted on error");
    // A missing id counts toward the minimum and is skipped.
    assert_eq!(
        env.post_json(&path, s(&[ids[2], 12345])).await.status(),
        204
    );
    assert_eq!(
        env.post_json(&path, s(&[ids[0], ids[3]])).await.status(),
        204
    );
    let left: Vec<u64> = env.emu.messages(ch).iter().map(|m| m.id).collect();
    assert_eq!(left, vec![ids[1]]);
}
