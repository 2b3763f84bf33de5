//! Format-2 uploads against the emulator: packs under opaque names, one record per pack, a
//! sealed entry, deduplication within and across files, resume and adoption of unrecorded packs.

use std::collections::HashMap;
use std::time::Duration;

use dstore::catalog::{FileManifest, Status, FORMAT_V2};
use dstore::commands::upload2::{self, RepoKeys};
use dstore::commands::Session;
use dstore::config::PartSize;
use dstore::repo::chunker::ChunkerParams;
use dstore::repo::crypto::{Keys, ObjectKind, RepoId};
use dstore::repo::entry::{self, Opened};
use dstore::repo::keys::MasterKey;
use dstore::repo::pack::PackReader;
use dstore_emulator::{FaultAction, FaultRoute};
use tokio_util::sync::CancellationToken;

use crate::common::{random_bytes, Env};

/// Small chunks and 1 MiB attachments, so a few MiB make several packs.
pub const CHUNKER: ChunkerParams = ChunkerParams {
    min: 16 * 1024,
    avg: 64 * 1024,
    max: 256 * 1024,
};
pub const ATTACHMENT: u64 = 1024 * 1024;

pub fn repo(encrypted: bool) -> RepoKeys {
    let id = RepoId::random();
    RepoKeys {
        keys: if encrypted {
            Keys::derive(&MasterKey::random(), id)
        } else {
            Keys::unencrypted(id, 0x5eed)
        },
        chunker: CHUNKER,
    }
}

/// Writes `data` to `name` in the test's folder and returns its path.
pub fn put(env: &Env, name: &str, data: impl AsRef<[u8]>) -> std::path::PathBuf {
    let path = env.dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    path
}

pub fn session2(env: &Env) -> Session {
    env.session_with(|c| c.part_size = PartSize::Fixed(ATTACHMENT))
}

pub async fn upload2(
    s: &Session,
    r: &RepoKeys,
    path: &std::path::Path,
) -> anyhow::Result<FileManifest> {
    upload2::upload(s, r, path, true, CancellationToken::new()).await
}

/// Text-like bytes: words from a small vocabulary, seeded.
pub fn text(size: usize, seed: u64) -> Vec<u8> {
    let words = [
        "alpha ", "beta ", "gamma ", "delta\n", "epsilon ", "zeta, ", "eta ", "theta.\n",
    ];
    let noise = random_bytes(size / 4 + 8, seed);
    let mut out = Vec::with_capacity(size + 8);
    let mut i = 0;
    while out.len() < size {
        out.extend_from_slice(words[(noise[i % noise.len()] % 8) as usize].as_bytes());
        i += 1;
    }
    out.truncate(size);
    out
}

/// The file's bytes rebuilt from what the emulator holds, through the chunk list of file.json:
/// every chunk opened and checked from its pack.
pub fn rebuilt(env: &Env, r: &RepoKeys, m: &FileManifest) -> Vec<u8> {
    let mut packs: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut out = Vec::new();
    for c in &m.chunks {
        let p = &m.packs[c.pack as usize];
        let bytes = packs.entry(p.attachment_id).or_insert_with(|| {
            env.emu
                .attachment_bytes(p.attachment_id)
                .expect("pack on Discord")
        });
        assert_eq!(bytes.len() as u64, p.size);
        assert_eq!(r.keys.pack_id(bytes), p.pack_id);
        let reader = PackReader::open(&r.keys, bytes).unwrap();
        let at = reader
            .entries()
            .iter()
            .position(|e| e.id == c.id && e.offset == c.offset)
            .expect("chunk in its pack");
        out.extend_from_slice(&reader.chunk(at).unwrap());
    }
    out
}

fn names(env: &Env) -> Vec<String> {
    env.emu
        .messages(env.emu.channel_id())
        .into_iter()
        .flat_map(|m| m.attachments)
        .map(|a| a.filename)
        .collect()
}

/// Bytes of every pack on the channel.
fn pack_bytes(env: &Env, r: &RepoKeys) -> u64 {
    env.emu
        .messages(env.emu.channel_id())
        .into_iter()
        .flat_map(|m| m.attachments)
        .filter(|a| r.keys.name_kind(&a.filename) == Some(ObjectKind::Pack))
        .map(|a| a.size)
        .sum()
}

