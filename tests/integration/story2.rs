//! Format 2 end to end through the real binary: the first upload in a script creates the
//! repository, the machine is wiped, `recover` with only the token, channel and passphrase brings
//! every file back byte-identical; Discord (the emulator's whole state on disk) holds nothing
//! readable; and the independent decoder reads the same files from the attachments alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::run;
use crate::common::{random_bytes, Env};
use crate::upload2::text;

const PASS: &str = "a long passphrase for the story";

/// The binary in format 2 with the passphrase in its environment, on data dir `data`.
fn dstore2(env: &Env, data: &Path, pass: &str) -> Command {
    let mut c = crate::cli::dstore_bare(env);
    c.env("DSTORE_DATA_DIR", data)
        .env("DSTORE_FORMAT", "2")
        .env("DSTORE_PASSPHRASE", pass);
    c
}

async fn ok(c: Command) -> (String, String) {
    let out = run(c, "").await;
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "stdout: {o}\nstderr: {e}");
    (o, e)
}

fn ids(list_json: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(list_json).unwrap();
    let mut out: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn every_file(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            every_file(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_upload_wipe_recover_download_and_discord_holds_nothing_readable() {
    let env = Env::new().await;
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let notes = text(3_000_000, 11);
    let blob = random_bytes(4_500_000, 12);
    std::fs::write(src.join("secret-plans.txt"), &notes).unwrap();
    std::fs::write(src.join("holiday-video.bin"), &blob).unwrap();
    let machine = env.dir.path().join("machine");

    // A script's first upload creates the repository and says so.
    let mut c = dstore2(&env, &machine, PASS);
    c.arg("upload")
        .arg(src.join("secret-plans.txt"))
        .arg(src.join("holiday-video.bin"));
    let (_, err) = ok(c).await;
    assert!(err.contains("Initialised an encrypted repository"), "{err}");
    let mut c = dstore2(&env, &machine, PASS);
    c.args(["list", "--json"]);
    let (listed, _) = ok(c).await;
    let files = ids(&listed);
    assert_eq!(files.len(), 2);
    let mut c = dstore2(&env, &machine, PASS);
    c.args(["info", &files[0].1, "--json"]);
    let (info, _) = ok(c).await;
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["format"], 2);
    assert!(info["chunks"].as_u64().unwrap() > 0, "{info}");
    assert!(!info["packs"].as_array().unwrap().is_empty(), "{info}");
    assert_eq!(info["next"], format!("download {}", files[0].1));

    // Nothing readable anywhere in the emulator's state: no name, no line, no hash, no size.
    let sha = |b: &[u8]| {
        use sha2::Digest;
        sha2::Sha256::digest(b).to_vec()
    };
    let mut needles: Vec<Vec<u8>> = vec![
        b"secret-plans".to_vec(),
        b"holiday-video".to_vec(),
        hex::encode(sha(&notes)).into_bytes(),
        hex::encode(sha(&blob)).into_bytes(),
        sha(&notes),
        sha(&blob),
        b"3000000".to_vec(),
        b"4500000".to_vec(),
    ];
    needles.extend(
        notes
            .split(|&b| b == b'\n')
            .filter(|l| l.len() >= 24)
            .take(50)
            .map(|l| l.to_vec()),
    );
    let mut state = Vec::new();
    every_file(&env.dir.path().join("emulator"), &mut state);
    assert!(state.len() > 4, "the emulator keeps its state on disk");
    for path in &state {
        let bytes = std::fs::read(path).unwrap();
        for n in &needles {
            assert!(
                !contains(&bytes, n),
                "{} holds {:?}",
                path.display(),
                String::from_utf8_lossy(&n[..n.len().min(40)])
            );
        }
    }

    // A wrong passphrase on a new machine: one sentence, nothing written.
    let other = env.dir.path().join("other-machine");
    let mut c = dstore2(&env, &other, "not the passphrase");
    c.arg("recover");
    let out = run(c, "").await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("opens none of the"), "{err}");
    let mut written = Vec::new();
    if other.exists() {
        every_file(&other.join("files"), &mut written);
    }
    assert!(written.is_empty(), "{written:?}");

    // The machine is wiped: token, channel and passphrase bring every file back.
    std::fs::remove_dir_all(&machine).unwrap();
    let mut c = dstore2(&env, &machine, PASS);
    c.arg("recover");
    let (out, _) = ok(c).await;
    assert!(out.contains("Recovered 2 files"), "{out}");
    let back = env.dir.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    for (name, id) in &files {
        let mut c = dstore2(&env, &machine, PASS);
        c.arg("download").arg(id).arg(&back);
        ok(c).await;
        assert_eq!(
            std::fs::read(back.join(name)).unwrap(),
            std::fs::read(src.join(name)).unwrap(),
            "{name}"
        );
    }

    // The independent decoder, from the attachments alone.
    let dump = env.dir.path().join("dump");
    std::fs::create_dir_all(&dump).unwrap();
    for m in env.emu.messages(env.emu.channel_id()) {
        for a in m.attachments {
            let bytes = env.emu.attachment_bytes(a.id).unwrap();
            std::fs::write(dump.join(&a.filename), bytes).unwrap();
        }
    }
    for (name, id) in &files {
        let out_path = env.dir.path().join(format!("decoded-{name}"));
        let mut c = Command::new("python3");
        c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/decoder/decode.py"))
            .arg(&dump)
            .arg(&out_path)
            .arg(id)
            .env("DSTORE_PASSPHRASE", PASS);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "decoder: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(&out_path).unwrap(),
            std::fs::read(src.join(name)).unwrap()
        );
    }
}

