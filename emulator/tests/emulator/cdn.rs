//! Signed URLs, expiry, Range and HEAD on the CDN routes.

use std::time::Duration;

use serde_json::Value;

use crate::common::{bytes, start, start_with};

fn url_of(msg: &Value) -> String {
    msg["attachments"][0]["url"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn expired_url_is_gone() {
    let env = start_with(|c| {
        c.rate_limits = None;
        c.cdn_url_ttl = Duration::from_secs(1);
    })
    .await;
    let url = url_of(
        &env.upload(env.emu.channel_id(), "a.part", vec![1; 10])
            .await,
    );
    assert_eq!(env.http.get(&url).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = env.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.text().await.unwrap(), dstore_emulator::CDN_GONE_BODY);
}

#[tokio::test]
async fn forged_or_unknown_urls_are_gone() {
    let env = start().await;
    let url = url_of(
        &env.upload(env.emu.channel_id(), "a.part", vec![1; 10])
            .await,
    );
    let hm = url.split("hm=").nth(1).unwrap().trim_end_matches('&');
    let mut forged_hm = hm.to_string();
    forged_hm.replace_range(0..1, if hm.starts_with('0') { "1" } else { "0" });
    let bad = [
        url.replace(hm, &forged_hm),
        url.replace("a.part", "b.part"),
        url.split('?').next().unwrap().to_string(),
        format!(
            "{}/attachments/1/2/x?ex=ffffffff&is=0&hm=00&",
            env.emu.base_url()
        ),
    ];
    for u in bad {
        assert_eq!(env.http.get(&u).send().await.unwrap().status(), 404, "{u}");
    }
}

#[tokio::test]
async fn ranges_and_head() {
    let env = start().await;
    let data = bytes(1000, 9);
    let url = url_of(
        &env.upload(env.emu.channel_id(), "a.part", data.clone())
            .await,
    );
    let range = |spec: &'static str| {
        let (env, url) = (&env, url.clone());
        async move {
            env.http
                .get(url)
                .header("range", spec)
                .send()
                .await
                .unwrap()
        }
    };
    let r = range("bytes=10-19").await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/1000");
    assert_eq!(r.headers()["content-length"], "10");
    assert_eq!(r.bytes().await.unwrap().to_vec(), data[10..20]);
    let r = range("bytes=990-").await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data[990..]);
    let r = range("bytes=-5").await;
    assert_eq!(r.headers()["content-range"], "bytes 995-999/1000");
    assert_eq!(r.bytes().await.unwrap().to_vec(), data[995..]);
    let r = range("bytes=1000-").await;
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */1000");
    let head = env.http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "1000");
    assert_eq!(head.headers()["content-type"], "application/octet-stream");
    assert_eq!(head.headers()["accept-ranges"], "bytes");
}

#[tokio::test]
async fn refresh_urls_re_signs() {
    let env = start().await;
    let url = url_of(
        &env.upload(env.emu.channel_id(), "a.part", vec![1; 10])
            .await,
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let body = serde_json::json!({"attachment_urls": [url, "https://example.com/nope"]});
    let resp: Value = env
        .post_json("/attachments/refresh-urls", body)
        .await
        .json()
        .await
        .unwrap();
    let list = resp["refreshed_urls"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["original"], url.as_str());
    let fresh = list[0]["refreshed"].as_str().unwrap();
    assert_ne!(fresh, url);
    assert_eq!(env.http.get(fresh).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn downloads_and_their_bytes_are_counted() {
    let env = start().await;
    let url = url_of(
        &env.upload(env.emu.channel_id(), "a.part", bytes(1000, 3))
            .await,
    );
    let before = env.emu.stats();
    let get = |range: Option<&'static str>| {
        let mut req = env.http.get(&url);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        async move { req.send().await.unwrap().bytes().await.unwrap() }
    };
    get(Some("bytes=100-199")).await;
    get(None).await;
    env.http.head(&url).send().await.unwrap();
    let after = env.emu.stats();
    assert_eq!(after.cdn_downloads - before.cdn_downloads, 2);
    assert_eq!(after.cdn_ranged - before.cdn_ranged, 1);
    assert_eq!(after.cdn_bytes - before.cdn_bytes, 1100);
}

#[tokio::test]
async fn replaced_bytes_are_served_and_listed_with_their_size() {
    let env = start().await;
    let msg = env
        .upload(env.emu.channel_id(), "a.part", bytes(1000, 4))
        .await;
    let id: u64 = msg["attachments"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(env.emu.replace_attachment_bytes(id, &[7; 600]));
    assert!(!env.emu.replace_attachment_bytes(id + 1000, &[7; 6]));
    assert_eq!(env.emu.attachment(id).unwrap().size, 600);
    let mid = msg["id"].as_str().unwrap();
    let fresh: Value = env
        .get(&format!(
            "/channels/{}/messages/{mid}",
            env.emu.channel_id()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fresh["attachments"][0]["size"], 600);
    let body = env.http.get(url_of(&fresh)).send().await.unwrap();
    assert_eq!(body.bytes().await.unwrap().to_vec(), vec![7; 600]);
}
