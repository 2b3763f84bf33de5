//! Several format-2 catalogue entries in one message (docs/format.md 7.2): `upload a b c` posts
//! the three entries together, a new machine recovers all three, a delete of one posts the
//! others again before their message goes (and a delete stopped in between loses nothing), an
//! entry that failed to post is left for `resume`, and an entry too large for a message still
//! goes alone, as pieces.

use std::path::PathBuf;

use dstore::catalog::{FileManifest, MessageRef, Status};
use dstore::cli::Command;
use dstore::commands::upload2::RepoKeys;
use dstore::commands::{init, Session};
use dstore::config::{PartSize, StorageFormat};
use dstore::repo::catalogue::{post_entries, scan};
use dstore::repo::crypto::ObjectKind;
use dstore::repo::entry::Entry;
use dstore::repo::repository::Secrets;
use dstore::store::PartStore;
use dstore_emulator::{FaultAction, FaultRoute};
use tokio_util::sync::CancellationToken;

use crate::common::{random_bytes, Env};
use crate::upload2::rebuilt;

const PASS: &str = "a passphrase for the batched catalogue";

/// A format-2 machine on data dir `data`, with the passphrase given and `retries` retries.
fn machine(env: &Env, data: PathBuf, retries: u32) -> Session {
    let mut s = env.session_with(|c| {
        c.format = StorageFormat::V2;
        // The repository's chunker makes chunks of up to 8 MiB: the whole 10 MiB limit.
        c.part_size = PartSize::Auto;
        c.data_dir = data;
        c.retries = retries;
    });
    s.secrets = Secrets::given(&[("DSTORE_PASSPHRASE", PASS)]);
    s
}

/// A repository on the emulator, and the first machine's session and keys.
async fn repository(env: &Env, retries: u32) -> (Session, RepoKeys) {
    let s = machine(env, env.data_dir(), retries);
    let r = init::init(&s, false).await.unwrap();
    (s, RepoKeys::from(r.as_ref()))
}

async fn run(s: &Session, c: Command) -> anyhow::Result<()> {
    s.run(c, CancellationToken::new()).await
}

/// Writes three small files and uploads them with one `upload a b c`; returns their manifests.
async fn upload_three(env: &Env, s: &Session) -> Vec<FileManifest> {
    let mut paths = Vec::new();
    for (i, name) in ["a.bin", "b.bin", "c.bin"].iter().enumerate() {
        let p = env.dir.path().join(name);
        std::fs::write(&p, random_bytes(150_000 + i * 1000, 70 + i as u64)).unwrap();
        paths.push(p);
    }
    run(
        s,
        Command::Upload {
            paths,
            force: false,
            json: false,
        },
    )
    .await
    .unwrap();
    let mut files: Vec<FileManifest> = s.catalog.all().unwrap().into_iter().flatten().collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(files.len(), 3);
    files
}

/// The messages of the channel holding catalogue entries, each with its entries' names.
fn entry_messages(env: &Env, r: &RepoKeys) -> Vec<(u64, Vec<String>)> {
    env.emu
        .messages(env.emu.channel_id())
        .into_iter()
        .map(|m| {
            let names = m
                .attachments
                .into_iter()
                .map(|a| a.filename)
                .filter(|n| r.keys.name_kind(n) == Some(ObjectKind::Entry))
                .collect::<Vec<_>>();
            (m.id, names)
        })
        .filter(|(_, names)| !names.is_empty())
        .collect()
}

fn entry_name(r: &RepoKeys, m: &FileManifest) -> String {
    r.keys.object_name(ObjectKind::Entry, &m.id, 1)
}

/// Recovers on a new, empty machine; returns the IDs it found, sorted, checking each file's
/// bytes against its source.
async fn recover_elsewhere(env: &Env, r: &RepoKeys, name: &str) -> Vec<String> {
    let fresh = machine(env, env.dir.path().join(name), 5);
    run(&fresh, Command::Recover { json: true }).await.unwrap();
    let mut ids = Vec::new();
    for m in fresh.catalog.all().unwrap().into_iter().flatten() {
        assert_eq!(m.status, Status::Complete);
        let source = env.dir.path().join(&m.name);
        assert_eq!(rebuilt(env, r, &m), std::fs::read(source).unwrap());
        ids.push(m.id);
    }
    ids.sort();
    ids
}

