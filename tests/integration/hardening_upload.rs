//! The upload never panics and never stores a file that never existed: a fatal error with
//! parts in flight ends the transfer with its sentence (exit status 1, the prompt goes on) and
//! `resume` finishes once the cause is gone; a source edited in place mid-upload is never
//! marked complete; a part stored before a 413 shrink can still be adopted.

use std::process::Output;
use std::time::Duration;

use dstore::catalog::Status;
use dstore_emulator::{Access, FaultAction, FaultRoute};

use crate::cli::{dstore, run};
use crate::common::{resume, upload, Env, PART};

/// Holds requests 3 to 5 up on their way in, so they are still in flight when a later one
/// fails (with concurrency 4, the sixth request goes out while those three wait).
fn stall_three(env: &Env) {
    env.fault(
        FaultRoute::CreateMessage,
        2,
        3,
        FaultAction::Stall(Duration::from_millis(1500)),
    );
}

fn only_id(s: &dstore::commands::Session) -> String {
    let ids = s.catalog.ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

#[tokio::test]
async fn permission_removed_with_parts_in_flight_stops_with_its_sentence_then_resume_finishes() {
    let env = Env::new().await;
    let s = env.session();
    assert_eq!(s.config.concurrency, 4);
    let path = env.file("perm.bin", 16 * PART as usize);
    stall_three(&env);
    let channel = env.emu.channel_id();
    let revoke = async {
        while env.emu.faults().pending() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        env.emu.set_channel_access(channel, Access::NoPermission);
    };
    let (r, ()) = tokio::join!(upload(&s, &path), revoke);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("403 Missing Permissions") && err.contains("run `resume"),
        "{err}"
    );
    let id = only_id(&s);
    assert_eq!(s.catalog.load_file(&id).unwrap().status, Status::Incomplete);

    env.emu.set_channel_access(channel, Access::Full);
    let m = resume(&s, &id).await.unwrap();
    assert_eq!(m.status, Status::Complete);
    assert_eq!(env.stored_bytes(&s, &id), std::fs::read(&path).unwrap());
    assert_eq!(env.attachments_of(&id).len(), 16, "nothing stored twice");
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reset_with_parts_in_flight_exits_1_and_resume_finishes() {
    let env = Env::new().await;
    let path = env.file("token.bin", 12 * PART as usize);
    stall_three(&env);
    env.fault(FaultRoute::CreateMessage, 0, 1, FaultAction::Status(401));
    let mut c = dstore(&env);
    c.args(["--concurrency", "4", "upload"]).arg(&path);
    let out = run(c, "").await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("401 Unauthorized") && stderr.contains("run `resume"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let s = env.session();
    let id = only_id(&s);
    let mut c = dstore(&env);
    c.args(["resume", &id]);
    let out = run(c, "").await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(s.catalog.load_file(&id).unwrap().status, Status::Complete);
    assert_eq!(env.stored_bytes(&s, &id), std::fs::read(&path).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_goes_on_after_a_fatal_error_with_parts_in_flight() {
    let env = Env::new().await;
    let path = env.file("prompt.bin", 12 * PART as usize);
    stall_three(&env);
    env.fault(FaultRoute::CreateMessage, 0, 1, FaultAction::Status(401));
    let script = format!("upload \"{}\"\nlist\n", path.display());
    let mut c = dstore(&env);
    c.args(["--concurrency", "4"]);
    let out = run(c, &script).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("401 Unauthorized"), "{stderr}");
    assert!(
        stdout.contains("prompt.bin") && stdout.contains("incomplete"),
        "`list` ran after the failed upload: {stdout} {stderr}"
    );
}

/// Writes `patch` at `offset` in place (same file, same size) and sets the modification time
/// back, so only the change time and the bytes betray the edit.
fn edit_in_place(path: &std::path::Path, offset: u64, patch: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut f = std::fs::File::options().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(patch).unwrap();
    f.set_modified(mtime).unwrap();
}

#[tokio::test]
async fn an_edit_in_place_during_the_upload_is_never_marked_complete() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.set_concurrency(1));
    let path = env.file("edited.bin", 8 * PART as usize);
    let size = std::fs::metadata(&path).unwrap().len();
    // Part 1 waits on its way in; meanwhile bytes past what the reader has reached change.
    env.fault(
        FaultRoute::CreateMessage,
        1,
        1,
        FaultAction::Stall(Duration::from_millis(1500)),
    );
    let edit = async {
        while env.emu.faults().pending() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        edit_in_place(&path, 6 * PART + 10, b"edited in place");
    };
    let (r, ()) = tokio::join!(upload(&s, &path), edit);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("has changed since its upload began") && err.contains("`upload` it again"),
        "{err}"
    );
    assert!(!err.contains("run `resume"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    let id = only_id(&s);
    let m = s.catalog.load_file(&id).unwrap();
    assert_eq!(m.status, Status::Incomplete);
    assert_eq!(m.sha256, None);
    assert!(m.remote_manifest.is_none(), "no catalogue entry was posted");
    let names: Vec<String> = env
        .emu
        .messages(env.emu.channel_id())
        .into_iter()
        .flat_map(|m| m.attachments)
        .map(|a| a.filename)
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".manifest.json")),
        "{names:?}"
    );
}

