//! The catalogue on Discord: manifests posted on completion, `recover` into an empty data dir,
//! re-runs, and manifests from a newer dstore.

use dstore::catalog::remote::RemoteManifest;
use dstore::commands::recover;
use dstore::store::{PartStore, PutPart};
use tokio_util::sync::CancellationToken;

use crate::common::{round_trip, Env, PART};
use crate::download::get;

#[tokio::test]
async fn recover_rebuilds_the_catalogue_and_every_file_downloads() {
    let env = Env::new().await;
    let s = env.session();
    let sizes = [0usize, 5, 3 * PART as usize + 1];
    let mut ids = Vec::new();
    for size in sizes {
        ids.push(round_trip(&env, &s, size).await.id);
    }
    // The posted manifest holds no secret and no local path.
    for msg in env.emu.messages(env.emu.channel_id()) {
        for a in msg
            .attachments
            .iter()
            .filter(|a| a.filename.ends_with(".manifest.json"))
        {
            let text = String::from_utf8(env.emu.attachment_bytes(a.id).unwrap()).unwrap();
            assert!(!text.contains(&env.emu.token()));
            assert!(!text.contains(env.dir.path().to_str().unwrap()), "{text}");
            RemoteManifest::parse(text.as_bytes()).unwrap();
        }
    }

    let fresh = env.session_with(|c| c.data_dir = env.dir.path().join("new-machine"));
    let n = recover::recover(&fresh, true, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(n, 3);
    let mut got = fresh.catalog.ids();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    let out = env.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    for (id, size) in ids.iter().zip(sizes) {
        let name = s.catalog.load_file(id).unwrap().name;
        let path = get(&fresh, id, &out, false).await.unwrap();
        assert_eq!(path, out.join(&name));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(env.dir.path().join(&name)).unwrap(),
            "size {size}"
        );
    }
    assert_eq!(
        recover::recover(&fresh, true, CancellationToken::new())
            .await
            .unwrap(),
        0,
        "re-run is safe"
    );
}

#[tokio::test]
async fn a_newer_manifest_is_reported_not_guessed() {
    let env = Env::new().await;
    let s = env.session();
    round_trip(&env, &s, 10).await;
    let store = s.store().unwrap();
    store
        .put_part(PutPart {
            channel_id: env.emu.channel_id(),
            filename: "abcdefghjk.manifest.json".into(),
            nonce: "x1".into(),
            data: br#"{"format": 99, "id": "abcdefghjk"}"#.to_vec().into(),
            reload: None,
        })
        .await
        .unwrap();
    let fresh = env.session_with(|c| c.data_dir = env.dir.path().join("new-machine"));
    let err = recover::recover(&fresh, false, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 catalogue entry"), "{err}");
    assert_eq!(
        fresh.catalog.ids().len(),
        1,
        "the readable one was still recovered"
    );
    assert!(!fresh.catalog.contains("abcdefghjk"));
}

#[tokio::test]
async fn recover_pages_back_through_long_channel_history() {
    let env = Env::new().await;
    let s = env.session();
    let buried = round_trip(&env, &s, 10).await;
    // 150 newer messages push the first manifest past the first page of 100.
    let small = env.session_with(|c| c.part_size = dstore::config::PartSize::Fixed(1024));
    let recent = round_trip(&env, &small, 150 * 1024).await;
    assert!(env.emu.messages(env.emu.channel_id()).len() > 150);
    let fresh = env.session_with(|c| c.data_dir = env.dir.path().join("new-machine"));
    let n = recover::recover(&fresh, true, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(fresh.catalog.contains(&buried.id) && fresh.catalog.contains(&recent.id));
}
