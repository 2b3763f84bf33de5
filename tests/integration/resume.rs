//! Resume: skips confirmed parts, adopts parts Discord holds but no manifest records, refuses a
//! changed source, survives a damaged part manifest, and knows complete and unknown files.

use std::time::Duration;

use dstore::catalog::Status;
use dstore_emulator::{FaultAction, FaultRoute};
use tokio_util::sync::CancellationToken;

use crate::common::{resume, upload, Env, PART};

#[tokio::test]
async fn resume_sends_only_missing_parts() {
    let env = Env::new().await;
    let s = env.strict_session();
    let id = env.interrupted(&s, "r.bin", 6, 2).await;
    assert_eq!(env.attachments_of(&id).len(), 2);
    let before = env.emu.stats().messages_created;
    let m = resume(&s, &id).await.unwrap();
    assert_eq!(m.status, Status::Complete);
    assert_eq!(
        env.emu.stats().messages_created - before,
        4 + 1,
        "only the 4 missing parts, then the manifest"
    );
    assert_eq!(
        env.stored_bytes(&s, &id),
        std::fs::read(env.dir.path().join("r.bin")).unwrap()
    );
}

#[tokio::test]
async fn unrecorded_part_on_discord_is_adopted_not_resent() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.set_concurrency(1));
    // The third part is stored by Discord, but its reply never arrives; the user gives up.
    env.fault(
        FaultRoute::CreateMessage,
        2,
        1,
        FaultAction::StallAfterCommit(Duration::from_secs(30)),
    );
    let path = env.file("a.bin", 5 * PART as usize);
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    let watch = async {
        while env.attachments_of_all() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stopper.cancel();
    };
    let (r, ()) = tokio::join!(
        dstore::commands::upload::upload(&s, &path, true, cancel),
        watch
    );
    assert!(r.unwrap_err().to_string().contains("cancelled"));
    let id = s.catalog.ids()[0].clone();
    assert_eq!(s.catalog.load_parts(&id).unwrap().parts.len(), 2);
    let before = env.emu.stats().messages_created;
    resume(&s, &id).await.unwrap();
    assert_eq!(
        env.emu.stats().messages_created - before,
        2 + 1,
        "part 2 adopted, parts 3-4 sent, then the manifest"
    );
    assert_eq!(env.attachments_of(&id).len(), 5);
    assert_eq!(env.stored_bytes(&s, &id), std::fs::read(&path).unwrap());
}

impl Env {
    fn attachments_of_all(&self) -> usize {
        self.emu.messages(self.emu.channel_id()).len()
    }
}

#[tokio::test]
async fn changed_source_is_refused_and_nothing_is_overwritten() {
    let env = Env::new().await;
    let s = env.strict_session();
    let id = env.interrupted(&s, "c.bin", 4, 1).await;
    let manifest = std::fs::read(env.data_dir().join("files").join(&id).join("file.json")).unwrap();
    let path = env.dir.path().join("c.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1; // same size, new mtime
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, &bytes).unwrap();
    let err = resume(&s, &id).await.unwrap_err().to_string();
    assert!(
        err.contains("has changed since its upload began") && err.contains("`upload` it again"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(env.data_dir().join("files").join(&id).join("file.json")).unwrap(),
        manifest
    );
    assert_eq!(env.attachments_of(&id).len(), 1);

    std::fs::remove_file(&path).unwrap();
    let err = resume(&s, &id).await.unwrap_err().to_string();
    assert!(
        err.contains("no longer there") && err.contains("put it back"),
        "{err}"
    );
}

#[tokio::test]
async fn same_size_and_mtime_but_different_bytes_is_caught_by_part_hashes() {
    let env = Env::new().await;
    let s = env.strict_session();
    let id = env.interrupted(&s, "h.bin", 4, 2).await;
    let path = env.dir.path().join("h.bin");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let err = resume(&s, &id).await.unwrap_err().to_string();
    assert!(err.contains("no longer match part 0"), "{err}");
    assert_eq!(env.attachments_of(&id).len(), 2, "nothing more was sent");
}

#[tokio::test]
async fn damaged_part_manifest_is_recovered_from_discord() {
    let env = Env::new().await;
    let s = env.strict_session();
    let id = env.interrupted(&s, "d.bin", 4, 2).await;
    let part = env
        .data_dir()
        .join("files")
        .join(&id)
        .join("parts")
        .join("1.json");
    std::fs::write(&part, b"{\"format\": 1, \"index\": 1, \"offs").unwrap();
    let before = env.emu.stats().messages_created;
    let m = resume(&s, &id).await.unwrap();
    assert_eq!(m.status, Status::Complete);
    assert_eq!(
        env.emu.stats().messages_created - before,
        2 + 1,
        "part 1 was adopted, not resent; then the manifest"
    );
    assert!(
        part.with_extension("json.corrupt").exists(),
        "the damaged file is kept aside"
    );
    assert_eq!(
        env.stored_bytes(&s, &id),
        std::fs::read(env.dir.path().join("d.bin")).unwrap()
    );
}

#[tokio::test]
async fn complete_and_unknown_ids() {
    let env = Env::new().await;
    let s = env.session();
    let m = crate::common::round_trip(&env, &s, 100).await;
    let before = env.emu.stats().requests;
    assert_eq!(resume(&s, &m.id).await.unwrap().status, Status::Complete);
    assert_eq!(
        env.emu.stats().requests,
        before,
        "a complete file needs no request"
    );
    let err = resume(&s, "abcdefghjk").await.unwrap_err().to_string();
    assert!(
        err.contains("no file with ID") && err.contains("list"),
        "{err}"
    );
}

#[tokio::test]
async fn a_source_changed_between_attempts_is_caught_not_sent() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.set_concurrency(1);
        c.retry_base = Duration::from_millis(400);
    });
    // Part 1's first attempt fails; the file changes before the retry re-reads the part.
    env.fault(FaultRoute::CreateMessage, 1, 1, FaultAction::Status(500));
    let path = env.file("moving.bin", 3 * PART as usize);
    let change = async {
        while env.emu.stats().status(500) == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[PART as usize + 1] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
    };
    let (r, ()) = tokio::join!(upload(&s, &path), change);
    let err = r.unwrap_err().to_string();
    // The same sentence as a change the reader or the final check notices.
    assert!(err.contains("has changed since its upload began"), "{err}");
    assert!(!err.contains("run `resume"), "resuming cannot help: {err}");
    let id = s.catalog.ids()[0].clone();
    assert_eq!(
        env.attachments_of(&id).len(),
        1,
        "the changed part was not sent"
    );
}

#[tokio::test]
async fn a_file_in_use_by_another_process_is_left_alone() {
    let env = Env::new().await;
    let s = env.strict_session();
    let id = env.interrupted(&s, "busy.bin", 3, 1).await;
    // Another dstore (here: a second handle on the same data dir) is working on the file.
    let held = env.session().catalog.lock(&id).unwrap();
    let before = env.emu.stats().requests;
    let err = resume(&s, &id).await.unwrap_err().to_string();
    assert!(err.contains("in use by another dstore process"), "{err}");
    let cmd = dstore::cli::Command::Delete {
        id: id.clone(),
        yes: true,
        keep_remote: false,
    };
    let err = s
        .run(cmd, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("in use"), "{err}");
    assert_eq!(env.emu.stats().requests, before, "nothing was sent");
    drop(held);
    assert_eq!(resume(&s, &id).await.unwrap().status, Status::Complete);
}
