//! Format-2 downloads and verify against the emulator: files chunked, packed and posted here,
//! brought back through Range requests of exactly their blobs; damaged packs, swapped or moved
//! chunks in file.json, truncated and deleted packs refused with nothing placed; an
//! interrupted download resumed by a second run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use dstore::catalog::{ChunkRef, FileManifest, PackRef, Status, FORMAT_V2};
use dstore::commands::{download, verify, Session};
use dstore::repo::chunker::{Chunker, ChunkerParams};
use dstore::repo::crypto::{Keys, ObjectKind, RepoId};
use dstore::repo::keys::MasterKey;
use dstore::repo::pack::PackWriter;
use dstore::store::{PartStore, PutPart};
use dstore_emulator::{FaultAction, FaultRoute};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::common::{random_bytes, Env};

const PACK_LIMIT: usize = 1024 * 1024;
const PARAMS: ChunkerParams = ChunkerParams {
    min: 16 * 1024,
    avg: 64 * 1024,
    max: 256 * 1024,
};

fn encrypted() -> Keys {
    Keys::derive(&MasterKey::random(), RepoId::random())
}

fn unencrypted() -> Keys {
    Keys::unencrypted(RepoId::random(), 7)
}

/// Random bytes with stretches of text that compresses.
fn mixed(size: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let mut i = 0u64;
    while out.len() < size {
        if (i / 8).is_multiple_of(2) {
            out.extend_from_slice(&random_bytes(16 * 1024, seed ^ i));
        } else {
            out.extend_from_slice(format!("line {i} of a log that repeats itself\n").as_bytes());
        }
        i += 1;
    }
    out.truncate(size);
    out
}

/// Chunks `data`, appends a repeat of its second chunk, packs the distinct chunks into packs
/// of at most 1 MiB, posts them and records the file (format 2, complete) with mode 0640.
async fn store_file(env: &Env, s: &Session, keys: &Keys, name: &str, data: &[u8]) -> FileManifest {
    let mut pieces: Vec<Vec<u8>> = Chunker::new(data, PARAMS, keys.chunker_seed())
        .unwrap()
        .map(|c| c.unwrap().data)
        .collect();
    if pieces.len() > 1 {
        pieces.push(pieces[1].clone());
    }
    let id = s.catalog.fresh_id();
    let channel = env.emu.channel_id();
    let store = s.store().unwrap();
    let mut packs: Vec<PackRef> = Vec::new();
    let mut placed: std::collections::HashMap<[u8; 32], ChunkRef> = Default::default();
    let mut chunks = Vec::new();
    let mut writer = PackWriter::new(keys, PACK_LIMIT);
    let post = |writer: PackWriter<'_>, n: usize| {
        let (bytes, _) = writer.finish();
        let store = store.clone();
        let filename = keys.object_name(ObjectKind::Pack, &id, n as u64);
        async move {
            let pack_id = keys.pack_id(&bytes);
            let size = bytes.len() as u64;
            let r = store
                .put_part(PutPart {
                    channel_id: channel,
                    filename,
                    nonce: format!("{:x}", rand_u64()),
                    data: Bytes::from(bytes),
                    reload: None,
                })
                .await
                .unwrap();
            PackRef {
                channel_id: r.channel_id,
                message_id: r.message_id,
                attachment_id: r.attachment_id,
                pack_id,
                size,
            }
        }
    };
    for piece in &pieces {
        let cid = keys.chunk_id(piece);
        #[allow(clippy::map_entry)] // the insert awaits a post first
        if !placed.contains_key(&cid) {
            if !writer.would_fit(piece.len()) {
                let full = std::mem::replace(&mut writer, PackWriter::new(keys, PACK_LIMIT));
                let n = packs.len();
                packs.push(post(full, n).await);
            }
            let e = *writer.add(cid, piece).unwrap();
            placed.insert(
                cid,
                ChunkRef {
                    id: cid,
                    pack: packs.len() as u32,
                    offset: e.offset,
                    sealed_len: e.sealed_len,
                    plain_len: e.plain_len,
                    flags: e.flags,
                },
            );
        }
        chunks.push(placed[&cid]);
    }
    if !writer.is_empty() {
        let n = packs.len();
        packs.push(post(writer, n).await);
    }
    let whole: Vec<u8> = pieces.concat();
    let now = OffsetDateTime::now_utc();
    let file = FileManifest {
        format: FORMAT_V2,
        id: id.clone(),
        name: name.into(),
        source_path: env.dir.path().join(name),
        size: whole.len() as u64,
        mtime: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        sha256: Some(dstore::hash::sha256_hex(&whole)),
        part_size: 0,
        layout: Vec::new(),
        channels: vec![channel],
        status: Status::Complete,
        created_at: now,
        updated_at: now,
        hidden: false,
        remote_manifest: None,
        mode: Some(0o640),
        source_stamp: None,
        entry_version: Some(1),
        packs,
        chunks,
    };
    s.catalog.save_file(&file).unwrap();
    std::fs::write(env.dir.path().join(name), &whole).unwrap();
    file
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

