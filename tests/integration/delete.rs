//! `delete`, `delete --keep-remote` and `undelete`: bulk deletes for young messages, one by one
//! for old ones, a delete stopped half-way then finished by running it again, unfinished
//! uploads (unrecorded parts included), hiding without touching Discord, and the refusal to
//! delete unasked when stdin is not a terminal.

use std::time::Duration;

use dstore::cli::Command;
use dstore::commands::Session;
use dstore_emulator::{Access, FaultAction, FaultRoute};
use tokio_util::sync::CancellationToken;

use crate::cli::{dstore, run};
use crate::common::{round_trip, upload, Env, PART};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

async fn delete(s: &Session, id: &str) -> anyhow::Result<()> {
    let cmd = Command::Delete {
        id: id.into(),
        yes: true,
        keep_remote: false,
    };
    s.run(cmd, CancellationToken::new()).await
}

async fn hide(s: &Session, id: &str) -> anyhow::Result<()> {
    let cmd = Command::Delete {
        id: id.into(),
        yes: true,
        keep_remote: true,
    };
    s.run(cmd, CancellationToken::new()).await
}

async fn undelete(s: &Session, id: &str) -> anyhow::Result<()> {
    let cmd = Command::Undelete { id: id.into() };
    s.run(cmd, CancellationToken::new()).await
}

/// Nothing of the file is left on disk: no manifest, no folder, no leftover of a removal.
fn gone_locally(env: &Env, s: &Session, id: &str) {
    assert!(!s.catalog.contains(id));
    let left: Vec<_> = std::fs::read_dir(env.data_dir().join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Moves every message of the emulator's channel back by `by`.
fn age_all(env: &Env, by: Duration) {
    let ch = env.emu.channel_id();
    for m in env.emu.messages(ch) {
        env.emu.age_message(ch, m.id, by);
    }
}

#[tokio::test]
async fn young_parts_go_in_one_bulk_delete() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 10 * PART as usize).await;
    assert_eq!(env.attachments_of(&m.id).len(), 10);
    // Any single delete fails: only the bulk route can remove the parts.
    env.fault(FaultRoute::DeleteMessage, 0, 100, FaultAction::Status(403));
    let before = env.emu.stats();
    delete(&s, &m.id).await.unwrap();
    let after = env.emu.stats();
    assert!(
        env.emu.messages(env.emu.channel_id()).is_empty(),
        "parts and manifest"
    );
    assert_eq!(
        after.requests - before.requests,
        2,
        "one listing (for stray catalogue entries and parts) and one bulk-delete request"
    );
    assert_eq!(after.status(204) - before.status(204), 1);
    gone_locally(&env, &s, &m.id);
}

#[tokio::test]
async fn a_lone_part_is_deleted_without_bulk() {
    let env = Env::new().await;
    let second = env.emu.add_channel(env.emu.guild_id());
    let channels = vec![env.emu.channel_id(), second];
    let s = env.session_with(|c| c.channels = channels.clone());
    // Parts 0 and 2 and the file's manifest go to the first channel, part 1 alone to the second.
    let m = round_trip_on(&env, &s, 3).await;
    assert_eq!(env.emu.messages(second).len(), 1);
    // Bulk delete takes 2 to 100 ids (discord-api.md §4): only the first channel uses it.
    env.fault(FaultRoute::BulkDelete, 1, 100, FaultAction::Status(403));
    delete(&s, &m.id).await.unwrap();
    assert!(env.emu.messages(env.emu.channel_id()).is_empty());
    assert!(env.emu.messages(second).is_empty());
    assert_eq!(env.emu.stats().status(403), 0);
    gone_locally(&env, &s, &m.id);
}

#[tokio::test]
async fn parts_older_than_14_days_are_deleted_one_by_one() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 5 * PART as usize).await;
    age_all(&env, 15 * DAY);
    let before = env.emu.stats();
    delete(&s, &m.id).await.unwrap();
    let after = env.emu.stats();
    assert!(env.emu.messages(env.emu.channel_id()).is_empty());
    // The emulator ages the timestamp, not the snowflake, so the bulk request is tried once
    // and refused (400, 50034); then every part goes alone.
    assert_eq!(after.status(400) - before.status(400), 1);
    assert_eq!(
        after.status(204) - before.status(204),
        6,
        "5 parts and the manifest"
    );
    gone_locally(&env, &s, &m.id);
}

