//! Folder sync through the binary: `sync DIR --once`, `list`, `list --tree`, `info`, `download`
//! and `versions` of synced paths, `restore`, and `sync DIR` watching headless until Ctrl-C.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{dstore_bare, run};
use crate::common::Env;
use crate::sync::{tree, write};

const PASS: &str = "correct horse battery staple";

fn dstore2(env: &Env) -> Command {
    let mut c = dstore_bare(env);
    c.env("DSTORE_FORMAT", "2").env("DSTORE_PASSPHRASE", PASS);
    c
}

async fn ok(env: &Env, args: &[&str]) -> String {
    let mut c = dstore2(env);
    c.args(args);
    let out = run(c, "").await;
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{args:?}\nstdout: {o}\nstderr: {e}");
    o
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_once_then_list_info_download_versions_and_restore_synced_paths() {
    let env = Env::new().await;
    let root = env.dir.path().join("Notes");
    write(&root, "todo.txt", b"buy milk\n");
    write(&root, "deep/er/plan.md", b"# plan\n");
    ok(&env, &["init"]).await;
    let out = ok(&env, &["sync", p(&root), "--once"]).await;
    assert!(out.contains("snapshot 1 posted"), "{out}");
    let out = ok(&env, &["sync", p(&root), "--once", "--json"]).await;
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["name"], "Notes", "{out}");
    assert_eq!(
        report["report"]["snapshot"],
        serde_json::Value::Null,
        "nothing changed: {out}"
    );
    assert_eq!(report["report"]["read"], 0, "{out}");
    write(&root, "todo.txt", b"buy milk\nand bread\n");
    ok(&env, &["sync", p(&root), "--once"]).await;

    let list = ok(&env, &["list"]).await;
    assert!(
        list.contains("Notes/todo.txt") && list.contains("Notes/deep/er/plan.md"),
        "{list}"
    );
    let drawn = ok(&env, &["list", "--tree"]).await;
    assert!(
        drawn.contains("├── deep/") && drawn.contains("    ├── er/"),
        "{drawn}"
    );
    let info = ok(&env, &["info", "Notes/todo.txt"]).await;
    assert!(info.contains("Versions     2"), "{info}");
    let versions = ok(&env, &["versions", "Notes/todo.txt", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&versions).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{versions}");

    let dl = env.dir.path().join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    ok(&env, &["download", "Notes/todo.txt", p(&dl)]).await;
    assert_eq!(
        std::fs::read(dl.join("todo.txt")).unwrap(),
        b"buy milk\nand bread\n"
    );
    let back = env.dir.path().join("back");
    ok(&env, &["restore", "Notes", p(&back)]).await;
    assert_eq!(tree(&back), tree(&root));

    // The snapshots' packs are in use: stats counts none as garbage, rebuild-index no orphan.
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&env, &["stats", "--json"]).await).unwrap();
    assert_eq!(stats["unused_packs"], 0, "{stats}");
    // The synced files count as they are now (latest snapshot): 2 files, 19 + 7 bytes.
    assert_eq!(
        (
            &stats["synced_files"],
            &stats["synced_folders"],
            &stats["synced_bytes"],
            &stats["logical_bytes"]
        ),
        (
            &serde_json::json!(2),
            &serde_json::json!(1),
            &serde_json::json!(26),
            &serde_json::json!(26)
        ),
        "{stats}"
    );
    let text = ok(&env, &["stats"]).await;
    assert!(
        text.contains("Synced:      2 files in 1 folder (26 B of content"),
        "{text}"
    );
    let rebuilt = ok(&env, &["rebuild-index"]).await;
    assert!(!rebuilt.contains("no file"), "{rebuilt}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_watches_headless_and_uploads_a_change_until_ctrl_c() {
    let env = Env::new().await;
    let root = env.dir.path().join("Watched");
    write(&root, "a.txt", b"first");
    ok(&env, &["init"]).await;
    let mut c = dstore2(&env);
    // No rescan during the test: the second snapshot comes from the file-system events.
    c.args(["sync", p(&root), "--rescan", "3600"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let snapshots = |env: &Env| {
        let dir = env.data_dir().join("sync");
        std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|f| {
                std::fs::read_dir(f.path().join("snapshots"))
                    .map(|d| d.count())
                    .unwrap_or(0)
            })
            .sum::<usize>()
    };
    let wait_for = |n: usize| {
        let start = Instant::now();
        while snapshots(&env) < n {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "snapshot {n} never came"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    tokio::task::block_in_place(|| {
        wait_for(1);
        write(&root, "sub/b.txt", b"second file");
        write(&root, "b.txt.swp", b"editor swap");
        wait_for(2);
    });
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("snapshot 2 posted"), "{text}");
    let back = env.dir.path().join("back");
    ok(&env, &["restore", "Watched", p(&back)]).await;
    assert_eq!(
        std::fs::read(back.join("sub/b.txt")).unwrap(),
        b"second file"
    );
    assert!(!back.join("b.txt.swp").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_at_the_prompt_runs_in_the_background_and_prints_above_the_line_being_typed() {
    use crate::pty::{expect, on_terminal};
    let env = Env::new().await;
    let root = env.dir.path().join("Bg");
    write(&root, "a.txt", b"first");
    ok(&env, &["init"]).await;
    let (root2, dir) = (root.clone(), p(&root).to_string());
    on_terminal(dstore2(&env), move |t| {
        expect(t, "dstore> ");
        t.send_line(format!("sync {dir} --rescan 3600")).unwrap();
        expect(t, "in the background");
        expect(t, "snapshot 1 posted");
        // Half a command typed when the next round's line arrives: the line survives.
        t.send("sync sta").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        write(&root2, "new.txt", b"a new file");
        expect(t, "snapshot 2 posted");
        t.send_line("tus").unwrap();
        expect(t, "watching");
        expect(t, "last round: Bg: snapshot 2 posted");
        t.send_line("sync stop").unwrap();
        expect(t, "Stopped syncing");
        t.send_line("sync status").unwrap();
        expect(t, "No folder is being synced");
        // Tab completes a synced path after `versions`.
        t.send("versions Bg/ne\t").unwrap();
        expect(t, "new.txt");
        t.send_line("").unwrap();
        expect(t, "Bg/new.txt:");
        expect(t, "snapshot    2");
        t.send_line("exit").unwrap();
        t.expect(expectrl::Eof).unwrap();
    })
    .await;
    let back = env.dir.path().join("back");
    ok(&env, &["restore", "Bg", p(&back)]).await;
    assert_eq!(std::fs::read(back.join("new.txt")).unwrap(), b"a new file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_between_discords_commit_and_the_record_then_run_again() {
    let env = Env::new().await;
    let root = env.dir.path().join("Killed");
    let data = crate::common::random_bytes(30_000_000, 77);
    write(&root, "big.bin", &data);
    write(&root, "small.txt", b"small");
    ok(&env, &["init"]).await;
    let base = env.emu.messages(env.emu.channel_id()).len();
    // Pack 2 reaches Discord, but its reply is held back: the kill lands between Discord's
    // commit and the pack record.
    env.fault(
        dstore_emulator::FaultRoute::CreateMessage,
        2,
        1,
        dstore_emulator::FaultAction::StallAfterCommit(Duration::from_secs(60)),
    );
    let mut c = dstore2(&env);
    c.args(["--concurrency", "1", "sync", p(&root), "--once"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    while env.emu.messages(env.emu.channel_id()).len() < base + 3 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pack 2 never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    env.emu.faults().clear();

    let out = ok(&env, &["sync", p(&root), "--once"]).await;
    assert!(out.contains("snapshot 1 posted"), "{out}");
    // Every pack on Discord is one the snapshot names: the orphan was adopted, not sent twice.
    let dir = env.data_dir().join("sync");
    let folder = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let snap: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("snapshots/1.json")).unwrap()).unwrap();
    let packs = snap["snapshot"]["packs"].as_array().unwrap().len();
    let messages = env.emu.messages(env.emu.channel_id()).len() - base;
    assert_eq!(messages, packs + 1, "packs once each, and one snapshot");
    let back = env.dir.path().join("back");
    ok(&env, &["restore", "Killed", p(&back)]).await;
    assert!(std::fs::read(back.join("big.bin")).unwrap() == data);
}
