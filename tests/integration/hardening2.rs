//! The spine's guarantees in format 2: a fatal error with packs in flight ends the upload with its
//! sentence and `resume` finishes; a source edited in place mid-upload is never marked complete
//! and no entry is posted; a network outage of seconds is ridden out.

use std::time::Duration;

use dstore::catalog::Status;
use dstore::config::PartSize;
use dstore::repo::crypto::ObjectKind;
use dstore_emulator::{Access, FaultAction, FaultRoute};
use tokio_util::sync::CancellationToken;

use crate::common::{random_bytes, Env};
use crate::upload2::{put, rebuilt, repo, upload2, ATTACHMENT};

fn entries(env: &Env, r: &dstore::commands::upload2::RepoKeys) -> usize {
    env.emu
        .messages(env.emu.channel_id())
        .into_iter()
        .flat_map(|m| m.attachments)
        .filter(|a| r.keys.name_kind(&a.filename) == Some(ObjectKind::Entry))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_removed_with_packs_in_flight_stops_with_its_sentence_then_resume_finishes() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.part_size = PartSize::Fixed(ATTACHMENT);
        c.set_concurrency(4);
    });
    let r = repo(true);
    let data = random_bytes(12_000_000, 61);
    let path = put(&env, "perm.bin", &data);
    // Packs 2 to 4 wait on their way in, so they are in flight when the permission goes.
    env.fault(
        FaultRoute::CreateMessage,
        2,
        3,
        FaultAction::Stall(Duration::from_millis(1500)),
    );
    let channel = env.emu.channel_id();
    let revoke = async {
        while env.emu.faults().pending() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        env.emu.set_channel_access(channel, Access::NoPermission);
    };
    let (res, ()) = tokio::join!(upload2(&s, &r, &path), revoke);
    let err = match res {
        Ok(_) => panic!("the upload should stop"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("403 Missing Permissions") && err.contains("run `resume"),
        "{err}"
    );
    let id = s.catalog.ids()[0].clone();
    assert_eq!(s.catalog.load_file(&id).unwrap().status, Status::Incomplete);
    env.emu.set_channel_access(channel, Access::Full);
    let file = s.catalog.load_file(&id).unwrap();
    let m = dstore::commands::upload2::resume(&s, &r, file, true, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(rebuilt(&env, &r, &m), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_in_place_during_a_format_2_upload_is_never_marked_complete() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.part_size = PartSize::Fixed(ATTACHMENT);
        c.set_concurrency(1);
    });
    let r = repo(true);
    let path = put(&env, "edited.bin", random_bytes(8_000_000, 62));
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
        use std::io::{Seek, SeekFrom, Write};
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut f = std::fs::File::options().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(7_000_000)).unwrap();
        f.write_all(b"edited in place").unwrap();
        f.set_modified(mtime).unwrap();
    };
    let (res, ()) = tokio::join!(upload2(&s, &r, &path), edit);
    let err = match res {
        Ok(_) => panic!("an edited file must not complete"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("has changed since its upload began"), "{err}");
    assert!(!err.contains("run `resume"), "{err}");
    let id = s.catalog.ids()[0].clone();
    let m = s.catalog.load_file(&id).unwrap();
    assert_eq!((m.status, &m.sha256), (Status::Incomplete, &None));
    assert!(m.chunks.is_empty() && m.remote_manifest.is_none());
    assert_eq!(entries(&env, &r), 0, "no catalogue entry was posted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_2_upload_rides_out_a_network_outage() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.part_size = PartSize::Fixed(ATTACHMENT);
        c.retries = 8;
        c.retry_base = Duration::from_millis(200);
    });
    let r = repo(true);
    let data = random_bytes(6_000_000, 63);
    let path = put(&env, "outage.bin", &data);
    env.fault(
        FaultRoute::Any,
        3,
        0,
        FaultAction::Outage(Duration::from_secs(3)),
    );
    let m = upload2(&s, &r, &path).await.unwrap();
    assert_eq!(m.status, Status::Complete);
    assert_eq!(rebuilt(&env, &r, &m), data);
    assert_eq!(entries(&env, &r), 1);
}
