//! Folder sync against the emulator (docs/sync.md): a round posts shared packs and one snapshot,
//! restore gives the tree back byte for byte, changes send only what changed, a restart sends
//! nothing, and a round killed mid-way loses nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use dstore::commands::upload2::RepoKeys;
use dstore::commands::{restore, sync, Session};
use dstore::repo::crypto::ObjectKind;
use dstore::sync::round::Report;
use dstore_emulator::{FaultAction, FaultRoute};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::common::{random_bytes, Env};
use crate::upload2::{kinds, repo, session2, text};

/// What a tree holds: per relative path, its kind and bytes (or link target), mode and mtime.
pub fn tree(root: &Path) -> BTreeMap<String, (char, Vec<u8>, u32, i64)> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (char, Vec<u8>, u32, i64)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mtime = m.mtime() * 1_000_000_000 + m.mtime_nsec();
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.insert(rel, ('l', t.to_str().unwrap().as_bytes().to_vec(), 0, 0));
            } else if m.is_dir() {
                out.insert(
                    rel,
                    ('d', Vec::new(), m.permissions().mode() & 0o7777, mtime),
                );
                walk(root, &p, out);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(rel, ('f', bytes, m.permissions().mode() & 0o7777, mtime));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

pub fn write(root: &Path, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    p
}

/// The messages and pack bytes the emulator received since `before` messages existed.
pub fn received(env: &Env, r: &RepoKeys, before: usize) -> (usize, u64) {
    let msgs = env.emu.messages(env.emu.channel_id());
    let new = &msgs[before.min(msgs.len())..];
    let bytes = new
        .iter()
        .flat_map(|m| &m.attachments)
        .filter(|a| r.keys.name_kind(&a.filename) == Some(ObjectKind::Pack))
        .map(|a| a.size)
        .sum();
    (new.len(), bytes)
}

pub fn count(env: &Env) -> usize {
    env.emu.messages(env.emu.channel_id()).len()
}

pub async fn once(s: &Session, r: &RepoKeys, dir: &Path) -> Report {
    sync::sync_once(s, r, dir, CancellationToken::new())
        .await
        .unwrap()
}

pub async fn restore_to(
    s: &Session,
    r: &RepoKeys,
    what: &str,
    dest: &Path,
    at: Option<OffsetDateTime>,
) -> anyhow::Result<()> {
    restore::restore(s, r, what, Some(dest), at, false, CancellationToken::new())
        .await
        .map(drop)
}

/// The folder's tree, less what sync leaves out.
fn synced_part(
    mut t: BTreeMap<String, (char, Vec<u8>, u32, i64)>,
) -> BTreeMap<String, (char, Vec<u8>, u32, i64)> {
    t.retain(|p, _| !p.ends_with(".swp") && !p.ends_with(".part") && !p.starts_with("build"));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_round_trips_byte_identical_with_its_tree_modes_mtimes_and_links() {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let root = env.dir.path().join("Notes");
    write(&root, "a.txt", b"hello");
    write(&root, "docs/deep/nested/b.bin", random_bytes(700_000, 1));
    write(&root, "docs/c.md", text(300_000, 2));
    write(&root, "empty-file", b"");
    write(&root, ".dstoreignore", b"build/\n");
    write(&root, "build/out.o", b"object");
    write(&root, "docs/.c.md.swp", b"swap");
    write(&root, "movie.mkv.part", b"partial");
    std::fs::create_dir_all(root.join("empty/inner")).unwrap();
    let script = write(&root, "run.sh", b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("docs/c.md", root.join("link")).unwrap();

    let before = count(&env);
    let report = once(&s, &r, &root).await;
    assert_eq!(report.snapshot, Some(1), "{report:?}");
    assert_eq!(report.files, 6, "{report:?}");
    let (messages, _) = received(&env, &r, before);
    assert_eq!(messages as u64, report.packs + 1, "packs and one snapshot");
    assert_eq!(kinds(&env, &r, ObjectKind::Snapshot), 1);

    let out = env.dir.path().join("restored");
    restore_to(&s, &r, "Notes", &out, None).await.unwrap();
    assert_eq!(tree(&out), synced_part(tree(&root)));
    assert!(!out.join("build").exists() && !out.join("docs/.c.md.swp").exists());

    // One file and one subfolder alone.
    let one = env.dir.path().join("one");
    std::fs::create_dir_all(&one).unwrap();
    restore_to(&s, &r, "Notes/docs/c.md", &one, None)
        .await
        .unwrap();
    assert_eq!(std::fs::read(one.join("c.md")).unwrap(), text(300_000, 2));
    let sub = env.dir.path().join("sub");
    restore_to(&s, &r, "Notes/docs", &sub, None).await.unwrap();
    assert_eq!(
        std::fs::read(sub.join("deep/nested/b.bin")).unwrap(),
        random_bytes(700_000, 1)
    );
    // Nothing is overwritten without --force.
    assert!(restore_to(&s, &r, "Notes", &out, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_small_files_take_a_handful_of_messages_and_a_restart_sends_nothing() {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let root = env.dir.path().join("many");
    for i in 0..2000u64 {
        write(
            &root,
            &format!("d{}/f{i:04}.dat", i % 20),
            random_bytes(2048 + (i as usize % 7) * 300, i + 10),
        );
    }
    let before = count(&env);
    let started = std::time::Instant::now();
    let report = once(&s, &r, &root).await;
    eprintln!("2,000 files: the round took {:?}", started.elapsed());
    let (messages, bytes) = received(&env, &r, before);
    assert_eq!(report.files, 2000);
    eprintln!(
        "2,000 files: {messages} messages, {} packs, {bytes} pack bytes",
        report.packs
    );
    assert!(
        messages <= 10,
        "2,000 files took {messages} messages ({} packs)",
        report.packs
    );
    assert!(bytes > 2000 * 2048, "every file's bytes were sent: {bytes}");

    // Restart: nothing stored and unchanged is sent again, and no snapshot either.
    let before = count(&env);
    let again = once(&s, &r, &root).await;
    assert_eq!((again.read, again.snapshot), (0, None), "{again:?}");
    assert_eq!(received(&env, &r, before), (0, 0));

    // The local state lost (a new machine's data dir would be): the files are read, nothing sent.
    let state = env.data_dir().join("sync");
    for f in std::fs::read_dir(&state).unwrap().flatten() {
        let _ = std::fs::remove_file(f.path().join("state.json"));
    }
    let before = count(&env);
    let reread = once(&s, &r, &root).await;
    assert_eq!(reread.read, 2000);
    assert_eq!(reread.packs, 0, "{reread:?}");
    assert_eq!(received(&env, &r, before).1, 0);

    let out = env.dir.path().join("out");
    let started = std::time::Instant::now();
    restore_to(&s, &r, "many", &out, None).await.unwrap();
    eprintln!("2,000 files: the restore took {:?}", started.elapsed());
    assert_eq!(tree(&out), tree(&root));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_send_only_what_changed_and_old_snapshots_restore() {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let root = env.dir.path().join("work");
    let big = random_bytes(4_000_000, 7);
    write(&root, "big.bin", &big);
    let log = text(500_000, 8);
    write(&root, "app.log", &log);
    write(&root, "keep/notes.txt", b"first notes");
    write(&root, "gone.txt", random_bytes(100_000, 9));
    let first = once(&s, &r, &root).await;
    assert_eq!(first.snapshot, Some(1));
    let v1 = tree(&root);
    let t1 = OffsetDateTime::now_utc();
    std::thread::sleep(std::time::Duration::from_millis(20));

    // Append to the log: only the tail goes.
    let mut log2 = log.clone();
    log2.extend_from_slice(&text(20_000, 10));
    write(&root, "app.log", &log2);
    let before = count(&env);
    let rep = once(&s, &r, &root).await;
    let (_, sent) = received(&env, &r, before);
    assert_eq!((rep.changed, rep.snapshot), (1, Some(2)), "{rep:?}");
    eprintln!("append of 20,000 bytes to a 500,000-byte log: {sent} pack bytes sent");
    assert!(sent < 300_000, "an append of 20 KB sent {sent} bytes");

    // An edit in the middle of a 4 MB file: a few chunks (at most 256 KiB each) go.
    let mut big2 = big.clone();
    big2[2_000_000..2_000_100].copy_from_slice(&[0xee; 100]);
    write(&root, "big.bin", &big2);
    let before = count(&env);
    let rep = once(&s, &r, &root).await;
    let (_, sent) = received(&env, &r, before);
    assert_eq!(rep.changed, 1, "{rep:?}");
    eprintln!("100-byte edit in the middle of a 4,000,000-byte file: {sent} pack bytes sent");
    assert!(
        sent > 0 && sent < 800_000,
        "an edit of 100 bytes sent {sent} bytes"
    );

    // Rename and move: no pack at all; delete: gone from the latest snapshot only.
    std::fs::create_dir_all(root.join("moved")).unwrap();
    std::fs::rename(root.join("keep/notes.txt"), root.join("moved/renamed.txt")).unwrap();
    std::fs::remove_file(root.join("gone.txt")).unwrap();
    let before = count(&env);
    let rep = once(&s, &r, &root).await;
    assert_eq!(rep.packs, 0, "{rep:?}");
    assert_eq!((rep.new, rep.deleted), (1, 2), "{rep:?}");
    assert_eq!(
        received(&env, &r, before),
        (1, 0),
        "one snapshot message, no pack"
    );

    // The latest restores as the folder is now, the first as it was.
    let now = env.dir.path().join("now");
    restore_to(&s, &r, "work", &now, None).await.unwrap();
    assert_eq!(tree(&now), tree(&root));
    let then = env.dir.path().join("then");
    restore_to(&s, &r, "work", &then, Some(t1)).await.unwrap();
    // Folders' mtimes are restored as they were then too: everything compares.
    assert_eq!(tree(&then), v1);
    assert!(restore_to(
        &s,
        &r,
        "work",
        &env.dir.path().join("never"),
        Some(t1 - time::Duration::days(1))
    )
    .await
    .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_killed_mid_way_loses_nothing_and_the_next_sends_only_the_rest() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.part_size = dstore::config::PartSize::Fixed(crate::upload2::ATTACHMENT);
        c.retries = 0;
        c.set_concurrency(1);
    });
    let r = repo(true);
    let root = env.dir.path().join("big");
    let data = random_bytes(5_000_000, 21);
    write(&root, "one.bin", &data);
    // Two packs go through, then Discord fails every post.
    env.fault(FaultRoute::CreateMessage, 2, 1000, FaultAction::Status(500));
    let before = count(&env);
    assert!(sync::sync_once(&s, &r, &root, CancellationToken::new())
        .await
        .is_err());
    env.emu.faults().clear();
    let (first_messages, first_bytes) = received(&env, &r, before);
    assert_eq!(first_messages, 2);
    assert_eq!(kinds(&env, &r, ObjectKind::Snapshot), 0);

    let before = count(&env);
    let rep = once(&s, &r, &root).await;
    let (_, rest) = received(&env, &r, before);
    assert_eq!(rep.snapshot, Some(1));
    let total: u64 = first_bytes + rest;
    assert!(
        total < data.len() as u64 + 200_000,
        "the first round's packs were reused: {first_bytes} + {rest} bytes for {} bytes",
        data.len()
    );
    let out = env.dir.path().join("out");
    restore_to(&s, &r, "big", &out, None).await.unwrap();
    assert_eq!(std::fs::read(out.join("one.bin")).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_machine_recovers_the_snapshots_and_restores_versions() {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let root = env.dir.path().join("shared");
    write(&root, "a/doc.txt", b"version one");
    write(&root, "b.bin", random_bytes(300_000, 31));
    once(&s, &r, &root).await;
    let v1 = tree(&root);
    let t1 = OffsetDateTime::now_utc();
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&root, "a/doc.txt", b"version two, longer");
    once(&s, &r, &root).await;
    std::fs::remove_file(root.join("a/doc.txt")).unwrap();
    once(&s, &r, &root).await;

    let list = dstore::commands::versions::versions(
        &s,
        &sync::resolve_or_fail(&s, "shared").unwrap().0,
        "a/doc.txt",
    )
    .unwrap();
    let shape: Vec<(u64, bool, u64)> = list.iter().map(|v| (v.seq, v.deleted, v.size)).collect();
    assert_eq!(shape, [(1, false, 11), (2, false, 19), (3, true, 0)]);

    // Another machine: same token, channels and keys, an empty data dir.
    let other = env.dir.path().join("other-data");
    let s2 = env.session_with(|c| {
        c.part_size = dstore::config::PartSize::Fixed(crate::upload2::ATTACHMENT);
        c.data_dir = other.clone();
    });
    assert!(sync::resolve(&s2, "shared").unwrap().is_none());
    dstore::commands::recover2::recover(&s2, &r, true, CancellationToken::new())
        .await
        .unwrap();
    let (folder, _) = sync::resolve_or_fail(&s2, "shared").unwrap();
    assert_eq!(folder.root, "", "no local root on the second machine");
    let out = env.dir.path().join("there-now");
    restore_to(&s2, &r, "shared", &out, None).await.unwrap();
    assert_eq!(tree(&out), tree(&root));
    let then = env.dir.path().join("there-then");
    restore_to(&s2, &r, "shared", &then, Some(t1))
        .await
        .unwrap();
    assert_eq!(tree(&then), v1);
    // A second recover writes nothing new.
    let before = std::fs::read_dir(other.join("sync").join(&folder.id).join("snapshots"))
        .unwrap()
        .count();
    dstore::commands::recover2::recover(&s2, &r, true, CancellationToken::new())
        .await
        .unwrap();
    let after = std::fs::read_dir(other.join("sync").join(&folder.id).join("snapshots"))
        .unwrap()
        .count();
    assert_eq!((before, after), (3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_then_prune_keeps_what_the_policy_keeps() {
    use dstore::commands::forget::{forget, Policy};
    use dstore::commands::prune::{prune, PruneOpts};
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let root = env.dir.path().join("kept");
    // Snapshot 1: only `old.bin`, in a pack of its own.
    let old = random_bytes(600_000, 41);
    write(&root, "old.bin", &old);
    once(&s, &r, &root).await;
    let old_packs: Vec<u64> = {
        let (f, _) = sync::resolve_or_fail(&s, "kept").unwrap();
        let l = dstore::sync::Folders::new(&env.data_dir())
            .snapshot(&f.id, 1)
            .unwrap()
            .unwrap();
        l.snapshot.packs.iter().map(|p| p.attachment_id).collect()
    };
    let t1 = OffsetDateTime::now_utc();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Snapshot 2: old.bin gone, new.bin in.
    std::fs::remove_file(root.join("old.bin")).unwrap();
    write(&root, "new.bin", random_bytes(500_000, 42));
    once(&s, &r, &root).await;
    let t2 = OffsetDateTime::now_utc();
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&root, "more.txt", b"three");
    once(&s, &r, &root).await;

    let grace = PruneOpts {
        grace: std::time::Duration::ZERO,
        ..PruneOpts::default()
    };
    // Before forget, prune keeps everything every snapshot names.
    prune(&s, &r, grace).await.unwrap();
    for p in &old_packs {
        assert!(
            env.emu.attachment(*p).is_some(),
            "snapshot 1 still needs its pack"
        );
    }

    let keep2 = Policy {
        last: 2,
        ..Policy::default()
    };
    let dry = forget(&s, &r, "kept", &keep2, true).await.unwrap();
    assert_eq!(
        (dry.kept.clone(), dry.forgotten.clone()),
        (vec![2, 3], vec![1])
    );
    assert_eq!(
        kinds(&env, &r, ObjectKind::Snapshot),
        3,
        "a dry run deletes nothing"
    );
    let done = forget(&s, &r, "kept", &keep2, false).await.unwrap();
    assert_eq!(done.forgotten, vec![1]);
    assert_eq!(kinds(&env, &r, ObjectKind::Snapshot), 2);

    prune(&s, &r, grace).await.unwrap();
    for p in &old_packs {
        assert!(env.emu.attachment(*p).is_none(), "only snapshot 1 used it");
    }
    // What the policy kept still restores, at the latest and at snapshot 2.
    let now = env.dir.path().join("now");
    restore_to(&s, &r, "kept", &now, None).await.unwrap();
    assert_eq!(tree(&now), tree(&root));
    let two = env.dir.path().join("two");
    restore_to(&s, &r, "kept", &two, Some(t2)).await.unwrap();
    assert!(two.join("new.bin").exists() && !two.join("more.txt").exists());
    assert!(
        restore_to(&s, &r, "kept", &env.dir.path().join("one"), Some(t1))
            .await
            .is_err(),
        "snapshot 1 is forgotten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_too_large_for_one_attachment_goes_as_pieces_and_recovers_whole() {
    let env = Env::new().await;
    // Packs (and snapshot messages) of at most 400 KiB: room for the test chunker's largest chunk.
    let small = |c: &mut dstore::config::Config| {
        c.part_size = dstore::config::PartSize::Fixed(400 * 1024);
    };
    let s = env.session_with(small);
    let r = repo(true);
    let root = env.dir.path().join("wide");
    for i in 0..1500u64 {
        write(
            &root,
            &format!("dir{:02}/file-with-a-longer-name-{i:05}.txt", i % 30),
            random_bytes(100, i + 500),
        );
    }
    let before = count(&env);
    let rep = once(&s, &r, &root).await;
    let (messages, _) = received(&env, &r, before);
    assert_eq!(rep.snapshot, Some(1));
    assert!(
        kinds(&env, &r, ObjectKind::Piece) >= 2,
        "{} pieces",
        kinds(&env, &r, ObjectKind::Piece)
    );
    assert_eq!(
        messages as u64,
        rep.packs + 1 + kinds(&env, &r, ObjectKind::Piece) as u64
    );
    let other = env.dir.path().join("other-data");
    let s2 = env.session_with(|c| {
        small(c);
        c.data_dir = other.clone();
    });
    dstore::commands::recover2::recover(&s2, &r, true, CancellationToken::new())
        .await
        .unwrap();
    let out = env.dir.path().join("out");
    restore_to(&s2, &r, "wide", &out, None).await.unwrap();
    assert_eq!(tree(&out), tree(&root));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_two_thousand_files_with_the_watcher_running_takes_a_handful_of_messages() {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let root = env.dir.path().join("watched");
    write(&root, "first.txt", b"before the burst");
    let cancel = CancellationToken::new();
    let ctx = sync::context(&s, &r, cancel.clone()).await.unwrap();
    let folder = sync::folder_for(&s, &root).unwrap();
    let folders = dstore::sync::Folders::new(&env.data_dir());
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (f2, l2) = (folder.clone(), lines.clone());
    let watcher = tokio::spawn(async move {
        let mut say = |line: String| l2.lock().unwrap().push(line);
        dstore::sync::watch::run(&ctx, &f2, std::time::Duration::from_secs(3600), &mut say).await
    });
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let start = std::time::Instant::now();
        while !done() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(120),
                "{what} never happened; the watcher said {:?}",
                lines.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let files_in_latest = || {
        folders.latest(&folder.id).unwrap().map_or(0, |l| {
            l.snapshot
                .files
                .iter()
                .filter(|n| n.kind == dstore::repo::snapshot::Kind::File)
                .count()
        })
    };
    tokio::task::block_in_place(|| wait_until("the first snapshot", &|| files_in_latest() == 1));
    let before = count(&env);
    tokio::task::block_in_place(|| {
        for i in 0..2000u64 {
            write(
                &root,
                &format!("burst/d{}/f{i:04}.dat", i % 10),
                random_bytes(2048, 2 * i + 900),
            );
        }
        wait_until("a snapshot of all 2,001 files", &|| {
            files_in_latest() == 2001
        });
    });
    let (messages, bytes) = received(&env, &r, before);
    eprintln!("watcher, burst of 2,000 files: {messages} messages, {bytes} pack bytes");
    assert!(messages <= 16, "the burst took {messages} messages");
    assert!(bytes >= 2000 * 2048);
    cancel.cancel();
    watcher.await.unwrap().unwrap();
    let out = env.dir.path().join("out");
    restore_to(&s, &r, "watched", &out, None).await.unwrap();
    assert_eq!(tree(&out), tree(&root));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_damaged_pack_and_writes_nothing_in_its_place() {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let root = env.dir.path().join("fragile");
    write(&root, "small.txt", random_bytes(5_000, 61));
    write(&root, "large.bin", random_bytes(3_000_000, 62));
    once(&s, &r, &root).await;
    let (f, _) = sync::resolve_or_fail(&s, "fragile").unwrap();
    let l = dstore::sync::Folders::new(&env.data_dir())
        .latest(&f.id)
        .unwrap()
        .unwrap();
    for p in &l.snapshot.packs {
        // A byte in every kilobyte of every blob and of the sealed header, so each file's
        // chunks are damaged (a pack holds both files' chunks; the trailer stays).
        let mut bytes = env.emu.attachment_bytes(p.attachment_id).unwrap();
        let end = bytes.len() - 4;
        for at in (100..end).step_by(997) {
            bytes[at] ^= 0x55;
        }
        assert!(env.emu.replace_attachment_bytes(p.attachment_id, &bytes));
    }
    for what in ["fragile/small.txt", "fragile/large.bin"] {
        let out = env.dir.path().join(format!("out-{}", what.len()));
        std::fs::create_dir_all(&out).unwrap();
        assert!(
            restore_to(&s, &r, what, &out, None).await.is_err(),
            "{what}"
        );
        let name = what.rsplit('/').next().unwrap();
        assert!(!out.join(name).exists(), "{what} was written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rounds_of_one_folder_never_run_at_once() {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let root = env.dir.path().join("locked");
    write(&root, "a.txt", b"a");
    let f = sync::folder_for(&s, &root).unwrap();
    let held = dstore::sync::Folders::new(&env.data_dir())
        .lock(&f.id)
        .unwrap();
    let err = sync::sync_once(&s, &r, &root, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("another dstore is syncing"),
        "{err}"
    );
    assert_eq!(count(&env), 0, "nothing posted");
    drop(held);
    assert_eq!(once(&s, &r, &root).await.snapshot, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_uploaded_file_keeps_the_packs_a_snapshot_shares_with_it() {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let data = random_bytes(1_500_000, 71);
    let up = crate::upload2::put(&env, "uploaded.bin", &data);
    let m = crate::upload2::upload2(&s, &r, &up).await.unwrap();
    let root = env.dir.path().join("shares");
    write(&root, "copy.bin", &data);
    let before = count(&env);
    let rep = once(&s, &r, &root).await;
    assert_eq!(rep.packs, 0, "the copy's chunks are the upload's");
    assert_eq!(received(&env, &r, before), (1, 0));
    let removed = dstore::commands::delete2::delete(&s, &r, &m).await.unwrap();
    s.catalog.remove_file(&m.id).unwrap();
    assert!(removed.packs == 0 && removed.shared > 0, "{removed:?}");
    for p in &m.packs {
        assert!(env.emu.attachment(p.attachment_id).is_some());
    }
    let out = env.dir.path().join("out");
    restore_to(&s, &r, "shares", &out, None).await.unwrap();
    assert!(std::fs::read(out.join("copy.bin")).unwrap() == data);
}

/// Writes `patch` at `offset` in place and puts the mtime back, as some tools do.
fn edit_in_place(path: &Path, offset: u64, patch: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut f = std::fs::File::options().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(patch).unwrap();
    f.set_modified(mtime).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_edited_while_the_round_reads_it_is_left_for_the_next_round_never_stored_torn() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.part_size = dstore::config::PartSize::Fixed(crate::upload2::ATTACHMENT);
        c.set_concurrency(1);
    });
    let r = repo(true);
    let root = env.dir.path().join("live");
    write(&root, "a.txt", b"steady");
    let path = write(&root, "edited.bin", random_bytes(12_000_000, 31));
    // The first pack waits on its way in, which holds the reader back; meanwhile bytes far past
    // where it has reached change, same size, mtime put back.
    env.fault(
        FaultRoute::CreateMessage,
        0,
        1,
        FaultAction::Stall(std::time::Duration::from_millis(1500)),
    );
    let edit = async {
        while env.emu.faults().pending() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        edit_in_place(&path, 11_000_000, b"edited in place");
    };
    let (rep, ()) = tokio::join!(once(&s, &r, &root), edit);
    assert!(
        rep.skipped
            .iter()
            .any(|k| k.path == "edited.bin" && k.why.contains("changed while it was read")),
        "{rep:?}"
    );
    let out = env.dir.path().join("first");
    restore_to(&s, &r, "live", &out, None).await.unwrap();
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"steady");
    assert!(
        !out.join("edited.bin").exists(),
        "a file read while it changed is not in the snapshot"
    );

    // The next round stores it as it now is.
    let rep = once(&s, &r, &root).await;
    assert!(rep.skipped.is_empty(), "{rep:?}");
    let out = env.dir.path().join("second");
    restore_to(&s, &r, "live", &out, None).await.unwrap();
    assert_eq!(
        std::fs::read(out.join("edited.bin")).unwrap(),
        std::fs::read(&path).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_local_snapshot_is_refused_and_never_writes_outside_the_destination() {
    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let root = env.dir.path().join("docs");
    write(&root, "a.txt", b"inside");
    once(&s, &r, &root).await;
    let snaps: Vec<PathBuf> = glob::glob(
        s.config
            .data_dir
            .join("sync/*/snapshots/1.json")
            .to_str()
            .unwrap(),
    )
    .unwrap()
    .flatten()
    .collect();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let good = std::fs::read_to_string(&snaps[0]).unwrap();
    assert!(good.contains("\"a.txt\""));
    // A path that climbs out of the destination.
    std::fs::write(&snaps[0], good.replace("\"a.txt\"", "\"../escaped.txt\"")).unwrap();
    let dest = env.dir.path().join("restored/here");
    let err = restore_to(&s, &r, "docs", &dest, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is damaged") && err.contains("`recover`"),
        "{err}"
    );
    assert!(!env.dir.path().join("restored/escaped.txt").exists());
    assert!(!dest.join("a.txt").exists());
    // A pack index out of range is refused the same way, not a panic.
    let bad = serde_json::from_str::<serde_json::Value>(&good).unwrap();
    let mut bad = bad;
    for f in bad["snapshot"]["files"].as_array_mut().unwrap() {
        if let Some(chunks) = f["chunks"].as_array_mut() {
            for c in chunks {
                c[1] = serde_json::json!(99);
            }
        }
    }
    std::fs::write(&snaps[0], serde_json::to_vec(&bad).unwrap()).unwrap();
    let err = restore_to(&s, &r, "docs", &dest, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is damaged"), "{err}");
}
