//! Format 2 beside format 1, through the commands: every size class round trips; a channel
//! holding files of both formats lists, recovers and downloads both; a chunk taken from another
//! repository's pack is refused.

use dstore::cli::Command;
use dstore::commands::download::download_v2;
use dstore::commands::{init, Session};
use dstore::config::{PartSize, StorageFormat};
use dstore::repo::repository::Secrets;
use tokio_util::sync::CancellationToken;

use crate::common::{random_bytes, Env};
use crate::upload2::{put, repo, session2, text, upload2, CHUNKER};

const PASS: &str = "the passphrase of the mixed channel";

fn machine(env: &Env, data: &str, format: StorageFormat) -> Session {
    let data = env.dir.path().join(data);
    let mut s = env.session_with(|c| {
        c.data_dir = data;
        c.format = format;
        c.part_size = PartSize::Auto;
    });
    s.secrets = Secrets::given(&[("DSTORE_PASSPHRASE", PASS)]);
    s
}

/// `upload <path>` through the command, as the prompt runs it.
async fn upload_cmd(s: &Session, path: std::path::PathBuf) {
    s.run(
        Command::Upload {
            paths: vec![path],
            force: false,
            json: true,
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_size_class_round_trips_through_packs() {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let (min, max) = (CHUNKER.min as usize, CHUNKER.max as usize);
    let sizes = [
        0,
        1,
        min - 1,
        min,
        min + 1,
        max,
        max + 1,
        3 * max + 17,
        2_500_000,
    ];
    for (n, size) in sizes.into_iter().enumerate() {
        let data = if n % 2 == 0 {
            random_bytes(size, n as u64)
        } else {
            text(size, n as u64)
        };
        let path = env.dir.path().join(format!("s{size}.bin"));
        std::fs::write(&path, &data).unwrap();
        let m = upload2(&s, &r, &path).await.unwrap();
        let dest = env.dir.path().join(format!("back{size}.bin"));
        download_v2(
            &s,
            &r.keys,
            &m.id,
            Some(&dest),
            false,
            true,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data, "size {size}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_with_both_formats_lists_recovers_and_downloads_both() {
    let env = Env::new().await;
    let old = machine(&env, "m1", StorageFormat::V1);
    let a = put(&env, "old.bin", random_bytes(300_000, 1));
    upload_cmd(&old, a.clone()).await;
    // The same machine moves to format 2: a repository, then a new upload.
    let new = machine(&env, "m1", StorageFormat::V2);
    init::init(&new, false).await.unwrap();
    let b = put(&env, "new.txt", text(700_000, 2));
    upload_cmd(&new, b.clone()).await;
    let files: Vec<_> = new.catalog.all().unwrap().into_iter().flatten().collect();
    let mut formats: Vec<u32> = files.iter().map(|f| f.format).collect();
    formats.sort();
    assert_eq!(formats, vec![1, 2]);

    // Another machine: recover finds both, and both come back identical.
    let other = machine(&env, "m2", StorageFormat::V2);
    let found = dstore::commands::recover::recover(&other, true, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(found, 2);
    for f in &files {
        let dest = env.dir.path().join(format!("back-{}", f.name));
        dstore::commands::download::download(
            &other,
            &f.id,
            Some(&dest),
            false,
            true,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&f.source_path).unwrap(),
            "{}",
            f.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_from_another_repositorys_pack_is_refused() {
    let env = Env::new().await;
    let s = session2(&env);
    let (mine, theirs) = (repo(true), repo(true));
    let data = random_bytes(400_000, 5);
    let a = put(&env, "a.bin", &data);
    let b = put(&env, "b.bin", &data);
    let ma = upload2(&s, &mine, &a).await.unwrap();
    let mb = upload2(&s, &theirs, &b).await.unwrap();
    // Same bytes, other repository: a's first chunk pointed at b's copy of it in b's pack.
    let mut edited = ma.clone();
    edited
        .packs
        .push(mb.packs[mb.chunks[0].pack as usize].clone());
    edited.chunks[0] = dstore::catalog::ChunkRef {
        pack: (edited.packs.len() - 1) as u32,
        offset: mb.chunks[0].offset,
        sealed_len: mb.chunks[0].sealed_len,
        ..ma.chunks[0]
    };
    s.catalog.save_file(&edited).unwrap();
    let dest = env.dir.path().join("out.bin");
    let err = download_v2(
        &s,
        &mine.keys,
        &ma.id,
        Some(&dest),
        false,
        true,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("failed its check"), "{err:#}");
    assert!(!dest.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_index_rewrites_stale_records_and_counts_packs_no_file_uses() {
    let env = Env::new().await;
    let s = machine(&env, "m", StorageFormat::V2);
    init::init(&s, false).await.unwrap();
    for (name, seed) in [("a.bin", 1), ("b.bin", 2)] {
        let p = env.dir.path().join(name);
        std::fs::write(&p, random_bytes(1_200_000, seed)).unwrap();
        upload_cmd(&s, p).await;
    }
    let files: Vec<_> = s.catalog.all().unwrap().into_iter().flatten().collect();
    let (a, b) = if files[0].name == "a.bin" {
        (&files[0], &files[1])
    } else {
        (&files[1], &files[0])
    };
    // a's entry vanished (another machine deleted it, not its packs); b's record went stale.
    let at = a.remote_manifest.unwrap();
    s.store()
        .unwrap()
        .delete_message(at.channel_id, at.message_id)
        .await
        .unwrap();
    let mut stale = b.clone();
    stale.chunks.truncate(1);
    stale.entry_version = Some(0);
    s.catalog.save_file(&stale).unwrap();

    let r = dstore::commands::rebuild::rebuild_index(&s).await.unwrap();
    assert_eq!((r.written, r.gone.clone()), (1, vec![a.id.clone()]));
    assert_eq!(s.catalog.load_file(&b.id).unwrap().chunks, b.chunks);
    assert_eq!(
        r.orphan_packs, 0,
        "a's packs are still named by its local records"
    );
    // Forget a here too: its packs are now named by nothing.
    s.catalog.remove_file(&a.id).unwrap();
    let r = dstore::commands::rebuild::rebuild_index(&s).await.unwrap();
    assert_eq!(r.orphan_packs, a.packs.len());
    assert_eq!(r.orphan_chunks, a.chunks.len());
    assert_eq!((r.written, r.unchanged, r.unreadable), (0, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_size_too_small_for_the_largest_chunk_is_one_sentence() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.part_size = PartSize::Fixed(1024 * 1024));
    let r = dstore::commands::upload2::RepoKeys {
        chunker: dstore::repo::chunker::ChunkerParams::default(),
        ..repo(true)
    };
    let path = put(&env, "x.bin", random_bytes(100_000, 3));
    let err = format!("{:#}", upload2(&s, &r, &path).await.unwrap_err());
    assert!(
        err.contains("raise `part_size`") && !err.contains("resume"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_too_large_for_one_attachment_is_split_recovered_and_decoded() {
    let env = Env::new().await;
    let mut s = crate::upload2::session2(&env);
    s.secrets = Secrets::given(&[("DSTORE_PASSPHRASE", PASS)]);
    let opened = init::init(&s, false).await.unwrap();
    // Tiny chunks (readers never run the chunker): ~16,000 of them make an entry larger than
    // one 1 MiB attachment.
    let r = dstore::commands::upload2::RepoKeys {
        chunker: dstore::repo::chunker::ChunkerParams {
            min: 64,
            avg: 256,
            max: 1024,
        },
        keys: opened.keys.clone(),
    };
    let data = random_bytes(4_000_000, 17);
    let path = put(&env, "many.bin", &data);
    let m = upload2(&s, &r, &path).await.unwrap();
    assert!(m.chunks.len() > 12_000, "{} chunks", m.chunks.len());
    let pieces = env
        .emu
        .messages(env.emu.channel_id())
        .into_iter()
        .flat_map(|m| m.attachments)
        .filter(|a| r.keys.name_kind(&a.filename) == Some(dstore::repo::crypto::ObjectKind::Piece))
        .count();
    assert!(pieces >= 2, "{pieces} pieces");
    let fresh = env.session_with(|c| {
        c.part_size = PartSize::Fixed(crate::upload2::ATTACHMENT);
        c.data_dir = env.dir.path().join("new");
    });
    let (got, skipped) =
        dstore::commands::recover2::recover(&fresh, &r, true, CancellationToken::new())
            .await
            .unwrap();
    assert_eq!((got.len(), skipped), (1, 0));
    let back = fresh.catalog.load_file(&m.id).unwrap();
    let places = |f: &dstore::catalog::FileManifest| -> Vec<(u64, u64, [u8; 32])> {
        f.chunks
            .iter()
            .map(|c| (f.packs[c.pack as usize].attachment_id, c.offset, c.id))
            .collect()
    };
    assert!(
        places(&back) == places(&m),
        "the joined pieces name the same places"
    );
    let dest = env.dir.path().join("many.back");
    download_v2(
        &fresh,
        &r.keys,
        &m.id,
        Some(&dest),
        false,
        true,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    // The independent decoder joins the pieces too.
    let dump = env.dir.path().join("dump");
    std::fs::create_dir_all(&dump).unwrap();
    for msg in env.emu.messages(env.emu.channel_id()) {
        for a in msg.attachments {
            std::fs::write(
                dump.join(&a.filename),
                env.emu.attachment_bytes(a.id).unwrap(),
            )
            .unwrap();
        }
    }
    let out = env.dir.path().join("decoded.bin");
    let o = crate::format2::decode(&dump, &out, PASS);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counts_deduplication_compression_and_what_prune_frees() {
    let env = Env::new().await;
    let s = machine(&env, "m", StorageFormat::V2);
    init::init(&s, false).await.unwrap();
    let notes = text(2_000_000, 7);
    let upload = |name: &str, data: &[u8]| {
        let p = env.dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        Command::Upload {
            paths: vec![p],
            force: true,
            json: true,
        }
    };
    let noise = random_bytes(12_000_000, 8);
    s.run(upload("notes.txt", &notes), CancellationToken::new())
        .await
        .unwrap();
    s.run(upload("copy.txt", &notes), CancellationToken::new())
        .await
        .unwrap();
    s.run(upload("noise.bin", &noise), CancellationToken::new())
        .await
        .unwrap();
    let st = dstore::commands::stats::compute(&s).await.unwrap();
    assert_eq!((st.files_v2, st.logical_bytes), (3, 16_000_000));
    assert!(st.dedup_ratio > 1.1 && st.dedup_ratio < 1.3, "{st:?}");
    // The text shrinks by far more than a megabyte; the noise is stored raw.
    assert!(st.compression_ratio > 1.1, "{st:?}");
    assert!(
        st.unique_plain_bytes - st.unique_sealed_bytes > 1_500_000,
        "{st:?}"
    );
    assert!(st.packs >= 2 && st.unused_packs == 0, "{st:?}");
    assert!(st.garbage_bytes < 200_000, "{st:?}");
    // The noise goes with its packs; the shared text's packs stay, used.
    let id = s
        .catalog
        .all()
        .unwrap()
        .into_iter()
        .flatten()
        .find(|f| f.name == "noise.bin")
        .unwrap()
        .id;
    s.run(
        Command::Delete {
            id,
            yes: true,
            keep_remote: false,
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let after = dstore::commands::stats::compute(&s).await.unwrap();
    assert_eq!((after.files_v2, after.unused_packs), (2, 0), "{after:?}");
    assert!(after.stored_bytes < st.stored_bytes / 2, "{after:?}");
}
