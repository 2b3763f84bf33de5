//! Getting files back: round trips through download, fresh URLs when they expire, corrupted CDN
//! bytes, deleted parts, an interrupted download resumed, existing destinations, hostile names,
//! and `verify`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dstore::cli::Command;
use dstore::commands::{download, Session};
use dstore_emulator::{FaultAction, FaultRoute};
use tokio_util::sync::CancellationToken;

use crate::common::{round_trip, Env, PART};

pub async fn get(s: &Session, id: &str, dest: &Path, force: bool) -> anyhow::Result<PathBuf> {
    download::download(s, id, Some(dest), force, true, CancellationToken::new()).await
}

fn out_dir(env: &Env) -> PathBuf {
    let d = env.dir.path().join("out");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn every_size_class_comes_back_identical_with_its_mtime() {
    let env = Env::new().await;
    let s = env.session();
    let p = PART as usize;
    for size in [0, 1, p, p + 1, 5 * p + 7] {
        let m = round_trip(&env, &s, size).await;
        let dir = env.dir.path().join(format!("out{size}"));
        std::fs::create_dir_all(&dir).unwrap();
        let got = get(&s, &m.id, &dir, false).await.unwrap();
        assert_eq!(got, dir.join(format!("f{size}.bin")));
        let src = env.dir.path().join(format!("f{size}.bin"));
        assert_eq!(
            std::fs::read(&got).unwrap(),
            std::fs::read(&src).unwrap(),
            "size {size}"
        );
        let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        assert_eq!(mtime(&got), mtime(&src));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no partial file left"
        );
    }
}

#[tokio::test]
async fn expired_urls_are_fetched_again() {
    let env = Env::with(|c| {
        c.rate_limits = None;
        c.cdn_url_ttl = Duration::from_secs(1);
    })
    .await;
    let s = env.session_with(|c| c.set_concurrency(1));
    let m = round_trip(&env, &s, 3 * PART as usize).await;
    // The CDN answers the first fetch only after its signed URL has expired.
    env.fault(
        FaultRoute::Cdn,
        0,
        1,
        FaultAction::Stall(Duration::from_millis(2100)),
    );
    let got = get(&s, &m.id, &out_dir(&env), false).await.unwrap();
    assert_eq!(
        std::fs::read(got).unwrap(),
        std::fs::read(env.dir.path().join("f196608.bin")).unwrap()
    );
    assert!(
        env.emu.stats().status(404) >= 1,
        "the expired URL was refused"
    );
}

#[tokio::test]
async fn corrupted_bytes_are_fetched_again_or_reported() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 4 * PART as usize).await;
    env.fault(FaultRoute::Cdn, 1, 2, FaultAction::CorruptBytes);
    let dir = out_dir(&env);
    let got = get(&s, &m.id, &dir, false).await.unwrap();
    assert_eq!(
        std::fs::read(&got).unwrap(),
        std::fs::read(env.dir.path().join("f262144.bin")).unwrap()
    );
    std::fs::remove_file(&got).unwrap();

    // Damaged every time: the download fails naming a part, and nothing appears at DEST.
    env.fault(FaultRoute::Cdn, 0, 1000, FaultAction::CorruptBytes);
    let err = get(&s, &m.id, &dir, false).await.unwrap_err().to_string();
    assert!(
        err.contains("part 0 (bytes 0..65536)") && err.contains("damaged"),
        "{err}"
    );
    assert!(!got.exists());
}

#[tokio::test]
async fn a_deleted_part_is_named_and_the_rest_still_downloads() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 3 * PART as usize).await;
    let parts = s.catalog.load_parts(&m.id).unwrap().parts;
    assert!(env
        .emu
        .delete_message(parts[1].channel_id, parts[1].message_id));
    let dir = out_dir(&env);
    let err = get(&s, &m.id, &dir, false).await.unwrap_err().to_string();
    assert!(
        err.contains("part 1 (bytes 65536..131072)") && err.contains("deleted"),
        "{err}"
    );
    assert!(!dir.join("f196608.bin").exists(), "nothing at DEST");
    let partial = dir.join(format!(".f196608.bin.{}.dstore-partial", m.id));
    let have = std::fs::read(&partial).unwrap();
    let want = std::fs::read(env.dir.path().join("f196608.bin")).unwrap();
    assert_eq!(have[..65536], want[..65536]);
    assert_eq!(have[131072..], want[131072..]);
}

#[tokio::test]
async fn an_existing_destination_needs_force() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 1000).await;
    let dir = out_dir(&env);
    let target = dir.join("f1000.bin");
    std::fs::write(&target, b"precious").unwrap();
    let err = get(&s, &m.id, &dir, false).await.unwrap_err().to_string();
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    get(&s, &m.id, &target, true).await.unwrap();
    assert_eq!(std::fs::read(&target).unwrap().len(), 1000);
}

#[tokio::test]
async fn a_hostile_name_cannot_escape_the_destination() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 100).await;
    let path = env.data_dir().join("files").join(&m.id).join("file.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"f100.bin\"", "\"../../x\"");
    std::fs::write(&path, text).unwrap();
    let dir = env.dir.path().join("a").join("b").join("out");
    std::fs::create_dir_all(&dir).unwrap();
    let got = get(&s, &m.id, &dir, false).await.unwrap();
    assert_eq!(got.parent().unwrap(), dir);
    assert!(!env.dir.path().join("a").join("x").exists());
}

