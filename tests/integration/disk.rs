//! Files on disk: the partial file is never written through a link, a file that appears at the
//! destination during a download is not replaced, bad destinations are refused before a byte
//! is fetched, and modes (private data dir and log, the source's mode on a downloaded file).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dstore::commands::download;
use dstore_emulator::{FaultAction, FaultRoute};
use tokio_util::sync::CancellationToken;

use crate::cli::{dstore, run};
use crate::common::{round_trip, Env, PART};
use crate::download::get;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn out_dir(env: &Env) -> PathBuf {
    let d = env.dir.path().join("out");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_symlink_at_the_partial_name_is_not_written_through() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 1000).await;
    let dir = out_dir(&env);
    let victim = env.dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let partial = dir.join(format!(".f1000.bin.{}.dstore-partial", m.id));
    std::os::unix::fs::symlink(&victim, &partial).unwrap();
    let before = env.emu.stats().requests;
    let err = get(&s, &m.id, &dir, false).await.unwrap_err().to_string();
    assert!(
        err.contains("symbolic link") && err.contains("remove it"),
        "{err}"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(env.emu.stats().requests, before, "nothing was fetched");
    assert!(!dir.join("f1000.bin").exists());
}

#[tokio::test]
async fn a_file_that_appears_during_the_download_is_not_replaced() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.set_concurrency(1));
    let m = round_trip(&env, &s, 3 * PART as usize).await;
    // The first CDN fetch is held long enough for another program to create the file.
    env.fault(
        FaultRoute::Cdn,
        0,
        1,
        FaultAction::Stall(Duration::from_secs(2)),
    );
    let dir = out_dir(&env);
    let target = dir.join("f196608.bin");
    let other_program = async {
        while env.emu.faults().pending() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        std::fs::write(&target, b"precious").unwrap();
    };
    let (r, ()) = tokio::join!(get(&s, &m.id, &dir, false), other_program);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("appeared during the download") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    // With --force the verified partial file replaces it, without fetching anything again.
    let before = env.emu.stats().requests;
    get(&s, &m.id, &dir, true).await.unwrap();
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(env.dir.path().join("f196608.bin")).unwrap()
    );
    assert_eq!(env.emu.stats().requests, before);
    assert_eq!(names(&dir), ["f196608.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_folder_written_with_a_slash_is_refused_leaving_nothing() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 1000).await;
    let dir = out_dir(&env);
    let before = env.emu.stats().requests;
    let mut c = dstore(&env);
    c.current_dir(&dir).args(["download", &m.id, "nodir/"]);
    let out = run(c, "").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the folder nodir/ does not exist"),
        "{stderr}"
    );
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    assert_eq!(env.emu.stats().requests, before, "nothing was fetched");
}

#[tokio::test]
async fn an_existing_file_written_with_a_slash_is_refused_even_with_force() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 1000).await;
    let dir = out_dir(&env);
    let file = dir.join("file.txt");
    std::fs::write(&file, b"precious").unwrap();
    let before = env.emu.stats().requests;
    let dest = PathBuf::from(format!("{}/", file.display()));
    let err = get(&s, &m.id, &dest, true).await.unwrap_err().to_string();
    assert!(err.contains("is not a folder"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    assert_eq!(names(&dir), ["file.txt"]);
    assert_eq!(env.emu.stats().requests, before, "nothing was fetched");
}

/// A folder no one can create files in. Permission bits do not stop root, so as root the
/// folder is made immutable instead (`chattr +i`, which stops root too); undone on drop.
struct Unwritable(PathBuf);

impl Unwritable {
    fn new(dir: PathBuf) -> Option<Self> {
        std::fs::create_dir_all(&dir).unwrap();
        let probe = tempfile::tempfile().unwrap();
        let root = std::os::unix::fs::MetadataExt::uid(&probe.metadata().unwrap()) == 0;
        if !root {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
            return Some(Self(dir));
        }
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(dir))
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700));
    }
}

#[tokio::test]
async fn an_unwritable_folder_is_refused_before_a_byte_is_fetched() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 1000).await;
    let Some(dir) = Unwritable::new(env.dir.path().join("locked")) else {
        eprintln!("note: running as root where `chattr +i` fails; no folder is unwritable here");
        return;
    };
    let before = env.emu.stats().requests;
    let err = get(&s, &m.id, &dir.0, false).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot create a file in") && err.contains("choose a folder you can write to"),
        "{err}"
    );
    assert!(!err.contains("again"), "retrying cannot help: {err}");
    assert!(names(&dir.0).is_empty());
    assert_eq!(env.emu.stats().requests, before, "nothing was fetched");
}

#[tokio::test]
async fn a_downloaded_file_gets_the_sources_mode() {
    let env = Env::new().await;
    let s = env.session();
    let src = env.file("script.sh", 1000);
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o751)).unwrap();
    let m = crate::common::upload(&s, &src).await.unwrap();
    let dir = out_dir(&env);
    let got = get(&s, &m.id, &dir, false).await.unwrap();
    assert_eq!(mode(&got), 0o751);

    // Set-user-ID is not given back: the file now belongs to whoever downloads it.
    let src = env.file("suid.sh", 1001);
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let m = crate::common::upload(&s, &src).await.unwrap();
    let got = get(&s, &m.id, &dir.join("suid"), false).await.unwrap();
    assert_eq!(
        std::fs::metadata(&got).unwrap().permissions().mode() & 0o7777,
        0o755
    );

    // Uploaded without a mode (a recovered file of an older version): what a new file gets.
    let path = env.data_dir().join("files").join(&m.id).join("file.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("mode");
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let got = get(&s, &m.id, &dir.join("plain"), false).await.unwrap();
    let fresh = dir.join("fresh");
    std::fs::File::create(&fresh).unwrap();
    assert_eq!(mode(&got), mode(&fresh));
}

#[tokio::test]
async fn the_partial_file_is_private_while_it_downloads() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.set_concurrency(1));
    let m = round_trip(&env, &s, 3 * PART as usize).await;
    env.fault(
        FaultRoute::Cdn,
        1,
        1,
        FaultAction::Stall(Duration::from_secs(30)),
    );
    let dir = out_dir(&env);
    let partial = dir.join(format!(".f196608.bin.{}.dstore-partial", m.id));
    let cancel = CancellationToken::new();
    let look = async {
        while env.emu.faults().pending() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let seen = mode(&partial);
        cancel.cancel();
        seen
    };
    let (r, seen) = tokio::join!(
        download::download(&s, &m.id, Some(&dir), false, true, cancel.clone()),
        look
    );
    r.unwrap_err();
    assert_eq!(seen, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_and_log_are_private() {
    let env = Env::new().await;
    let data = env.dir.path().join("fresh").join("data");
    let mut c = dstore(&env);
    c.env("DSTORE_DATA_DIR", &data).arg("list");
    let out = run(c, "").await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("files")), 0o700);
    assert_eq!(mode(&data.join("dstore.log")), 0o600);

    // A log and a catalogue folder an earlier version left open to others are made private.
    for p in [data.join("dstore.log"), data.join("files")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut c = dstore(&env);
    c.env("DSTORE_DATA_DIR", &data).arg("list");
    assert!(run(c, "").await.status.success());
    assert_eq!(mode(&data.join("dstore.log")), 0o600);
    assert_eq!(mode(&data.join("files")), 0o700);
}