fn source(env: &Env, file: &FileManifest) -> Vec<u8> {
    std::fs::read(env.dir.path().join(&file.name)).unwrap()
}

fn out(env: &Env, name: &str) -> PathBuf {
    let d = env.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn get(s: &Session, keys: &Keys, id: &str, dest: &Path) -> anyhow::Result<PathBuf> {
    download::download_v2(
        s,
        keys,
        id,
        Some(dest),
        false,
        true,
        CancellationToken::new(),
    )
    .await
}

async fn check(s: &Session, keys: &Keys, file: &FileManifest, full: bool) -> anyhow::Result<()> {
    verify::verify_v2(s, keys, file, full, true, CancellationToken::new()).await
}

/// Sealed bytes of every chunk occurrence: what a download must fetch, and no more.
fn blob_bytes(file: &FileManifest) -> u64 {
    file.chunks.iter().map(|c| u64::from(c.sealed_len)).sum()
}

/// Only the destination folder's own files (no partial file, no target).
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn encrypted_and_unencrypted_files_come_back_identical_through_ranges_only() {
    let env = Env::new().await;
    let s = env.session();
    for (label, keys) in [("enc", encrypted()), ("plain", unencrypted())] {
        let mix = store_file(
            &env,
            &s,
            &keys,
            &format!("{label}-mixed.bin"),
            &mixed(2_600_000, 3),
        )
        .await;
        let random = store_file(
            &env,
            &s,
            &keys,
            &format!("{label}-random.bin"),
            &random_bytes(1_500_000, 9),
        )
        .await;
        assert!(mix.packs.len() >= 2, "the file spans several packs");
        assert!(
            mix.chunks.iter().any(|c| c.flags & 1 == 1),
            "some chunks compressed"
        );
        assert!(
            random.chunks.iter().all(|c| c.flags == 0),
            "random data stays raw"
        );
        for file in [&mix, &random] {
            let dir = out(&env, &format!("out-{label}-{}", file.id));
            let before = env.emu.stats();
            let got = get(&s, &keys, &file.id, &dir).await.unwrap();
            let after = env.emu.stats();
            assert_eq!(got, dir.join(&file.name));
            assert_eq!(std::fs::read(&got).unwrap(), source(&env, file), "{label}");
            let meta = std::fs::metadata(&got).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o640);
            assert_eq!(
                meta.modified().unwrap(),
                std::time::SystemTime::from(file.mtime)
            );
            assert_eq!(names_in(&dir), vec![file.name.clone()], "no partial left");
            let downloads = after.cdn_downloads - before.cdn_downloads;
            assert_eq!(
                after.cdn_ranged - before.cdn_ranged,
                downloads,
                "Range requests only"
            );
            assert_eq!(
                after.cdn_bytes - before.cdn_bytes,
                blob_bytes(file),
                "only the blobs' bytes"
            );
            assert!(
                downloads < file.chunks.len() as u64,
                "adjacent chunks share a request"
            );
            // Each pack's message asked once.
            assert_eq!(
                after.status(200) - before.status(200),
                file.packs.len() as u64,
                "one message lookup per pack"
            );
        }
        let dir = out(&env, &format!("out-{label}-{}", mix.id));
        let e = get(&s, &keys, &mix.id, &dir).await.unwrap_err().to_string();
        assert!(e.contains("already exists") && e.contains("--force"), "{e}");
        download::download_v2(
            &s,
            &keys,
            &mix.id,
            Some(&dir),
            true,
            true,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn an_empty_file_and_verify_of_a_sound_file() {
    let env = Env::new().await;
    let s = env.session();
    let keys = encrypted();
    let empty = store_file(&env, &s, &keys, "empty.bin", &[]).await;
    let dir = out(&env, "o");
    let got = get(&s, &keys, &empty.id, &dir).await.unwrap();
    assert_eq!(std::fs::read(got).unwrap(), b"");
    let file = store_file(&env, &s, &keys, "v.bin", &mixed(1_800_000, 5)).await;
    let before = env.emu.stats();
    check(&s, &keys, &file, false).await.unwrap();
    assert_eq!(
        env.emu.stats().cdn_downloads,
        before.cdn_downloads,
        "no bytes fetched"
    );
    check(&s, &keys, &file, true).await.unwrap();
    assert_eq!(
        env.emu.stats().cdn_bytes - before.cdn_bytes,
        blob_bytes(&file)
    );
}

/// Downloads `file` (whose record or packs a test damaged) and returns the error, checking
/// nothing was placed.
async fn refused(env: &Env, s: &Session, keys: &Keys, file: &FileManifest) -> String {
    let dir = out(env, &format!("bad-{}", rand_u64()));
    let e = get(s, keys, &file.id, &dir).await.unwrap_err().to_string();
    assert!(!dir.join(&file.name).exists(), "nothing placed: {e}");
    e
}

#[tokio::test]
async fn a_flipped_byte_in_a_pack_fails_its_chunk_and_places_nothing() {
    let env = Env::new().await;
    let s = env.session();
    let keys = encrypted();
    let file = store_file(&env, &s, &keys, "f.bin", &random_bytes(2_000_000, 1)).await;
    let (i, c) = file
        .chunks
        .iter()
        .enumerate()
        .find(|(_, c)| c.pack == 1)
        .unwrap();
    let att = file.packs[1].attachment_id;
    let mut bytes = env.emu.attachment_bytes(att).unwrap();
    bytes[(c.offset + u64::from(c.sealed_len) / 2) as usize] ^= 1;
    assert!(env.emu.replace_attachment_bytes(att, &bytes));
    let e = refused(&env, &s, &keys, &file).await;
    let start: u64 = file.chunks[..i]
        .iter()
        .map(|c| u64::from(c.plain_len))
        .sum();
    let want = format!(
        "chunk {i} (bytes {start}..{}) of {} failed its check: the pack was altered or is not this file's",
        start + u64::from(c.plain_len),
        file.id
    );
    assert_eq!(e, want);
    // Without --full, verify sees the pack there with its size; --full finds the damage.
    check(&s, &keys, &file, false).await.unwrap();
    let e = check(&s, &keys, &file, true).await.unwrap_err().to_string();
    assert_eq!(e, want);
}

#[tokio::test]
async fn swapped_packs_and_moved_chunks_in_file_json_are_refused() {
    let env = Env::new().await;
    let s = env.session();
    let keys = unencrypted();
    let file = store_file(&env, &s, &keys, "f.bin", &mixed(2_600_000, 8)).await;
    let mut swapped = file.clone();
    swapped.packs.swap(0, 1);
    s.catalog.save_file(&swapped).unwrap();
    let e = refused(&env, &s, &keys, &swapped).await;
    assert!(
        e.contains("failed its check") || e.contains("is damaged"),
        "{e}"
    );

    // Chunk 2 pointed at the blob of chunk 0 (same pack, its own plaintext length kept).
    let mut moved = file.clone();
    assert_eq!(moved.chunks[2].pack, moved.chunks[0].pack);
    moved.chunks[2].offset = moved.chunks[0].offset;
    moved.chunks[2].sealed_len = moved.chunks[0].sealed_len;
    s.catalog.save_file(&moved).unwrap();
    let e = refused(&env, &s, &keys, &moved).await;
    assert!(
        e.starts_with("chunk 2 (bytes ") && e.contains("failed its check"),
        "{e}"
    );
}

type Edit = Box<dyn Fn(&mut FileManifest)>;

#[tokio::test]
async fn damaged_records_send_no_request() {
    let env = Env::new().await;
    let s = env.session();
    let keys = encrypted();
    let file = store_file(&env, &s, &keys, "f.bin", &random_bytes(1_200_000, 4)).await;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|f| f.packs[0].size = 1000),
            "which has only 1000 bytes",
        ),
        (Box::new(|f| f.chunks[0].pack = 99), "names pack 99"),
        (Box::new(|f| f.chunks[0].plain_len += 1), "but the file has"),
        (
            Box::new(|f| f.packs[0].channel_id = 42),
            "not one of the configured channels",
        ),
    ];
    for (edit, want) in cases {
        let mut bad = file.clone();
        edit(&mut bad);
        s.catalog.save_file(&bad).unwrap();
        let before = env.emu.stats().requests;
        let e = refused(&env, &s, &keys, &bad).await;
        assert!(e.contains(want) && e.contains("is damaged"), "{e}");
        assert_eq!(env.emu.stats().requests, before, "no request for {want}");
    }
}