#[tokio::test]
async fn without_manage_messages_parts_are_deleted_one_by_one() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 4 * PART as usize).await;
    // Read access only: bulk delete answers 403 50013, deleting its own messages still works.
    env.emu
        .set_channel_access(env.emu.channel_id(), Access::NoPermission);
    let before = env.emu.stats();
    delete(&s, &m.id).await.unwrap();
    let after = env.emu.stats();
    assert!(env.emu.messages(env.emu.channel_id()).is_empty());
    assert_eq!(after.status(403) - before.status(403), 1, "bulk tried once");
    assert_eq!(
        after.status(204) - before.status(204),
        5,
        "4 parts and the manifest"
    );
    gone_locally(&env, &s, &m.id);
}

#[tokio::test]
async fn a_bulk_delete_stopped_half_way_finishes_when_run_again() {
    let env = Env::new().await;
    let second = env.emu.add_channel(env.emu.guild_id());
    let channels = vec![env.emu.channel_id(), second];
    let s = env.session_with(|c| {
        c.channels = channels.clone();
        c.retries = 0;
    });
    let m = round_trip_on(&env, &s, 8).await;
    assert_eq!(env.emu.messages(second).len(), 4);
    // The first channel's bulk delete (4 parts and the manifest) goes through, the second
    // channel's is refused.
    env.fault(FaultRoute::BulkDelete, 1, 1, FaultAction::Status(403));
    let err = delete(&s, &m.id).await.unwrap_err().to_string();
    assert!(
        err.contains("5/9") && err.contains(&format!("`delete {}` again", m.id)),
        "{err}"
    );
    assert!(env.emu.messages(env.emu.channel_id()).is_empty());
    assert_eq!(env.emu.messages(second).len(), 4);
    let left = s.catalog.load_parts(&m.id).unwrap().parts;
    assert_eq!(left.len(), 4, "the manifests of deleted parts are gone");
    assert!(left.iter().all(|p| p.channel_id == second));

    delete(&env.session(), &m.id).await.unwrap();
    assert!(env.emu.messages(second).is_empty());
    gone_locally(&env, &s, &m.id);
}

/// Uploads a file of `parts` parts spread over the session's channels.
async fn round_trip_on(env: &Env, s: &Session, parts: u64) -> dstore::catalog::FileManifest {
    let path = env.file("spread.bin", (parts * PART) as usize);
    let m = upload(s, &path).await.unwrap();
    assert_eq!(env.stored_bytes(s, &m.id), std::fs::read(&path).unwrap());
    m
}

#[tokio::test]
async fn single_deletes_stopped_half_way_finish_when_run_again() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.retries = 0);
    let m = round_trip(&env, &s, 6 * PART as usize).await;
    age_all(&env, 15 * DAY);
    // The manifest and part 0 go, part 1's delete fails for good.
    env.fault(FaultRoute::DeleteMessage, 2, 1, FaultAction::Reset);
    let err = delete(&s, &m.id).await.unwrap_err().to_string();
    assert!(err.contains("2/7") && err.contains("gave up"), "{err}");
    assert_eq!(env.attachments_of(&m.id).len(), 5);
    let left = s.catalog.load_parts(&m.id).unwrap().parts;
    assert_eq!(left.len(), 5);
    assert_eq!(left[0].index, 1);
    // Someone removes one of the rest meanwhile: already gone counts as deleted.
    assert!(env
        .emu
        .delete_message(left[1].channel_id, left[1].message_id));

    delete(&env.session(), &m.id).await.unwrap();
    assert!(env.emu.messages(env.emu.channel_id()).is_empty());
    gone_locally(&env, &s, &m.id);
}

#[tokio::test]
async fn deleting_an_unfinished_upload_removes_its_unrecorded_part_too() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.set_concurrency(1);
        c.retries = 0;
    });
    // Part 3 reaches Discord but its reply is lost; the upload stops there.
    env.fault(
        FaultRoute::CreateMessage,
        3,
        1,
        FaultAction::ResetAfterCommit,
    );
    let path = env.file("half.bin", 8 * PART as usize);
    upload(&s, &path).await.unwrap_err();
    let id = s.catalog.ids()[0].clone();
    assert_eq!(s.catalog.part_indices(&id).len(), 3);
    assert_eq!(env.attachments_of(&id).len(), 4);

    delete(&s, &id).await.unwrap();
    assert!(env.emu.messages(env.emu.channel_id()).is_empty());
    gone_locally(&env, &s, &id);
}