#[tokio::test]
async fn resume_refuses_another_file_put_at_the_path_even_with_the_same_bytes() {
    let env = Env::new().await;
    let s = env.strict_session();
    let id = env.interrupted(&s, "swapped.bin", 4, 1).await;
    let path = env.dir.path().join("swapped.bin");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let copy = env.dir.path().join("swapped.bin.new");
    std::fs::copy(&path, &copy).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&copy, &path).unwrap(); // an editor's save: same name, new inode
    let err = resume(&s, &id).await.unwrap_err().to_string();
    assert!(
        err.contains("another file is at that path") && err.contains("`upload` it again"),
        "{err}"
    );
    assert_eq!(env.attachments_of(&id).len(), 1, "nothing more was sent");
}

#[cfg(unix)]
#[tokio::test]
async fn resume_goes_on_after_a_chmod_between_runs() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new().await;
    let s = env.strict_session();
    let id = env.interrupted(&s, "chmod.bin", 4, 2).await;
    let path = env.dir.path().join("chmod.bin");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let m = resume(&s, &id).await.unwrap();
    assert_eq!(m.status, Status::Complete);
    assert_eq!(env.stored_bytes(&s, &id), std::fs::read(&path).unwrap());
}

#[tokio::test]
async fn a_part_stored_before_a_shrink_whose_record_is_lost_is_adopted() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.part_size = dstore::config::PartSize::Fixed(200_000);
        c.set_concurrency(1);
        c.retries = 0;
    });
    let guild = env.emu.guild_id();
    // Parts 0 and 1 go through; part 2 waits while the server's limit drops (a boost lapses),
    // so it gets a 413; one part of the new size goes through, then the upload stops.
    env.fault(
        FaultRoute::CreateMessage,
        2,
        1,
        FaultAction::Stall(Duration::from_millis(1000)),
    );
    env.fault(FaultRoute::CreateMessage, 1, 100, FaultAction::Status(500));
    let path = env.file("lapse.bin", 1_000_000);
    let lower = async {
        while env.emu.faults().pending() > 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        env.emu.set_upload_limit(guild, Some(120_000));
    };
    let (r, ()) = tokio::join!(upload(&s, &path), lower);
    let err = r.unwrap_err().to_string();
    assert!(err.contains("run `resume"), "{err}");
    env.emu.faults().clear();
    assert_eq!(env.emu.stats().status(413), 1);
    let id = only_id(&s);
    let parts = s.catalog.load_parts(&id).unwrap().parts;
    let lengths: Vec<u64> = parts.iter().map(|p| p.length).collect();
    assert_eq!(lengths, [200_000, 200_000, 100_000], "{parts:?}");

    // The record of part 0, stored before the shrink, is lost.
    let record = env.data_dir().join("files").join(&id).join("parts/0.json");
    std::fs::remove_file(&record).unwrap();
    let before = env.emu.stats().messages_created;
    let m = resume(&s, &id).await.unwrap();
    assert_eq!(m.status, Status::Complete);
    assert_eq!(
        env.emu.stats().messages_created - before,
        5 + 1,
        "part 0 adopted, the 5 parts after byte 500,000 sent, then the catalogue entry"
    );
    assert!(record.exists(), "part 0 is recorded again");
    assert_eq!(env.stored_bytes(&s, &id), std::fs::read(&path).unwrap());
    assert_eq!(env.attachments_of(&id).len(), 8, "nothing stored twice");
}

/// Rewrites `file.json` of `id` through `f`.
fn edit_file_json(env: &Env, id: &str, f: impl FnOnce(&mut serde_json::Value)) {
    let path = env.data_dir().join("files").join(id).join("file.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[tokio::test]
async fn a_damaged_layout_or_channel_list_is_reported_not_a_panic() {
    let env = Env::new().await;
    let s = env.strict_session();
    let id = env.interrupted(&s, "damaged.bin", 4, 1).await;
    let good = std::fs::read(env.data_dir().join("files").join(&id).join("file.json")).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 3] = [
        ("part size 0", |v| v["layout"][0]["part_size"] = 0.into()),
        ("past the end", |v| v["layout"][0]["end"] = u64::MAX.into()),
        ("no channel", |v| v["channels"] = serde_json::json!([])),
    ];
    for (what, edit) in edits {
        edit_file_json(&env, &id, edit);
        let info = dstore::commands::FileJson::of(&s.catalog, &s.catalog.load_file(&id).unwrap());
        assert_eq!(info.parts_done, 1, "{what}");
        let err = resume(&s, &id).await.unwrap_err().to_string();
        assert!(err.contains("disagree about its parts"), "{what}: {err}");
        assert!(!err.contains("run `resume"), "{what}: {err}");
        std::fs::write(
            env.data_dir().join("files").join(&id).join("file.json"),
            &good,
        )
        .unwrap();
    }
    assert_eq!(resume(&s, &id).await.unwrap().status, Status::Complete);
}

#[tokio::test]
async fn a_source_change_caught_on_retry_with_parts_in_flight_stops_with_the_sentence() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.retry_base = Duration::from_millis(500));
    let path = env.file("retry.bin", 12 * PART as usize);
    stall_three(&env);
    env.fault(FaultRoute::CreateMessage, 0, 1, FaultAction::Status(500));
    let change = async {
        while env.emu.stats().status(500) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Before the retry re-reads its part: every byte after the first two parts changes.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[2 * PART as usize..]
            .iter_mut()
            .for_each(|b| *b ^= 0xff);
        std::fs::write(&path, &bytes).unwrap();
    };
    let (r, ()) = tokio::join!(upload(&s, &path), change);
    let err = r.unwrap_err().to_string();
    assert!(err.contains("has changed since its upload began"), "{err}");
    assert!(!err.contains("run `resume"), "{err}");
    let id = only_id(&s);
    assert_eq!(s.catalog.load_file(&id).unwrap().status, Status::Incomplete);
}