#[tokio::test]
async fn a_truncated_or_deleted_pack_is_named() {
    let env = Env::new().await;
    let s = env.session();
    let keys = encrypted();
    let file = store_file(&env, &s, &keys, "f.bin", &random_bytes(2_200_000, 6)).await;
    let p = &file.packs[1];
    let bytes = env.emu.attachment_bytes(p.attachment_id).unwrap();
    env.emu
        .replace_attachment_bytes(p.attachment_id, &bytes[..bytes.len() - 1000]);
    let e = refused(&env, &s, &keys, &file).await;
    assert!(
        e.contains(&format!(
            "pack 1 of this file ({}) changed on Discord",
            file.id
        )) && e.contains(&format!("{} were recorded", p.size)),
        "{e}"
    );
    assert!(check(&s, &keys, &file, false).await.is_err());
    env.emu.replace_attachment_bytes(p.attachment_id, &bytes);

    let gone = &file.packs[2];
    assert!(env.emu.delete_message(gone.channel_id, gone.message_id));
    let e = refused(&env, &s, &keys, &file).await;
    let want = format!(
        "pack 2 of this file ({}) is gone from Discord; the file cannot be rebuilt from it",
        file.id
    );
    assert_eq!(e, want);
    let e = check(&s, &keys, &file, false)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(e, want);
}