fn ids(files: &[&FileManifest]) -> Vec<String> {
    let mut ids: Vec<String> = files.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_three_files_posts_their_entries_in_one_message_and_a_new_machine_finds_them() {
    let env = Env::new().await;
    let (s, r) = repository(&env, 5).await;
    let files = upload_three(&env, &s).await;
    let batches = entry_messages(&env, &r);
    assert_eq!(
        batches.len(),
        1,
        "one message for three entries: {batches:?}"
    );
    let (message, names) = &batches[0];
    let mut want: Vec<String> = files.iter().map(|m| entry_name(&r, m)).collect();
    let mut got = names.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    for m in &files {
        assert_eq!(m.status, Status::Complete);
        assert_eq!(m.entry_version, Some(1));
        assert_eq!(
            m.remote_manifest.map(|at| at.message_id),
            Some(*message),
            "{} records the shared message",
            m.name
        );
    }
    // The scan says which message holds each entry and which others share it.
    let store = s.store().unwrap();
    let trusted = store.trusted_authors().await.unwrap();
    let found = scan(store.as_ref(), &r.keys, &s.config.channels, &trusted)
        .await
        .unwrap();
    let sharing = found.sharing(&r.keys, &files[1].id);
    assert_eq!(sharing.len(), 1);
    assert_eq!(sharing[0].0.message_id, *message);
    let mut others = sharing[0].1.clone();
    others.sort();
    let mut want = vec![entry_name(&r, &files[0]), entry_name(&r, &files[2])];
    want.sort();
    assert_eq!(others, want);

    let all: Vec<&FileManifest> = files.iter().collect();
    assert_eq!(recover_elsewhere(&env, &r, "second").await, ids(&all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_one_file_posts_the_others_entries_again_first_and_a_stopped_delete_loses_nothing()
{
    let env = Env::new().await;
    let (s, r) = repository(&env, 0).await;
    let files = upload_three(&env, &s).await;
    let (a, b, c) = (&files[0], &files[1], &files[2]);
    let batch = b.remote_manifest.unwrap();

    // Stopped right after the others' entries are posted again, before b's message goes.
    let posts = env.emu.stats().messages_created;
    env.fault(FaultRoute::DeleteMessage, 0, 100, FaultAction::Status(500));
    let delete = || Command::Delete {
        id: b.id.clone(),
        yes: true,
        keep_remote: false,
    };
    assert!(run(&s, delete()).await.is_err());
    env.emu.faults().clear();
    assert_eq!(
        env.emu.stats().messages_created,
        posts + 1,
        "a's and c's entries were posted again, together"
    );
    let batches = entry_messages(&env, &r);
    assert_eq!(batches.len(), 2, "{batches:?}");
    let (again, names) = batches
        .iter()
        .find(|(id, _)| *id != batch.message_id)
        .unwrap();
    let mut got = names.clone();
    got.sort();
    let mut want = vec![entry_name(&r, a), entry_name(&r, c)];
    want.sort();
    assert_eq!(got, want, "same names: the same versions");
    for m in [a, c] {
        let now = s.catalog.load_file(&m.id).unwrap();
        assert_eq!(
            now.remote_manifest,
            Some(MessageRef {
                channel_id: batch.channel_id,
                message_id: *again,
            }),
            "{}'s file.json records where its entry is now",
            m.name
        );
        assert_eq!(now.entry_version, Some(1));
    }
    assert!(s.catalog.contains(&b.id), "b is not deleted yet");
    // Nothing is lost: a new machine finds all three.
    assert_eq!(recover_elsewhere(&env, &r, "midway").await, ids(&[a, b, c]));

    // The second delete finishes, posting nothing again.
    let posts = env.emu.stats().messages_created;
    run(&s, delete()).await.unwrap();
    assert_eq!(env.emu.stats().messages_created, posts);
    assert!(!s.catalog.contains(&b.id));
    let batches = entry_messages(&env, &r);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].0, *again);
    assert_eq!(recover_elsewhere(&env, &r, "after").await, ids(&[a, c]));

    // Deleting a, whose message holds c's entry, posts c's again alone; c survives.
    run(
        &s,
        Command::Delete {
            id: a.id.clone(),
            yes: true,
            keep_remote: false,
        },
    )
    .await
    .unwrap();
    let batches = entry_messages(&env, &r);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].1, [entry_name(&r, c)]);
    assert_eq!(recover_elsewhere(&env, &r, "last").await, ids(&[c]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_leaves_each_file_for_resume_which_posts_it() {
    let env = Env::new().await;
    let (s, r) = repository(&env, 0).await;
    // Three packs go through, then the message of the three entries fails.
    env.fault(FaultRoute::CreateMessage, 3, 1, FaultAction::Status(500));
    let files = upload_three(&env, &s).await;
    env.emu.faults().clear();
    assert!(entry_messages(&env, &r).is_empty());
    for m in &files {
        assert_eq!(m.status, Status::Complete, "{} is stored whole", m.name);
        assert_eq!(m.remote_manifest, None, "{} waits for `resume`", m.name);
    }
    assert!(recover_elsewhere(&env, &r, "before").await.is_empty());
    for m in &files {
        run(
            &s,
            Command::Resume {
                id: m.id.clone(),
                json: true,
            },
        )
        .await
        .unwrap();
        assert!(s
            .catalog
            .load_file(&m.id)
            .unwrap()
            .remote_manifest
            .is_some());
    }
    assert_eq!(entry_messages(&env, &r).len(), 3, "one each");
    let all: Vec<&FileManifest> = files.iter().collect();
    assert_eq!(recover_elsewhere(&env, &r, "after").await, ids(&all));
}

/// A complete-looking entry of `chunks` repetitions of one chunk of a pack in `channel`.
fn synthetic(id: &str, channel: u64, chunks: usize) -> Entry {
    let pack = dstore::catalog::PackRef {
        channel_id: channel,
        message_id: 1_200_000_000_000_000_123,
        attachment_id: 1_300_000_000_000_000_456,
        pack_id: [7; 16],
        size: 1_000_000,
    };
    let chunk = dstore::catalog::ChunkRef {
        id: [9; 32],
        pack: 0,
        offset: 0,
        sealed_len: 1040,
        plain_len: 1000,
        flags: 0,
    };
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    Entry {
        format: 2,
        kind: "entry".into(),
        id: id.into(),
        version: 1,
        name: format!("{id}.bin"),
        size: 1000 * chunks as u64,
        mtime: now,
        mode: None,
        sha256: "ab".repeat(32),
        created_at: now,
        hidden: false,
        packs: vec![pack],
        chunks: vec![chunk; chunks],
        pieces: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_too_large_for_a_message_goes_alone_as_pieces_and_the_small_ones_share_one() {
    let env = Env::new().await;
    let (s, r) = repository(&env, 5).await;
    let ch = env.emu.channel_id();
    let store = s.store().unwrap();
    let budget = 200_000;
    let entries = vec![
        synthetic("aaaaaaaaaa", ch, 3),
        synthetic("bbbbbbbbbb", ch, 4000),
        synthetic("cccccccccc", ch, 5),
    ];
    let before = env.emu.stats().messages_created;
    let posted = post_entries(store.as_ref(), &r.keys, ch, &entries, budget, 0).await;
    let posted: Vec<_> = posted.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        posted[0].head, posted[2].head,
        "the small entries share a message"
    );
    assert!(posted[0].pieces.is_empty());
    let pieces = posted[1].pieces.len();
    assert!(pieces >= 2, "{pieces} pieces");
    assert_eq!(
        env.emu.stats().messages_created,
        before + 1 + pieces as u64 + 1,
        "one batch, then each piece and the head alone"
    );
    for m in env.emu.messages(ch) {
        let kinds: Vec<_> = m
            .attachments
            .iter()
            .map(|a| r.keys.name_kind(&a.filename))
            .collect();
        if kinds.contains(&Some(ObjectKind::Piece)) || m.id == posted[1].head.message_id {
            assert_eq!(kinds.len(), 1, "a large entry's messages hold nothing else");
        }
    }
    let trusted = store.trusted_authors().await.unwrap();
    let found = scan(store.as_ref(), &r.keys, &s.config.channels, &trusted)
        .await
        .unwrap();
    assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    for e in [&entries[0], &entries[2]] {
        assert_eq!(&found.entries[&e.id].entry, e, "{} found", e.id);
    }
    let big = &found.entries[&entries[1].id];
    assert_eq!(big.pieces.len(), pieces);
    assert_eq!(
        (big.entry.chunks.len(), big.entry.size),
        (4000, entries[1].size),
        "the large entry is found whole"
    );
}

#[tokio::test]
async fn a_message_of_several_attachments_is_never_posted_twice_and_never_taken_for_an_older_copy()
{
    let env = Env::with(|c| {
        c.rate_limits = None;
        c.nonce_window = std::time::Duration::from_secs(1);
    })
    .await;
    let ch = env.emu.channel_id();
    let store = dstore::store::BotStore::new(&env.config())
        .unwrap()
        .with_nonce_trust(std::time::Duration::from_millis(500));
    let attachments: Vec<(String, bytes::Bytes)> = (0..3)
        .map(|i| {
            (
                format!("e{i}.bin"),
                bytes::Bytes::from(random_bytes(2000 + i, 90 + i as u64)),
            )
        })
        .collect();
    let message = |nonce: &str, newer_than: u64| dstore::store::PutMessage {
        channel_id: ch,
        nonce: nonce.into(),
        attachments: attachments.clone(),
        newer_than,
    };
    let copies = || {
        env.emu
            .messages(ch)
            .into_iter()
            .filter(|m| m.attachments.len() == 3)
            .map(|m| m.id)
            .collect::<Vec<_>>()
    };
    // The reply is lost; the retry, within the nonce window, gets the first message back.
    env.fault(
        FaultRoute::CreateMessage,
        0,
        1,
        FaultAction::ResetAfterCommit,
    );
    let first = store.put_parts(message("batch-one", 0)).await.unwrap();
    assert_eq!(copies(), [first[0].message_id]);
    for ((name, data), got) in attachments.iter().zip(&first) {
        assert_eq!(&got.filename, name);
        assert_eq!(got.message_id, first[0].message_id);
        assert_eq!(
            env.emu.attachment_bytes(got.attachment_id).unwrap(),
            data.to_vec()
        );
    }

    // The same attachments posted again to replace that message: the reply is lost and the
    // retry waits past the nonce window. It finds the new copy, never the older one.
    env.fault(
        FaultRoute::CreateMessage,
        0,
        1,
        FaultAction::ResetAfterCommit,
    );
    env.fault(
        FaultRoute::CreateMessage,
        0,
        1,
        FaultAction::RateLimit {
            retry_after: 1.5,
            global: false,
        },
    );
    let again = store
        .put_parts(message("batch-two", first[0].message_id))
        .await
        .unwrap();
    let all = copies();
    assert_eq!(all.len(), 2, "one new copy: {all:?}");
    assert!(again[0].message_id > first[0].message_id);
    assert!(all.contains(&again[0].message_id));
    assert!(again.iter().all(|p| p.message_id == again[0].message_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_posts_again_the_entries_sharing_a_message_with_one_it_rewrites() {
    use crate::upload2::{repo, session2, upload2};
    use dstore::commands::prune::{prune, PruneOpts};
    use dstore::commands::upload2::{finish, upload_unposted};

    let env = Env::new().await;
    let s = session2(&env);
    let r = repo(true);
    let a_data = random_bytes(3_000_000, 41);
    // b shares a's first ~250 KB: a few chunks of a's first pack. c shares nothing.
    let mut b_data = a_data[..250_000].to_vec();
    b_data.extend_from_slice(&random_bytes(400_000, 42));
    let c_data = random_bytes(300_000, 43);
    let path = |n: &str, d: &[u8]| {
        let p = env.dir.path().join(n);
        std::fs::write(&p, d).unwrap();
        p
    };
    let ma = upload2(&s, &r, &path("a.bin", &a_data)).await.unwrap();
    let mut done = Vec::new();
    for (n, d) in [("b.bin", &b_data), ("c.bin", &c_data)] {
        let p = path(n, d);
        done.push(
            upload_unposted(&s, &r, &p, true, CancellationToken::new())
                .await
                .unwrap(),
        );
    }
    let posted = finish(&s, &r, done).await.unwrap();
    let (mb, mc) = (&posted[0], &posted[1]);
    assert_eq!(
        mb.remote_manifest, mc.remote_manifest,
        "b and c share a message"
    );
    dstore::commands::delete2::delete(&s, &r, &ma)
        .await
        .unwrap();
    s.catalog.remove_file(&ma.id).unwrap();

    let report = prune(
        &s,
        &r,
        PruneOpts {
            grace: std::time::Duration::ZERO,
            ..PruneOpts::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.entries_rewritten, 1, "{report:?}");
    let b_now = s.catalog.load_file(&mb.id).unwrap();
    let c_now = s.catalog.load_file(&mc.id).unwrap();
    assert_eq!(b_now.entry_version, Some(2));
    assert_eq!(c_now.entry_version, Some(1), "c posted again, same version");
    assert_ne!(c_now.remote_manifest, mc.remote_manifest);
    let gone = mb.remote_manifest.unwrap().message_id;
    assert!(env
        .emu
        .messages(env.emu.channel_id())
        .iter()
        .all(|m| m.id != gone));
    let here = c_now.remote_manifest.unwrap().message_id;
    assert!(env
        .emu
        .messages(env.emu.channel_id())
        .iter()
        .any(|m| m.id == here));

    let fresh = env.session_with(|c| c.data_dir = env.dir.path().join("new"));
    let (got, skipped) =
        dstore::commands::recover2::recover(&fresh, &r, true, CancellationToken::new())
            .await
            .unwrap();
    assert_eq!((got.len(), skipped), (2, 0));
    for (id, data) in [(&mb.id, &b_data), (&mc.id, &c_data)] {
        assert_eq!(
            &rebuilt(&env, &r, &fresh.catalog.load_file(id).unwrap()),
            data
        );
    }
}
