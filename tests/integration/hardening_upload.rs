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