#[tokio::test]
async fn an_interrupted_download_resumes_without_fetching_again_what_it_has() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.set_concurrency(1);
        c.retries = 1;
        c.retry_base = Duration::from_millis(1);
    });
    let keys = encrypted();
    let file = store_file(&env, &s, &keys, "f.bin", &random_bytes(3_000_000, 2)).await;
    let dir = out(&env, "o");
    // One range comes through, then the CDN fails every request until the run gives up.
    assert!(file.packs.len() >= 3);
    env.fault(FaultRoute::Cdn, 1, 1000, FaultAction::Status(503));
    let e = get(&s, &keys, &file.id, &dir)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("run the same command again"), "{e}");
    assert!(!dir.join(&file.name).exists());
    let partial = names_in(&dir);
    assert_eq!(partial.len(), 1, "the partial file stays: {partial:?}");
    assert!(partial[0].ends_with(".dstore-partial"), "{partial:?}");
    env.emu.faults().clear();

    let before = env.emu.stats();
    let got = get(&s, &keys, &file.id, &dir).await.unwrap();
    let fetched = env.emu.stats().cdn_bytes - before.cdn_bytes;
    assert_eq!(std::fs::read(&got).unwrap(), source(&env, &file));
    assert!(
        fetched < blob_bytes(&file),
        "{fetched} of {} fetched again",
        blob_bytes(&file)
    );
    assert!(fetched > 0);
    assert_eq!(names_in(&dir), vec![file.name.clone()]);
}

#[tokio::test]
async fn a_chunk_damaged_in_the_partial_file_is_fetched_again() {
    let env = Env::new().await;
    let s = env.session();
    let keys = encrypted();
    let file = store_file(&env, &s, &keys, "f.bin", &random_bytes(1_000_000, 12)).await;
    let dir = out(&env, "o");
    let target = dir.join(&file.name);
    // A partial file from an earlier run: right except for one byte.
    let partial = dstore::transfer::download::partial_path(&target, &file.id);
    let mut bytes = source(&env, &file);
    bytes[500_000] ^= 0xff;
    std::fs::write(&partial, &bytes).unwrap();
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = env.emu.stats();
    get(&s, &keys, &file.id, &dir).await.unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), source(&env, &file));
    let after = env.emu.stats();
    assert_eq!(
        after.cdn_downloads - before.cdn_downloads,
        1,
        "only the damaged range"
    );
    assert!(after.cdn_bytes - before.cdn_bytes <= 8 * 1024 * 1024);
}

