//! The catalogue on Discord is the way back: part records lost on disk are reported and
//! restored, no entry is posted whose parts do not tile the file, stray entries are removed,
//! `delete` removes the entry before any part, strangers' entries are skipped, and an entry too
//! large for one attachment is split and read back whole.

use std::path::PathBuf;

use dstore::catalog::remote::{EntryName, RemoteManifest};
use dstore::catalog::Status;
use dstore::cli::Command;
use dstore::commands::{recover, Session};
use dstore::config::PartSize;
use dstore_emulator::{Access, FaultAction, FaultRoute};
use tokio_util::sync::CancellationToken;

use crate::cli::{dstore, run};
use crate::common::{resume, round_trip, upload, Env, PART};
use crate::download::get;

/// A user ID that is not the bot's.
const STRANGER: u64 = 555_000_000_000_000_001;

async fn cmd(s: &Session, c: Command) -> anyhow::Result<()> {
    s.run(c, CancellationToken::new()).await
}

async fn verify(s: &Session, id: &str) -> anyhow::Result<()> {
    let c = Command::Verify {
        id: id.into(),
        full: false,
        json: false,
    };
    cmd(s, c).await
}

async fn delete(s: &Session, id: &str, keep_remote: bool) -> anyhow::Result<()> {
    let c = Command::Delete {
        id: id.into(),
        yes: true,
        keep_remote,
    };
    cmd(s, c).await
}

fn part_json(env: &Env, id: &str, index: u64) -> PathBuf {
    env.data_dir()
        .join("files")
        .join(id)
        .join("parts")
        .join(format!("{index}.json"))
}

/// A catalogue entry head on Discord.
struct Head {
    channel: u64,
    message: u64,
    author: Option<u64>,
    bytes: Vec<u8>,
}

/// Every head of `id` in `channels`, oldest first.
fn heads(env: &Env, channels: &[u64], id: &str) -> Vec<Head> {
    let mut out = Vec::new();
    for &channel in channels {
        for m in env.emu.messages(channel) {
            for a in &m.attachments {
                if EntryName::parse(&a.filename) == Some(EntryName::Head(id)) {
                    out.push(Head {
                        channel,
                        message: m.id,
                        author: m.author_id,
                        bytes: env.emu.attachment_bytes(a.id).unwrap(),
                    });
                }
            }
        }
    }
    out.sort_by_key(|h| h.message);
    out
}

/// Every entry attachment (heads and pieces) of `id` in `channels`, with its size.
fn entry_attachments(env: &Env, channels: &[u64], id: &str) -> Vec<(String, u64)> {
    channels
        .iter()
        .flat_map(|&c| env.emu.messages(c))
        .flat_map(|m| m.attachments)
        .filter(|a| EntryName::parse(&a.filename).is_some_and(|n| n.id() == id))
        .map(|a| (a.filename, a.size))
        .collect()
}

fn fresh(env: &Env, name: &str) -> Session {
    env.session_with(|c| c.data_dir = env.dir.path().join(name))
}

async fn recover(s: &Session) -> anyhow::Result<usize> {
    recover::recover(s, true, CancellationToken::new()).await
}

#[tokio::test]
async fn verify_reports_a_missing_or_damaged_part_record() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 4 * PART as usize).await;
    verify(&s, &m.id).await.unwrap();
    std::fs::remove_file(part_json(&env, &m.id, 1)).unwrap();
    let e = verify(&s, &m.id).await.unwrap_err().to_string();
    assert!(
        e.contains("1 part record missing or damaged") && e.contains(&format!("`resume {}`", m.id)),
        "{e}"
    );
    std::fs::write(part_json(&env, &m.id, 2), b"{\"format\":1,\"ind").unwrap();
    let e = verify(&s, &m.id).await.unwrap_err().to_string();
    assert!(e.contains("2 part records missing or damaged"), "{e}");
}

#[tokio::test]
async fn resume_restores_lost_part_records_from_discord_checked_against_the_entry() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 5 * PART as usize).await;
    let before = s.catalog.load_parts(&m.id).unwrap().parts;
    std::fs::remove_file(part_json(&env, &m.id, 1)).unwrap();
    std::fs::write(part_json(&env, &m.id, 3), b"not json").unwrap();
    // The source is gone: the parts found on Discord are checked against the entry there.
    let kept = env.dir.path().join("kept.bin");
    std::fs::rename(&m.source_path, &kept).unwrap();
    let entries_before = heads(&env, &[env.emu.channel_id()], &m.id);
    let done = resume(&s, &m.id).await.unwrap();
    assert_eq!(done.status, Status::Complete);
    let after = s.catalog.load_parts(&m.id).unwrap().parts;
    assert_eq!(after.len(), 5);
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(
            (
                a.index,
                a.offset,
                a.length,
                &a.sha256,
                a.message_id,
                a.attachment_id
            ),
            (
                b.index,
                b.offset,
                b.length,
                &b.sha256,
                b.message_id,
                b.attachment_id
            )
        );
    }
    verify(&s, &m.id).await.unwrap();
    let entries_after = heads(&env, &[env.emu.channel_id()], &m.id);
    assert_eq!(entries_after.len(), 1);
    assert_eq!(
        entries_after[0].message, entries_before[0].message,
        "the entry was sound"
    );
    let out = env.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let path = get(&s, &m.id, &out, false).await.unwrap();
    assert_eq!(std::fs::read(path).unwrap(), std::fs::read(&kept).unwrap());
}