#[tokio::test]
async fn an_incomplete_upload_is_refused_with_resume() {
    let env = Env::new().await;
    let s = env.strict_session();
    let id = env.interrupted(&s, "inc.bin", 3, 1).await;
    let err = get(&s, &id, &out_dir(&env), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("resume {id}")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_killed_with_sigkill_resumes_keeping_verified_parts() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 20 * PART as usize).await;
    // After 8 parts the CDN hangs; the process is killed there.
    env.fault(
        FaultRoute::Cdn,
        8,
        100,
        FaultAction::Stall(Duration::from_secs(60)),
    );
    let dir = out_dir(&env);
    let mut c = crate::cli::dstore(&env);
    c.args(["--concurrency", "1", "download", &m.id]).arg(&dir);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let base = env.emu.stats().requests;
    let mut child = c.spawn().unwrap();
    // The child's own requests, not the upload's: eight parts fetched (a message and a CDN
    // request each) and the ninth CDN request stalled.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while env.emu.stats().requests - base < 8 * 2 + 2 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    env.emu.faults().clear();
    let before = env.emu.stats().requests;
    let got = get(&s, &m.id, &dir, false).await.unwrap();
    assert_eq!(
        std::fs::read(got).unwrap(),
        std::fs::read(env.dir.path().join("f1310720.bin")).unwrap()
    );
    // Each part costs a message fetch and a CDN fetch: the 8 verified parts were not fetched.
    assert!(
        env.emu.stats().requests - before <= 12 * 2,
        "{}",
        env.emu.stats().requests - before
    );
}

async fn verify(s: &Session, id: &str, full: bool) -> anyhow::Result<()> {
    let cmd = Command::Verify {
        id: id.into(),
        full,
        json: false,
    };
    s.run(cmd, CancellationToken::new()).await
}

#[tokio::test]
async fn verify_healthy_missing_and_damaged() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 3 * PART as usize).await;
    verify(&s, &m.id, false).await.unwrap();
    verify(&s, &m.id, true).await.unwrap();

    env.fault(FaultRoute::Cdn, 0, 1000, FaultAction::CorruptBytes);
    verify(&s, &m.id, false)
        .await
        .expect("sizes are still right");
    let err = verify(&s, &m.id, true).await.unwrap_err().to_string();
    assert!(err.contains("3 of 3 parts"), "{err}");
    env.emu.faults().clear();

    let parts = s.catalog.load_parts(&m.id).unwrap().parts;
    env.emu
        .delete_message(parts[2].channel_id, parts[2].message_id);
    let err = verify(&s, &m.id, false).await.unwrap_err().to_string();
    assert!(err.contains("1 of 3 parts"), "{err}");
}

#[tokio::test]
async fn a_download_cut_off_midway_is_fetched_again() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.set_concurrency(1));
    let m = round_trip(&env, &s, 3 * PART as usize).await;
    env.fault(FaultRoute::Cdn, 1, 2, FaultAction::CutOff);
    let got = get(&s, &m.id, &out_dir(&env), false).await.unwrap();
    assert_eq!(
        std::fs::read(got).unwrap(),
        std::fs::read(env.dir.path().join("f196608.bin")).unwrap()
    );
    assert_eq!(env.emu.faults().pending(), 0, "both cut-offs happened");
    verify(&s, &m.id, true).await.unwrap();
}

#[tokio::test]
async fn a_cancelled_download_finishes_when_run_again() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.set_concurrency(1));
    let m = round_trip(&env, &s, 4 * PART as usize).await;
    // Two parts arrive, then the CDN hangs and the user presses Ctrl-C.
    env.fault(
        FaultRoute::Cdn,
        2,
        1,
        FaultAction::Stall(Duration::from_secs(30)),
    );
    let dir = out_dir(&env);
    let cancel = CancellationToken::new();
    let ctrl_c = cancel.clone();
    let press = async {
        while env.emu.faults().pending() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Parts requested beside the stalled one (downloads keep several in flight whatever
        // `concurrency` says) land in the partial file meanwhile.
        tokio::time::sleep(Duration::from_millis(500)).await;
        ctrl_c.cancel();
    };
    let (r, ()) = tokio::join!(
        download::download(&s, &m.id, Some(&dir), false, true, cancel),
        press
    );
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("cancelled") && err.contains("run the same command again"),
        "{err}"
    );
    assert!(!dir.join("f262144.bin").exists(), "nothing at DEST yet");
    let before = env.emu.stats().requests;
    let got = get(&s, &m.id, &dir, false).await.unwrap();
    assert_eq!(
        std::fs::read(got).unwrap(),
        std::fs::read(env.dir.path().join("f262144.bin")).unwrap()
    );
    // The parts already in the partial file were kept: at most the two not there yet are
    // fetched again (message + CDN each).
    let again = env.emu.stats().requests - before;
    assert!(again > 0 && again <= 2 * 2, "{again} requests");
}
