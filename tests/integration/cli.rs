//! The real binary: one-shot commands and their exit codes, JSON output, piped stdin, clear
//! errors without secrets, and a process killed with SIGKILL mid-upload then resumed.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dstore_emulator::{FaultAction, FaultRoute};

use crate::common::{Env, PART};

pub fn dstore(env: &Env) -> Command {
    let mut c = dstore_bare(env);
    // These tests are about the spine (parts, resume, the prompt), in storage format 1;
    // tests/integration/story2.rs runs the binary in format 2.
    c.env("DSTORE_FORMAT", "1").args(["--part-size", "64KiB"]);
    c
}

/// The binary against the test's emulator, with a private home and the test's data dir, and no
/// other setting.
pub fn dstore_bare(env: &Env) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dstore"));
    let home = env.dir.path().join("home");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("DSTORE_TOKEN", env.emu.token())
        .env("DSTORE_CHANNELS", env.emu.channel_id().to_string())
        .env("DSTORE_API_BASE", env.emu.base_url())
        .env("DSTORE_DATA_DIR", env.data_dir());
    c
}

/// Runs a command to its end off the async runtime (the emulator serves on it meanwhile).
pub async fn run(mut c: Command, stdin: &str) -> Output {
    let input = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_upload_list_resume_with_json() {
    let env = Env::new().await;
    let path = env.file("one shot.bin", 3 * PART as usize + 5);
    let mut c = dstore(&env);
    c.arg("upload").arg(&path).arg("--json");
    let out = run(c, "").await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["name"], "one shot.bin");
    assert_eq!(v["size"], 3 * PART + 5);
    assert_eq!(v["parts_total"], 4);
    assert_eq!(v["parts_done"], 4);
    assert_eq!(v["status"], "complete");
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    let id = v["id"].as_str().unwrap().to_string();
    let log = std::fs::read_to_string(env.data_dir().join("dstore.log")).unwrap();
    assert!(
        log.contains("upload complete") && log.contains(&id),
        "{log}"
    );

    let mut c = dstore(&env);
    c.args(["list", "--json"]);
    let out = run(c, "").await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], id.as_str());

    let mut c = dstore(&env);
    c.args(["resume", &id]);
    let out = run(c, "").await;
    assert!(out.status.success());
    assert!(text(&out).0.contains("already complete"));

    // `download` with no destination writes to the current directory.
    let here = env.dir.path().join("cwd");
    std::fs::create_dir_all(&here).unwrap();
    let mut c = dstore(&env);
    c.current_dir(&here).args(["download", &id]);
    let out = run(c, "").await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        std::fs::read(here.join("one shot.bin")).unwrap(),
        std::fs::read(&path).unwrap()
    );

    let mut c = dstore(&env);
    c.args(["resume", "abcdefghjk"]);
    let out = run(c, "").await;
    assert!(!out.status.success());
    assert!(text(&out).1.contains("no file with ID"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_is_one_sentence_naming_the_emulator() {
    let env = Env::new().await;
    let path = env.file("x.bin", 10);
    let mut c = dstore(&env);
    c.env_remove("DSTORE_TOKEN").arg("upload").arg(&path);
    let out = run(c, "").await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("DSTORE_TOKEN") && stderr.contains("--emulator"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_output() {
    let env = Env::new().await;
    let path = env.file("x.bin", 10);
    let secret = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.this-is-a-secret-token-value";
    let mut c = dstore(&env);
    c.env("DSTORE_TOKEN", secret)
        .env("RUST_LOG", "trace")
        .arg("-v")
        .arg("upload")
        .arg(&path);
    let out = run(c, "").await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("401"), "{stderr}");
    assert!(
        !stdout.contains("secret-token") && !stderr.contains("secret-token"),
        "{stderr}"
    );
    let everything = walk(&env.data_dir());
    assert!(
        everything.contains("failed: Discord rejected the bot token"),
        "the log records the failure"
    );
    assert!(
        !everything.contains("secret-token"),
        "not in manifests, history or the log"
    );
}

fn walk(dir: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            all += &walk(&p);
        } else {
            all += &String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default());
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_stdin_runs_commands_without_escape_codes() {
    let env = Env::new().await;
    let path = env.file("my file.bin", 2 * PART as usize);
    let script = format!(
        "help\nuplod x\nupload \"{}\"\nlist\nbogus\n",
        path.display()
    );
    // A retry on the way makes a warning: it must come without colour codes too.
    env.fault(FaultRoute::CreateMessage, 0, 1, FaultAction::Status(502));
    let out = run(dstore(&env), &script).await;
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains("Commands:"), "{stdout}");
    assert!(stderr.contains("did you mean `upload`"), "{stderr}");
    assert!(stdout.contains("Stored my file.bin"), "{stdout} {stderr}");
    assert!(stdout.contains("complete"), "{stdout}");
    assert!(stderr.contains("unknown command `bogus`"), "{stderr}");
    assert!(
        !stdout.contains('\x1b') && !stderr.contains('\x1b'),
        "no escape codes when piped"
    );
    assert!(
        !out.status.success(),
        "a failed command makes the exit status non-zero"
    );
}

/// Waits until the emulator holds at least `n` messages.
async fn wait_messages(env: &Env, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.emu.messages(env.emu.channel_id()).len() < n {
        assert!(Instant::now() < deadline, "upload made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_then_resumed_is_byte_identical() {
    let env = Env::new().await;
    // Part 10 reaches Discord, but its reply is held back: the kill lands between Discord's
    // commit and the part manifest, the hardest instant.
    env.fault(
        FaultRoute::CreateMessage,
        10,
        1,
        FaultAction::StallAfterCommit(Duration::from_secs(60)),
    );
    let path = env.file("big.bin", 40 * PART as usize + 77);
    let mut c = dstore(&env);
    c.args(["--concurrency", "1", "upload"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    wait_messages(&env, 11).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    env.emu.faults().clear();

    let s = env.session();
    let id = s.catalog.ids()[0].clone();
    assert_eq!(s.catalog.load_parts(&id).unwrap().parts.len(), 10);
    let mut c = dstore(&env);
    c.args(["resume", &id, "--json"]);
    let out = run(c, "").await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(env.stored_bytes(&s, &id), std::fs::read(&path).unwrap());
    assert_eq!(
        env.attachments_of(&id).len(),
        41,
        "part 10 adopted, nothing stored twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_repeatedly_at_any_instant_still_completes() {
    let env = Env::new().await;
    let path = env.file("kills.bin", 60 * PART as usize);
    let mut c = dstore(&env);
    c.arg("upload")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    for target in [7, 23, 41] {
        wait_messages(&env, target).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let id = env.session().catalog.ids()[0].clone();
        let mut c = dstore(&env);
        c.args(["resume", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        child = c.spawn().unwrap();
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    let s = env.session();
    let id = s.catalog.ids()[0].clone();
    assert_eq!(
        s.catalog.load_file(&id).unwrap().status,
        dstore::catalog::Status::Complete
    );
    assert_eq!(env.stored_bytes(&s, &id), std::fs::read(&path).unwrap());
}

/// `dstore --emulator <args>` on `data_dir`: no token, no channel, no API base.
fn emulator_mode(env: &Env, data_dir: &Path, args: &[&str]) -> Command {
    let mut c = dstore(env);
    c.env_remove("DSTORE_TOKEN")
        .env_remove("DSTORE_CHANNELS")
        .env_remove("DSTORE_API_BASE")
        .env("DSTORE_DATA_DIR", data_dir)
        .arg("--emulator")
        .args(args);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_mode_needs_no_discord_and_keeps_its_state_between_runs() {
    let env = Env::new().await;
    let demo = env.dir.path().join("demo");
    let path = env.file("demo.bin", 3 * PART as usize);
    // No token, no channel, no API base: `--emulator` brings its own.
    let cmd = |args: &[&str]| emulator_mode(&env, &demo, args);
    let out = run(cmd(&["list"]), "").await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).0.contains("No files yet"), "{}", text(&out).0);

    let out = run(cmd(&["upload", path.to_str().unwrap(), "--json"]), "").await;
    assert!(out.status.success(), "{}", text(&out).1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    assert!(
        demo.join("emulator").is_dir(),
        "the emulator's state is in the data dir"
    );

    // A new process, a new emulator on a new port: the file is still there and comes back.
    let dest = env.dir.path().join("back.bin");
    let out = run(cmd(&["download", &id, dest.to_str().unwrap()]), "").await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&path).unwrap());
    assert_eq!(
        env.emu.stats().messages_created,
        0,
        "the test's own emulator was not used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_demo_creates_an_encrypted_repository_with_its_own_passphrase() {
    let env = Env::new().await;
    let demo = env.dir.path().join("demo2");
    let path = env.file("demo2.bin", 300_000);
    let cmd = |args: &[&str]| {
        let mut c = emulator_mode(&env, &demo, args);
        c.env_remove("DSTORE_FORMAT").args(["--part-size", "auto"]);
        c
    };
    let out = run(cmd(&["upload", path.to_str().unwrap(), "--json"]), "").await;
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("demo-passphrase"),
        "the demo says where its passphrase is: {stderr}"
    );
    assert!(
        stderr.contains("Initialised an encrypted repository"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let file: serde_json::Value = serde_json::from_slice(
        &std::fs::read(demo.join("files").join(&id).join("file.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(file["format"], 2);
    let dest = env.dir.path().join("back2.bin");
    let out = run(cmd(&["download", &id, dest.to_str().unwrap()]), "").await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&path).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_shows_debug_lines_with_plain_values() {
    let env = Env::new().await;
    let path = env.file("v.bin", 2 * PART as usize);
    let mut c = dstore(&env);
    c.arg("-v").arg("upload").arg(&path);
    let out = run(c, "").await;
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("DEBUG"), "-v shows debug lines: {stderr}");
    let done = stderr
        .lines()
        .find(|l| l.contains("upload complete"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        !done.contains("Some("),
        "values, not Debug of options: {done}"
    );
    let mut c = dstore(&env);
    c.arg("list");
    let out = run(c, "").await;
    assert!(!text(&out).1.contains("DEBUG"), "{}", text(&out).1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_emulator_on_the_same_data_dir_is_refused() {
    use std::io::{BufRead, BufReader, Write};
    let env = Env::new().await;
    let demo = env.dir.path().join("demo");
    let cmd = |args: &[&str]| emulator_mode(&env, &demo, args);
    // The first one runs the prompt on piped stdin and stays up until its stdin closes.
    let mut first = cmd(&[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = first.stdin.take().unwrap();
    let stdout = first.stdout.take().unwrap();
    let started = tokio::task::spawn_blocking(move || {
        stdin.write_all(b"list\n").unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(stdout);
        while out.read_line(&mut line).unwrap() > 0 && !line.contains("No files yet") {}
        (stdin, line)
    });
    let (stdin, line) = tokio::time::timeout(Duration::from_secs(60), started)
        .await
        .unwrap()
        .unwrap();
    assert!(line.contains("No files yet"), "{line}");

    let out = run(cmd(&["list"]), "").await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout} {stderr}");
    assert!(
        stderr.contains("another dstore process is running an emulator"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    drop(stdin);
    let status = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    // Once the first has left, the next one starts.
    let out = run(cmd(&["list"]), "").await;
    assert!(out.status.success(), "{}", text(&out).1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_says_how_many_files_are_hidden() {
    let env = Env::new().await;
    let s = env.session();
    let mut ids = Vec::new();
    for name in ["a.bin", "b.bin"] {
        let m = crate::common::upload(&s, &env.file(name, 10))
            .await
            .unwrap();
        ids.push(m.id);
    }
    let mut list = dstore(&env);
    list.arg("list");
    let hide = |id: &str| {
        let mut c = dstore(&env);
        c.args(["delete", "--keep-remote", id]);
        c
    };
    assert!(run(hide(&ids[0]), "").await.status.success());
    let shown = text(&run(list, "").await).0;
    assert!(
        shown.contains("b.bin") && !shown.contains("a.bin"),
        "{shown}"
    );
    assert!(
        shown.contains("1 file is hidden by `delete --keep-remote`; `list --all` shows it."),
        "{shown}"
    );
    assert!(run(hide(&ids[1]), "").await.status.success());
    let mut list = dstore(&env);
    list.arg("list");
    let shown = text(&run(list, "").await).0;
    assert!(!shown.contains("No files yet"), "{shown}");
    assert!(
        shown.contains("No files to show: 2 files are hidden")
            && shown.contains("`list --all` shows them"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_version_completions_and_the_config_commands() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new().await;
    let default = env.dir.path().join("home/.config/dstore/config.toml");
    let cmd = |args: &[&str]| {
        let mut c = dstore(&env);
        c.args(args);
        c
    };
    let out = run(cmd(&["--help"]), "").await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains(&format!("Config file: {}", default.display()))
            && stdout.contains("dstore config init"),
        "{stdout}"
    );
    let out = run(cmd(&["--version"]), "").await;
    assert_eq!(
        text(&out).0.trim(),
        format!("dstore {}", env!("CARGO_PKG_VERSION"))
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = run(cmd(&["completions", shell]), "").await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stdout.contains("dstore") && stdout.contains("upload"),
            "{shell}: {stdout}"
        );
    }

    let out = run(cmd(&["config", "path"]), "").await;
    assert_eq!(text(&out).0.trim(), default.display().to_string());
    let out = run(cmd(&["config", "init"]), "").await;
    assert!(out.status.success(), "{}", text(&out).1);
    let mode = std::fs::metadata(&default).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The written file is read as it is: offline commands work with it.
    let out = run(cmd(&["list"]), "").await;
    assert!(out.status.success(), "{}", text(&out).1);
    let out = run(cmd(&["config", "init"]), "").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("already exists"), "{}", text(&out).1);

    // A bad value in it names the line and column.
    std::fs::write(&default, "# dstore\nconcurrency = 99\n").unwrap();
    let out = run(cmd(&["list"]), "").await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!(
            "the config file {} is not valid at line 2, column 15",
            default.display()
        )),
        "{stderr}"
    );
    let out = run(cmd(&["--concurrency", "0", "list"]), "").await;
    assert!(text(&out).1.contains("--concurrency"), "{}", text(&out).1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_says_in_a_sentence_that_every_part_is_there() {
    let env = Env::new().await;
    let path = env.file("two.bin", 2 * PART as usize);
    let mut up = dstore(&env);
    up.arg("upload").arg(&path).arg("--json");
    let out = run(up, "").await;
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let mut check = dstore(&env);
    check.args(["verify", &id]);
    let out = run(check, "").await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout} {stderr}");
    assert_eq!(
        stdout.trim(),
        format!("All 2 parts of two.bin ({id}) are on Discord with their recorded size.")
    );
}