#[tokio::test]
async fn resume_without_an_entry_checks_found_parts_against_the_source() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 3 * PART as usize).await;
    // The entry is gone too (a moderator deleted it), but the source is still there.
    let head = heads(&env, &[env.emu.channel_id()], &m.id).remove(0);
    assert!(env.emu.delete_message(head.channel, head.message));
    std::fs::remove_file(part_json(&env, &m.id, 0)).unwrap();
    resume(&s, &m.id).await.unwrap();
    assert_eq!(s.catalog.load_parts(&m.id).unwrap().parts.len(), 3);
    let now = heads(&env, &[env.emu.channel_id()], &m.id);
    assert_eq!(now.len(), 1, "a new entry was posted");
    assert_eq!(
        s.catalog
            .load_file(&m.id)
            .unwrap()
            .remote_manifest
            .unwrap()
            .message_id,
        now[0].message
    );
    // Without the source nor an entry, nothing can vouch for a part: resume says so.
    let second = round_trip(&env, &s, 2 * PART as usize).await;
    let head = heads(&env, &[env.emu.channel_id()], &second.id).remove(0);
    assert!(env.emu.delete_message(head.channel, head.message));
    std::fs::remove_file(part_json(&env, &second.id, 1)).unwrap();
    std::fs::remove_file(&second.source_path).unwrap();
    let e = resume(&s, &second.id).await.unwrap_err().to_string();
    assert!(e.contains("no catalogue entry on Discord"), "{e}");
    assert!(heads(&env, &[env.emu.channel_id()], &second.id).is_empty());
}

#[tokio::test]
async fn no_entry_is_posted_whose_parts_do_not_tile_the_file() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 4 * PART as usize).await;
    let original = heads(&env, &[env.emu.channel_id()], &m.id);
    std::fs::remove_file(part_json(&env, &m.id, 2)).unwrap();
    let e = delete(&s, &m.id, true).await.unwrap_err().to_string();
    assert!(
        e.contains("was not posted") && e.contains(&format!("bytes {}..{}", 2 * PART, 3 * PART)),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "then `resume {}` to repair them, and `delete --keep-remote {}` again",
            m.id, m.id
        )),
        "{e}"
    );
    let e = cmd(&s, Command::Undelete { id: m.id.clone() })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("was not posted"), "{e}");
    let now = heads(&env, &[env.emu.channel_id()], &m.id);
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].message, original[0].message, "the good entry stays");
    // So another machine still gets every part.
    let other = fresh(&env, "other");
    assert_eq!(recover(&other).await.unwrap(), 1);
    assert_eq!(other.catalog.load_parts(&m.id).unwrap().parts.len(), 4);
}