async fn wait_messages(env: &Env, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while env.emu.messages(env.emu.channel_id()).len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "upload made no progress"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The only file's ID on `machine`.
fn only_id(env: &Env, machine: &Path) -> String {
    env.session_with(|c| c.data_dir = machine.to_path_buf())
        .catalog
        .ids()[0]
        .clone()
}

fn packs_on_discord(env: &Env, machine: &Path) -> (usize, usize) {
    let s = env.session_with(|c| c.data_dir = machine.to_path_buf());
    let id = only_id(env, machine);
    let records = s.catalog.load_packs(&id).unwrap().len();
    let names: Vec<String> = env
        .emu
        .messages(env.emu.channel_id())
        .into_iter()
        .flat_map(|m| m.attachments)
        .map(|a| a.filename)
        .filter(|n| n.ends_with(".bin"))
        .collect();
    (records, names.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_between_discords_commit_and_the_record_then_resumed() {
    let env = Env::new().await;
    let machine = env.dir.path().join("machine");
    let mut c = dstore2(&env, &machine, PASS);
    c.arg("init");
    ok(c).await;
    let base = env.emu.messages(env.emu.channel_id()).len();
    // Pack 2 reaches Discord, but its reply is held back: the kill lands between Discord's
    // commit and the pack record.
    env.fault(
        dstore_emulator::FaultRoute::CreateMessage,
        2,
        1,
        dstore_emulator::FaultAction::StallAfterCommit(std::time::Duration::from_secs(60)),
    );
    let data = random_bytes(45_000_000, 99);
    let path = env.dir.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let mut c = dstore2(&env, &machine, PASS);
    c.args(["--concurrency", "1", "upload"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    wait_messages(&env, base + 3).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    env.emu.faults().clear();
    assert_eq!(
        packs_on_discord(&env, &machine),
        (2, 3),
        "two recorded, one orphan"
    );

    let id = only_id(&env, &machine);
    let mut c = dstore2(&env, &machine, PASS);
    c.args(["resume", &id]);
    let (out, _) = ok(c).await;
    assert!(out.contains("1 pack found unrecorded and adopted"), "{out}");
    let (records, on_discord) = packs_on_discord(&env, &machine);
    assert_eq!(
        on_discord,
        records + 1,
        "every pack recorded once, plus the entry"
    );
    let dest = env.dir.path().join("back.bin");
    let mut c = dstore2(&env, &machine, PASS);
    c.arg("download").arg(&id).arg(&dest);
    ok(c).await;
    assert!(std::fs::read(&dest).unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_repeatedly_at_any_instant_a_format_2_upload_still_completes() {
    let env = Env::new().await;
    let machine = env.dir.path().join("machine");
    let mut c = dstore2(&env, &machine, PASS);
    c.arg("init");
    ok(c).await;
    let base = env.emu.messages(env.emu.channel_id()).len();
    let data = random_bytes(70_000_000, 98);
    let path = env.dir.path().join("kills.bin");
    std::fs::write(&path, &data).unwrap();
    let mut c = dstore2(&env, &machine, PASS);
    c.arg("upload")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    for target in [1, 3, 5] {
        wait_messages(&env, base + target).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let id = only_id(&env, &machine);
        let mut c = dstore2(&env, &machine, PASS);
        c.args(["resume", &id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        child = c.spawn().unwrap();
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    let (records, on_discord) = packs_on_discord(&env, &machine);
    assert_eq!(on_discord, records + 1, "no pack posted twice");
    let id = only_id(&env, &machine);
    let dest = env.dir.path().join("back.bin");
    let mut c = dstore2(&env, &machine, PASS);
    c.arg("download").arg(&id).arg(&dest);
    ok(c).await;
    assert!(std::fs::read(&dest).unwrap() == data);
}