#[tokio::test]
async fn keep_remote_hides_from_list_and_undelete_restores() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 3 * PART as usize).await;
    let parts_before = env.attachments_of(&m.id);
    hide(&s, &m.id).await.unwrap();
    let hidden = s.catalog.load_file(&m.id).unwrap();
    assert!(hidden.hidden);
    assert_eq!(
        env.attachments_of(&m.id),
        parts_before,
        "parts stay on Discord"
    );
    assert_eq!(
        env.emu.messages(env.emu.channel_id()).len(),
        4,
        "parts and one manifest, now saying hidden"
    );
    assert_ne!(
        hidden.remote_manifest, m.remote_manifest,
        "the manifest was replaced"
    );
    // A catalogue recovered from Discord keeps the file hidden.
    let other = env.session_with(|c| c.data_dir = env.dir.path().join("elsewhere"));
    dstore::commands::recover::recover(&other, true, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert!(other.catalog.load_file(&m.id).unwrap().hidden);
    assert_eq!(s.catalog.part_indices(&m.id).len(), 3);

    let listed = |all: bool| {
        let mut c = dstore(&env);
        c.args(["list", "--json"]);
        if all {
            c.arg("--all");
        }
        c
    };
    let out = run(listed(false), "").await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0, "hidden from `list`");
    let out = run(listed(true), "").await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], m.id.as_str(), "shown by `list --all`");
    let mut c = dstore(&env);
    c.args(["list", "--all"]);
    let out = run(c, "").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("complete (hidden)"), "{text}");

    undelete(&s, &m.id).await.unwrap();
    assert!(!s.catalog.load_file(&m.id).unwrap().hidden);
    undelete(&s, &m.id).await.unwrap();
    let out = run(listed(false), "").await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], m.id.as_str());
    assert_eq!(env.stored_bytes(&s, &m.id).len(), 3 * PART as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_stdin_without_yes_refuses_and_yes_deletes() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 2 * PART as usize).await;
    let mut c = dstore(&env);
    c.args(["delete", &m.id]);
    let out = run(c, "y\n").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("add `--yes`"), "{stderr}");
    assert_eq!(env.attachments_of(&m.id).len(), 2, "nothing deleted");
    assert!(s.catalog.contains(&m.id));

    let mut c = dstore(&env);
    c.args(["delete", "--yes", &m.id]);
    let out = run(c, "").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!(
            "Deleted {} ({}): 3 messages removed from Discord.",
            m.name, m.id
        )
    );
    assert!(env.emu.messages(env.emu.channel_id()).is_empty());
    gone_locally(&env, &s, &m.id);
}

#[tokio::test]
async fn unknown_ids_are_reported() {
    let env = Env::new().await;
    let s = env.session();
    for r in [
        delete(&s, "abcdefghjk").await,
        hide(&s, "abcdefghjk").await,
        undelete(&s, "abcdefghjk").await,
        delete(&s, "../../etc").await,
    ] {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("no file with ID"), "{e}");
    }
    assert_eq!(env.emu.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_it_asks_first() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 2 * PART as usize).await;
    let question = format!(
        "Delete {} (128.0 KiB, 2 parts) from Discord? [y/N] ",
        m.name
    );
    for (answer, reply) in [("n", "Nothing was deleted."), ("yes", "Deleted ")] {
        let mut c = dstore(&env);
        c.args(["delete", &m.id]);
        let question = question.clone();
        crate::pty::on_terminal(c, move |p| {
            p.expect(question.as_str()).unwrap();
            p.send_line(answer).unwrap();
            p.expect(reply).unwrap();
            p.expect(expectrl::Eof).unwrap();
        })
        .await;
        if answer == "n" {
            assert_eq!(env.attachments_of(&m.id).len(), 2);
            assert!(s.catalog.contains(&m.id));
        }
    }
    assert!(env.emu.messages(env.emu.channel_id()).is_empty());
    gone_locally(&env, &s, &m.id);
}