#[tokio::test]
async fn stray_entries_are_cleaned_and_recover_keeps_the_newest() {
    let env = Env::new().await;
    let a = env.emu.channel_id();
    let b = env.emu.add_channel(env.emu.guild_id());
    // Machine 1 posts parts and the entry to b first.
    let s1 = env.session_with(|c| {
        c.channels = vec![b, a];
        c.retries = 0;
    });
    let m = upload(&s1, &env.file("two.bin", 4 * PART as usize))
        .await
        .unwrap();
    assert_eq!(heads(&env, &[a, b], &m.id)[0].channel, b);
    // Machine 2 recovers it (its channels: a, b in ID order) and hides it; the old entry's
    // delete fails, so two entries are left, the newer (hidden) one in a.
    let s2 = env.session_with(|c| {
        c.data_dir = env.dir.path().join("m2");
        c.channels = vec![a, b];
        c.retries = 0;
    });
    assert_eq!(recover(&s2).await.unwrap(), 1);
    env.fault(FaultRoute::DeleteMessage, 0, 1, FaultAction::Status(500));
    delete(&s2, &m.id, true).await.unwrap();
    let two = heads(&env, &[a, b], &m.id);
    assert_eq!(two.len(), 2);
    assert_eq!(two[1].channel, a);
    let recorded = s2
        .catalog
        .load_file(&m.id)
        .unwrap()
        .remote_manifest
        .unwrap();
    assert_eq!(recorded.message_id, two[1].message);
    // A third machine, channels b first, keeps the newest entry and records that one.
    let s3 = env.session_with(|c| {
        c.data_dir = env.dir.path().join("m3");
        c.channels = vec![b, a];
    });
    assert_eq!(recover(&s3).await.unwrap(), 1);
    let got = s3.catalog.load_file(&m.id).unwrap();
    assert!(got.hidden, "the newest entry says hidden");
    assert_eq!(got.remote_manifest, Some(recorded));
    // The next publish removes the stray.
    cmd(&s2, Command::Undelete { id: m.id.clone() })
        .await
        .unwrap();
    let one = heads(&env, &[a, b], &m.id);
    assert_eq!(one.len(), 1);
    assert_eq!(
        s2.catalog
            .load_file(&m.id)
            .unwrap()
            .remote_manifest
            .unwrap()
            .message_id,
        one[0].message
    );
    // A stray left again, then `delete`: nothing of the file is left, no entry for `recover`.
    env.fault(FaultRoute::DeleteMessage, 0, 1, FaultAction::Status(500));
    delete(&s2, &m.id, true).await.unwrap();
    assert_eq!(heads(&env, &[a, b], &m.id).len(), 2);
    delete(&s2, &m.id, false).await.unwrap();
    assert!(env.emu.messages(a).is_empty() && env.emu.messages(b).is_empty());
    assert_eq!(recover(&fresh(&env, "m4")).await.unwrap(), 0);
}