#[tokio::test]
async fn an_expired_url_is_refreshed_through_the_packs_message() {
    let env = Env::with(|c| {
        c.rate_limits = None;
        c.cdn_url_ttl = Duration::from_secs(1);
    })
    .await;
    let s = env.session_with(|c| c.set_concurrency(1));
    let keys = encrypted();
    let file = store_file(&env, &s, &keys, "f.bin", &random_bytes(600_000, 21)).await;
    // The CDN answers the first range only after its signed URL has expired.
    env.fault(
        FaultRoute::Cdn,
        0,
        1,
        FaultAction::Stall(Duration::from_millis(2100)),
    );
    let before = env.emu.stats();
    let got = get(&s, &keys, &file.id, &out(&env, "o")).await.unwrap();
    assert_eq!(std::fs::read(got).unwrap(), source(&env, &file));
    let after = env.emu.stats();
    assert!(
        after.status(404) > before.status(404),
        "the expired URL was refused"
    );
}

#[tokio::test]
async fn a_cdn_answering_with_the_whole_pack_is_cut_to_the_range() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.set_concurrency(1));
    let keys = unencrypted();
    let file = store_file(&env, &s, &keys, "f.bin", &random_bytes(1_500_000, 30)).await;
    env.fault(FaultRoute::Cdn, 0, 2, FaultAction::IgnoreRange);
    let before = env.emu.stats();
    let got = get(&s, &keys, &file.id, &out(&env, "o")).await.unwrap();
    assert_eq!(std::fs::read(got).unwrap(), source(&env, &file));
    let after = env.emu.stats();
    assert_eq!(
        after.cdn_downloads - after.cdn_ranged,
        before.cdn_downloads - before.cdn_ranged + 2
    );
}

/// Raw chunks are opened straight into the file's write buffer: a range damaged in transit is
/// fetched again and the file comes back whole, and a chunk damaged on Discord fails with the
/// partial file holding the checked chunks before it and nothing of the damaged one (decrypted,
/// it would be the plaintext with one byte changed).
#[tokio::test]
async fn damage_in_transit_is_fetched_again_and_unchecked_bytes_never_land() {
    let env = Env::new().await;
    let s = env.session();
    let keys = encrypted();
    let data = random_bytes(3_000_000, 21);
    let file = store_file(&env, &s, &keys, "f.bin", &data).await;
    let data = source(&env, &file);
    assert!(file.chunks.iter().all(|c| c.flags == 0), "stored raw");
    let before = env.emu.stats();
    let clean = get(&s, &keys, &file.id, &out(&env, "clean")).await.unwrap();
    assert!(std::fs::read(&clean).unwrap() == data);
    let requests = env.emu.stats().cdn_downloads - before.cdn_downloads;

    env.fault(FaultRoute::Cdn, 2, 1, FaultAction::CorruptBytes);
    let before = env.emu.stats();
    let got = get(&s, &keys, &file.id, &out(&env, "again")).await.unwrap();
    assert!(std::fs::read(&got).unwrap() == data);
    assert_eq!(
        env.emu.stats().cdn_downloads - before.cdn_downloads,
        requests + 1,
        "the damaged range alone was fetched again"
    );

    // A chunk in the middle damaged on Discord, every fetch.
    let (i, c) = file
        .chunks
        .iter()
        .enumerate()
        .find(|(i, c)| *i > 8 && c.pack == 1)
        .unwrap();
    let att = file.packs[1].attachment_id;
    let mut bytes = env.emu.attachment_bytes(att).unwrap();
    bytes[(c.offset + u64::from(c.sealed_len) / 2) as usize] ^= 1;
    assert!(env.emu.replace_attachment_bytes(att, &bytes));
    let dir = out(&env, "bad");
    let e = get(&s, &keys, &file.id, &dir)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("chunk {i} ")), "{e}");
    let partial = dstore::transfer::download::partial_path(&dir.join(&file.name), &file.id);
    let held = std::fs::read(&partial).unwrap();
    let start: usize = file.chunks[..i].iter().map(|c| c.plain_len as usize).sum();
    let end = start + c.plain_len as usize;
    let pack0_end: usize = file
        .chunks
        .iter()
        .take_while(|c| c.pack == 0)
        .map(|c| c.plain_len as usize)
        .sum();
    assert!(pack0_end > 0 && pack0_end <= start);
    assert!(
        held[..pack0_end] == data[..pack0_end],
        "checked chunks kept"
    );
    let same = held[start..end.min(held.len())]
        .iter()
        .zip(&data[start..end])
        .filter(|(a, b)| a == b)
        .count();
    assert!(
        same < (end - start) / 8,
        "{same} of {} bytes of the damaged chunk landed",
        end - start
    );
}