pub fn kinds(env: &Env, r: &RepoKeys, kind: ObjectKind) -> usize {
    names(env)
        .iter()
        .filter(|n| r.keys.name_kind(n) == Some(kind))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_stored_as_sealed_packs_and_one_entry_with_encryption_on_and_off() {
    for encrypted in [true, false] {
        let env = Env::new().await;
        let s = session2(&env);
        let r = repo(encrypted);
        let mut data = random_bytes(2_500_000, 3);
        data.extend_from_slice(&text(2_000_000, 4));
        let path = put(&env, "mixed.bin", &data);
        let m = upload2(&s, &r, &path).await.unwrap();
        assert_eq!((m.format, m.status), (FORMAT_V2, Status::Complete));
        assert_eq!(rebuilt(&env, &r, &m), data, "encrypted: {encrypted}");
        let records = s.catalog.load_packs(&m.id).unwrap();
        assert!(records.len() >= 3, "{} packs", records.len());
        assert!(records.iter().all(|p| p.size <= ATTACHMENT));
        assert_eq!(kinds(&env, &r, ObjectKind::Pack), records.len());
        assert_eq!(kinds(&env, &r, ObjectKind::Entry), 1);
        assert!(
            names(&env).iter().all(|n| r.keys.name_kind(n).is_some()),
            "every name is opaque"
        );
        // The text compressed: fewer bytes on Discord than in the file.
        let stored: u64 = records.iter().map(|p| p.size).sum();
        assert!(
            stored < data.len() as u64 * 8 / 10,
            "{stored} of {}",
            data.len()
        );
        for msg in env.emu.messages(env.emu.channel_id()) {
            assert_eq!(msg.content, "");
        }
        // The entry opens, names the file and its chunks, and matches file.json.
        let entry_msg = env
            .emu
            .messages(env.emu.channel_id())
            .into_iter()
            .find(|msg| r.keys.name_kind(&msg.attachments[0].filename) == Some(ObjectKind::Entry))
            .unwrap();
        assert_eq!(m.remote_manifest.unwrap().message_id, entry_msg.id);
        let bytes = env
            .emu
            .attachment_bytes(entry_msg.attachments[0].id)
            .unwrap();
        let Opened::Entry(e) = entry::open(&r.keys, &bytes).unwrap() else {
            panic!()
        };
        assert_eq!(
            (e.name.as_str(), e.size, e.version),
            ("mixed.bin", data.len() as u64, 1)
        );
        assert_eq!((e.packs, e.chunks), (m.packs.clone(), m.chunks.clone()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_file_sends_only_its_entry_and_an_insertion_sends_a_few_chunks() {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let data = random_bytes(6_000_000, 9);
    let a = put(&env, "a.bin", &data);
    let first = upload2(&s, &r, &a).await.unwrap();
    let packs_before = kinds(&env, &r, ObjectKind::Pack);
    let sent_before = env.emu.stats().messages_created;

    let b = put(&env, "copy.bin", &data);
    let copy = upload2(&s, &r, &b).await.unwrap();
    assert_ne!(copy.id, first.id);
    assert_eq!(
        env.emu.stats().messages_created - sent_before,
        1,
        "only the entry"
    );
    assert_eq!(kinds(&env, &r, ObjectKind::Pack), packs_before);
    assert_eq!(rebuilt(&env, &r, &copy), data);

    // 100 KB inserted in the middle: the chunks around it are new, the rest is found.
    let mut edited = data[..3_000_000].to_vec();
    edited.extend_from_slice(&random_bytes(100_000, 77));
    edited.extend_from_slice(&data[3_000_000..]);
    let c = put(&env, "edited.bin", &edited);
    let sent_before = pack_bytes(&env, &r);
    let m = upload2(&s, &r, &c).await.unwrap();
    let sent = pack_bytes(&env, &r) - sent_before;
    assert!(sent < 900_000, "{sent} bytes sent for a 100 KB insertion");
    assert_eq!(rebuilt(&env, &r, &m), edited);
    // Chunks of the copy live in the first file's packs.
    let first_packs: Vec<_> = first.packs.iter().map(|p| p.pack_id).collect();
    assert!(
        m.packs
            .iter()
            .filter(|p| first_packs.contains(&p.pack_id))
            .count()
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecorded_pack_is_adopted_on_resume_and_nothing_is_posted_twice() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.part_size = PartSize::Fixed(ATTACHMENT);
        c.set_concurrency(1);
    });
    let r = repo(true);
    // The third pack is stored by Discord, but its reply never arrives; the user gives up.
    env.fault(
        FaultRoute::CreateMessage,
        2,
        1,
        FaultAction::StallAfterCommit(Duration::from_secs(30)),
    );
    let data = random_bytes(5_000_000, 21);
    let path = put(&env, "a.bin", &data);
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    let watch = async {
        while env.emu.messages(env.emu.channel_id()).len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stopper.cancel();
    };
    let (res, ()) = tokio::join!(upload2::upload(&s, &r, &path, true, cancel), watch);
    assert!(res.unwrap_err().to_string().contains("cancelled"));
    let id = s.catalog.ids()[0].clone();
    assert_eq!(s.catalog.load_packs(&id).unwrap().len(), 2);
    let file = s.catalog.load_file(&id).unwrap();
    let m = upload2::resume(&s, &r, file, true, CancellationToken::new())
        .await
        .unwrap();
    let records = s.catalog.load_packs(&id).unwrap();
    let indices: Vec<u64> = records.iter().map(|p| p.index).collect();
    assert!(indices.contains(&2), "pack 2 adopted: {indices:?}");
    assert!(records
        .iter()
        .find(|p| p.index == 2)
        .unwrap()
        .chunks
        .iter()
        .all(|c| c.file_offset.is_none()));
    assert_eq!(
        kinds(&env, &r, ObjectKind::Pack),
        records.len(),
        "no pack posted twice"
    );
    assert_eq!(rebuilt(&env, &r, &m), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_resumes_without_sending_stored_chunks_again() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.part_size = PartSize::Fixed(ATTACHMENT);
        c.set_concurrency(1);
        c.retries = 0;
    });
    let r = repo(false);
    env.fault(FaultRoute::CreateMessage, 2, 100, FaultAction::Status(500));
    let data = random_bytes(6_000_000, 5);
    let path = put(&env, "t.bin", &data);
    let err = match upload2(&s, &r, &path).await {
        Ok(_) => panic!("the upload should stop at the third pack"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("resume"), "{err}");
    env.emu.faults().clear();
    let id = s.catalog.ids()[0].clone();
    let done: u64 = s
        .catalog
        .load_packs(&id)
        .unwrap()
        .iter()
        .map(|p| p.size)
        .sum();
    assert_eq!(s.catalog.load_packs(&id).unwrap().len(), 2);
    let before = pack_bytes(&env, &r);
    let file = s.catalog.load_file(&id).unwrap();
    let m = upload2::resume(&s, &r, file, true, CancellationToken::new())
        .await
        .unwrap();
    let total: u64 = s
        .catalog
        .load_packs(&id)
        .unwrap()
        .iter()
        .map(|p| p.size)
        .sum();
    let sent = pack_bytes(&env, &r) - before;
    assert!(
        sent < total - done + 200_000,
        "resume sent {sent}, {} were left",
        total - done
    );
    assert_eq!(rebuilt(&env, &r, &m), data);
    // An empty file: no pack, an entry with no chunks.
    let empty = put(&env, "empty", b"");
    let e = upload2(&s, &r, &empty).await.unwrap();
    assert!(e.chunks.is_empty() && e.packs.is_empty() && e.status == Status::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_rebuilds_every_file_from_sealed_entries_and_skips_strangers_and_other_repositories(
) {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let a = put(&env, "a.bin", random_bytes(1_500_000, 1));
    let b = put(&env, "notes.txt", text(900_000, 2));
    let ma = upload2(&s, &r, &a).await.unwrap();
    let mb = upload2(&s, &r, &b).await.unwrap();
    // Someone else re-posts a's entry; another repository's entry sits in the channel too.
    let head = env
        .emu
        .messages(env.emu.channel_id())
        .into_iter()
        .find(|m| m.id == ma.remote_manifest.unwrap().message_id)
        .unwrap();
    let bytes = env.emu.attachment_bytes(head.attachments[0].id).unwrap();
    env.emu.post_as(
        4242,
        env.emu.channel_id(),
        &head.attachments[0].filename,
        &bytes,
    );
    let other = repo(true);
    let c = put(&env, "c.bin", random_bytes(10_000, 3));
    upload2(&s, &other, &c).await.unwrap();

    // A new machine: an empty data dir, the same channel.
    let fresh = env.session_with(|c| {
        c.part_size = PartSize::Fixed(ATTACHMENT);
        c.data_dir = env.dir.path().join("new-machine");
    });
    let (got, skipped) =
        dstore::commands::recover2::recover(&fresh, &r, true, CancellationToken::new())
            .await
            .unwrap();
    assert_eq!(skipped, 1, "the stranger's copy is reported");
    let mut ids: Vec<String> = got.iter().map(|f| f.id.clone()).collect();
    ids.sort();
    let mut want = vec![ma.id.clone(), mb.id.clone()];
    want.sort();
    assert_eq!(
        ids, want,
        "the other repository's entry does not open and is not a file here"
    );
    for m in [&ma, &mb] {
        let back = fresh.catalog.load_file(&m.id).unwrap();
        assert_eq!(
            (back.name.as_str(), back.size, &back.sha256),
            (m.name.as_str(), m.size, &m.sha256)
        );
        assert_eq!((&back.packs, &back.chunks), (&m.packs, &m.chunks));
        assert_eq!(back.entry_version, Some(1));
        assert_eq!(
            rebuilt(&env, &r, &back),
            std::fs::read(&m.source_path).unwrap()
        );
    }
    // Run again: nothing new.
    let (again, _) =
        dstore::commands::recover2::recover(&fresh, &r, true, CancellationToken::new())
            .await
            .unwrap();
    assert!(again.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_pack_deleted_elsewhere_is_sent_again_not_trusted() {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let data = random_bytes(2_500_000, 8);
    let a = put(&env, "a.bin", &data);
    let first = upload2(&s, &r, &a).await.unwrap();
    // Another machine deleted one of the packs; this machine's manifests still name it.
    let gone = &first.packs[1];
    s.store()
        .unwrap()
        .delete_message(gone.channel_id, gone.message_id)
        .await
        .unwrap();
    let b = put(&env, "b.bin", &data);
    let copy = upload2(&s, &r, &b).await.unwrap();
    assert!(copy.packs.iter().all(|p| p.pack_id != gone.pack_id));
    assert_eq!(rebuilt(&env, &r, &copy), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_entry_then_only_packs_no_other_file_uses_and_finishes_when_run_again() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.part_size = PartSize::Fixed(ATTACHMENT);
        c.retries = 0;
    });
    let r = repo(true);
    let shared = random_bytes(2_000_000, 31);
    let mut a_data = shared.clone();
    a_data.extend_from_slice(&random_bytes(2_000_000, 32));
    let mut b_data = shared.clone();
    b_data.extend_from_slice(&random_bytes(500_000, 33));
    let a = put(&env, "a.bin", &a_data);
    let b = put(&env, "b.bin", &b_data);
    let ma = upload2(&s, &r, &a).await.unwrap();
    let mb = upload2(&s, &r, &b).await.unwrap();
    let shared_packs = mb.packs.iter().filter(|p| ma.packs.contains(p)).count();
    assert!(shared_packs >= 1);
    let packs_before = kinds(&env, &r, ObjectKind::Pack);

    // The first attempt stops after the entry and one pack are gone.
    env.fault(FaultRoute::DeleteMessage, 2, 100, FaultAction::Status(500));
    assert!(dstore::commands::delete2::delete(&s, &r, &ma)
        .await
        .is_err());
    assert_eq!(
        kinds(&env, &r, ObjectKind::Entry),
        1,
        "a's entry went first"
    );
    env.emu.faults().clear();
    let removed = dstore::commands::delete2::delete(&s, &r, &ma)
        .await
        .unwrap();
    assert_eq!(removed.entries, 0, "already gone");
    assert!(removed.shared >= 1);
    s.catalog.remove_file(&ma.id).unwrap();
    let own_a = ma.packs.len() - shared_packs;
    assert_eq!(kinds(&env, &r, ObjectKind::Pack), packs_before - own_a);
    // b is whole, and a new machine recovers only b.
    assert_eq!(rebuilt(&env, &r, &mb), b_data);
    let fresh = env.session_with(|c| c.data_dir = env.dir.path().join("new"));
    let (got, _) = dstore::commands::recover2::recover(&fresh, &r, true, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|f| f.id.clone()).collect::<Vec<_>>(),
        vec![mb.id.clone()]
    );
}