#[tokio::test]
async fn delete_removes_the_entry_first_even_from_the_higher_channel() {
    let env = Env::new().await;
    let a = env.emu.channel_id();
    let b = env.emu.add_channel(env.emu.guild_id());
    assert!(b > a);
    let s = env.session_with(|c| {
        c.channels = vec![b, a];
        c.retries = 0;
    });
    let m = upload(&s, &env.file("hi.bin", 6 * PART as usize))
        .await
        .unwrap();
    let head = heads(&env, &[a, b], &m.id).remove(0);
    assert_eq!(
        head.channel, b,
        "the entry goes to the first configured channel"
    );
    // Only the first deletion request goes through.
    env.fault(FaultRoute::BulkDelete, 1, 100, FaultAction::Status(500));
    env.fault(FaultRoute::DeleteMessage, 1, 100, FaultAction::Status(500));
    delete(&s, &m.id, false).await.unwrap_err();
    // No entry left on Discord names a part that is gone.
    for h in heads(&env, &[a, b], &m.id) {
        let entry = RemoteManifest::parse(&h.bytes).unwrap();
        for p in &entry.parts {
            assert!(
                env.emu.attachment(p.attachment_id).is_some(),
                "an entry names deleted part {}",
                p.index
            );
        }
    }
    assert!(heads(&env, &[a, b], &m.id).is_empty());
    env.emu.faults().clear();
    delete(&s, &m.id, false).await.unwrap();
    assert!(env.emu.messages(a).is_empty() && env.emu.messages(b).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_entries_are_skipped_and_never_delete_real_parts() {
    let env = Env::new().await;
    let s = env.session();
    let ch = env.emu.channel_id();
    let m = round_trip(&env, &s, 3 * PART as usize).await;
    let real = heads(&env, &[ch], &m.id).remove(0);
    assert_eq!(real.author, None, "posted by the bot");
    // A copy of the real entry under a new ID, and a newer one under the real ID that says
    // hidden, both posted by another user.
    let copy_id = "zzzzzzzzzz";
    let text = String::from_utf8(real.bytes.clone()).unwrap();
    let copy = text.replace(
        &format!("\"id\":\"{}\"", m.id),
        &format!("\"id\":\"{copy_id}\""),
    );
    assert_ne!(copy, text);
    let planted = env.emu.post_as(
        STRANGER,
        ch,
        &format!("{copy_id}.manifest.json"),
        copy.as_bytes(),
    );
    let hidden = text.replace("\"parts\":", "\"hidden\":true,\"parts\":");
    let forged = env.emu.post_as(
        STRANGER,
        ch,
        &format!("{}.manifest.json", m.id),
        hidden.as_bytes(),
    );
    assert_eq!(planted.author_id, Some(STRANGER));

    // A new machine, through the binary: both are reported by message and skipped.
    let new = env.dir.path().join("new-machine");
    let mut c = dstore(&env);
    c.env("DSTORE_DATA_DIR", &new).arg("recover");
    let out = run(c, "").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for id in [planted.id, forged.id] {
        let line = stderr.lines().find(|l| l.contains(&id.to_string()));
        assert!(
            line.is_some_and(|l| l.contains("not posted by this bot")),
            "{stderr}"
        );
    }
    let other = env.session_with(|c| c.data_dir = new.clone());
    assert_eq!(other.catalog.ids(), vec![m.id.clone()]);
    let got = other.catalog.load_file(&m.id).unwrap();
    assert!(!got.hidden, "the stranger's newer entry was not taken");
    assert_eq!(got.remote_manifest.unwrap().message_id, real.message);
    let e = delete(&other, copy_id, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no file with ID"), "{e}");
    assert_eq!(
        env.attachments_of(&m.id).len(),
        3,
        "the real parts are untouched"
    );

    // Deleting the real file removes ours and leaves the strangers' messages alone.
    delete(&other, &m.id, false).await.unwrap();
    let left: Vec<u64> = env.emu.messages(ch).iter().map(|m| m.id).collect();
    assert_eq!(left, vec![planted.id, forged.id]);
}

#[tokio::test]
async fn an_entry_naming_an_unconfigured_channel_is_rejected() {
    let env = Env::new().await;
    let a = env.emu.channel_id();
    let b = env.emu.add_channel(env.emu.guild_id());
    let s = env.session_with(|c| c.channels = vec![a, b]);
    let m = upload(&s, &env.file("ab.bin", 2 * PART as usize))
        .await
        .unwrap();
    // A machine that only knows channel a: part 1 of the entry points into b.
    let narrow = env.session_with(|c| {
        c.data_dir = env.dir.path().join("narrow");
        c.channels = vec![a];
    });
    let e = recover(&narrow).await.unwrap_err().to_string();
    assert!(e.contains("1 catalogue entry"), "{e}");
    assert!(!narrow.catalog.contains(&m.id));
}

#[tokio::test]
async fn a_large_entry_is_split_recovered_and_deleted_whole() {
    let env = Env::new().await;
    let limit = 16 * 1024;
    env.emu.set_upload_limit(env.emu.guild_id(), Some(limit));
    let s = env.session_with(|c| c.part_size = PartSize::Fixed(1024));
    let size = 300 * 1024 + 7;
    let path = env.file("many.bin", size);
    let m = upload(&s, &path).await.unwrap();
    let ch = env.emu.channel_id();
    let pieces = entry_attachments(&env, &[ch], &m.id);
    assert!(pieces.len() > 3, "{pieces:?}");
    assert!(pieces.iter().all(|(_, len)| *len <= limit), "{pieces:?}");
    assert!(pieces
        .iter()
        .any(|(n, _)| *n == format!("{}.manifest.2.json", m.id)));

    let other = fresh(&env, "other");
    assert_eq!(recover(&other).await.unwrap(), 1);
    assert_eq!(other.catalog.load_parts(&m.id).unwrap().parts.len(), 301);
    let out = env.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let got = get(&other, &m.id, &out, false).await.unwrap();
    assert_eq!(std::fs::read(got).unwrap(), std::fs::read(&path).unwrap());

    // Hiding replaces every piece; deleting removes every piece.
    delete(&other, &m.id, true).await.unwrap();
    let again = entry_attachments(&env, &[ch], &m.id);
    assert_eq!(again.len(), pieces.len());
    delete(&other, &m.id, false).await.unwrap();
    assert!(env.emu.messages(ch).is_empty());
}

#[tokio::test]
async fn resume_never_adopts_a_part_a_stranger_posted() {
    let env = Env::new().await;
    let s = env.strict_session();
    let id = env.interrupted(&s, "adopt.bin", 4, 2).await;
    let file = s.catalog.load_file(&id).unwrap();
    // Someone posts part 2 with exactly the right name and bytes.
    let bytes = std::fs::read(&file.source_path).unwrap();
    let span = &bytes[2 * PART as usize..3 * PART as usize];
    let planted = env.emu.post_as(
        STRANGER,
        env.emu.channel_id(),
        &dstore::catalog::attachment_name(&id, 2),
        span,
    );
    let done = resume(&s, &id).await.unwrap();
    assert_eq!(done.status, Status::Complete);
    let parts = s.catalog.load_parts(&id).unwrap().parts;
    assert_eq!(parts.len(), 4);
    assert!(
        parts.iter().all(|p| p.message_id != planted.id),
        "{parts:?}"
    );
    assert_eq!(env.stored_bytes(&s, &id), bytes);
}

#[tokio::test]
async fn a_configured_channel_the_file_never_used_may_be_unreadable() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 2 * PART as usize).await;
    // Later the config lists a channel the bot cannot see: the file's own are enough.
    let c = env.emu.add_channel(env.emu.guild_id());
    env.emu.set_channel_access(c, Access::NoAccess);
    let later = env.session_with(|cfg| cfg.channels = vec![env.emu.channel_id(), c]);
    delete(&later, &m.id, false).await.unwrap();
    assert!(env.emu.messages(env.emu.channel_id()).is_empty());
}
