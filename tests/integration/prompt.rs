//! The prompt as a person uses it, on a pseudo-terminal: lines typed during a transfer, history
//! kept by a killed session, Ctrl-C at a question.

use std::time::Duration;

use dstore_emulator::{FaultAction, FaultRoute};
use expectrl::{ControlCode, Regex};

use crate::common::{Env, PART};
use crate::repl::{expect, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_typed_during_a_transfer_all_run_in_order() {
    let env = Env::new().await;
    // One part hangs for a while, so the lines below are typed while the upload runs.
    env.fault(
        FaultRoute::CreateMessage,
        1,
        1,
        FaultAction::Stall(Duration::from_secs(6)),
    );
    let path = env.file("slow.bin", 3 * PART as usize);
    let mut p = spawn(&env);
    let path_text = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        expect(&mut p, "dstore> ");
        p.send_line(format!("upload {path_text}")).unwrap();
        expect(&mut p, "Uploading");
        p.send_line("help").unwrap();
        p.send_line("list").unwrap();
        p.send_line("help list").unwrap();
        expect(&mut p, "Stored slow.bin");
        expect(&mut p, "Commands:");
        p.expect(Regex(r"ID +NAME +SIZE")).unwrap();
        expect(&mut p, "Also show files hidden");
        expect(&mut p, "dstore> ");
        p.send_line("exit").unwrap();
        p.expect(expectrl::Eof).unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_killed_session() {
    let env = Env::new().await;
    let mut p = spawn(&env);
    tokio::task::spawn_blocking(move || {
        expect(&mut p, "dstore> ");
        p.send_line("list --json").unwrap();
        expect(&mut p, "[]");
        expect(&mut p, "dstore> ");
        p.get_process_mut().kill(expectrl::Signal::SIGKILL).unwrap();
        let _ = p.get_process_mut().wait();
    })
    .await
    .unwrap();
    let history = std::fs::read_to_string(env.data_dir().join("history.txt")).unwrap_or_default();
    assert!(history.contains("list --json"), "history: {history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_a_question_answers_no() {
    let env = Env::new().await;
    let s = env.session();
    let m = crate::common::upload(&s, &env.file("keep.bin", 2 * PART as usize))
        .await
        .unwrap();
    let id = m.id.clone();
    let mut p = spawn(&env);
    tokio::task::spawn_blocking(move || {
        expect(&mut p, "dstore> ");
        p.send_line(format!("delete {id}")).unwrap();
        expect(&mut p, "[y/N]");
        p.send(ControlCode::EndOfText).unwrap();
        expect(&mut p, "Nothing was deleted.");
        expect(&mut p, "dstore> ");
        // The prompt reads the next line whole: nothing is left reading the terminal.
        p.send_line("list").unwrap();
        expect(&mut p, "keep.bin");
        expect(&mut p, "dstore> ");
        p.send_line("exit").unwrap();
        p.expect(expectrl::Eof).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(env.attachments_of(&m.id).len(), 2, "no part was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_is_reported_once_and_its_line_erased() {
    let env = Env::new().await;
    env.fault(
        FaultRoute::CreateMessage,
        1,
        3,
        FaultAction::Stall(Duration::from_secs(60)),
    );
    let path = env.file("stuck.bin", 4 * PART as usize);
    let mut p = spawn(&env);
    let path_text = path.display().to_string();
    let shown = tokio::task::spawn_blocking(move || {
        expect(&mut p, "dstore> ");
        p.send_line(format!("upload {path_text}")).unwrap();
        expect(&mut p, "Uploading");
        expect(&mut p, "1/4 parts");
        p.send(ControlCode::EndOfText).unwrap();
        let found = p.expect("dstore> ").unwrap();
        let shown = String::from_utf8_lossy(found.before()).to_string();
        p.send_line("exit").unwrap();
        p.expect(expectrl::Eof).unwrap();
        shown
    })
    .await
    .unwrap();
    assert_eq!(shown.matches("cancel").count(), 1, "{shown:?}");
    // Every drawing of the progress line leaves room for the echoed ^C, and the line is
    // erased before the error is printed.
    for drawn in shown.split("\r\x1b[2K") {
        let line = drawn.split("\r\n").next().unwrap_or_default();
        if line.starts_with("upload ") && line.contains('%') {
            assert!(line.chars().count() <= 77, "{line:?}");
        }
    }
    let error_at = shown.find("error: upload").unwrap();
    let last_clear = shown[..error_at].rfind("\r\x1b[2K").unwrap();
    assert!(
        !shown[last_clear..error_at].contains("upload "),
        "{shown:?}"
    );
}

/// Runs `script` on the prompt's piped stdin; returns (stdout, stderr, success).
async fn piped(env: &Env, script: &str) -> (String, String, bool) {
    let out = crate::cli::run(crate::cli::dstore(env), script).await;
    (
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
        out.status.success(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_takes_globs_and_tilde_and_names_a_duplicate() {
    let env = Env::new().await;
    // `dstore()` sets HOME to <tmp>/home.
    let src = env.dir.path().join("home").join("src");
    std::fs::create_dir_all(&src).unwrap();
    for (name, size) in [
        ("a1.bin", 3 * PART as usize),
        ("a2.bin", 100),
        ("b.bin", 10),
    ] {
        std::fs::write(
            src.join(name),
            crate::common::random_bytes(size, size as u64),
        )
        .unwrap();
    }
    let (out, err, ok) = piped(&env, "upload ~/src/a*.bin\n").await;
    assert!(ok, "{err}");
    assert!(
        out.contains("Stored a1.bin") && out.contains("Stored a2.bin") && !out.contains("b.bin"),
        "{out}"
    );
    let s = env.session();
    let a1 = s
        .catalog
        .all()
        .unwrap()
        .into_iter()
        .flatten()
        .find(|m| m.name == "a1.bin")
        .unwrap();

    let (out, err, ok) = piped(&env, "upload ~/src/a1.bin\nupload ~/src/nothing*.iso\n").await;
    assert!(
        out.contains(&format!(
            "is already stored as {} (a1.bin, same size and SHA-256); `upload --force` stores it again."
        , a1.id)),
        "{out}"
    );
    assert!(err.contains("error: no file matches `"), "{err}");
    assert!(!ok, "a pattern that matches nothing fails");
    assert_eq!(s.catalog.ids().len(), 2, "nothing stored twice");

    let (out, err, ok) = piped(&env, "upload --force ~/src/a1.bin\n").await;
    assert!(ok && out.contains("Stored a1.bin"), "{out} {err}");
    assert_eq!(s.catalog.ids().len(), 3);

    // `~` as the destination is the home folder, not a file named `~`.
    let (_, err, ok) = piped(&env, &format!("download {} ~\n", a1.id)).await;
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(env.dir.path().join("home").join("a1.bin")).unwrap(),
        std::fs::read(src.join("a1.bin")).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_uploads_go_on_past_a_failure_and_the_command_fails() {
    let env = Env::new().await;
    let a = env.file("one.bin", 100);
    let b = env.file("two.bin", 200);
    let missing = env.dir.path().join("missing.bin");
    let mut c = crate::cli::dstore(&env);
    c.arg("upload").arg(&a).arg(&missing).arg(&b);
    let out = crate::cli::run(c, "").await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout} {stderr}");
    assert!(
        stdout.contains("Stored one.bin") && stdout.contains("Stored two.bin"),
        "{stdout}"
    );
    assert!(stderr.contains("there is no file at"), "{stderr}");
    assert!(stderr.contains("1 of 3 uploads failed"), "{stderr}");
    assert!(
        stdout.contains("in 1 part of up to") && stdout.contains(": 1 part, sha256"),
        "one part is `1 part`: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_names_the_config_file() {
    let env = Env::new().await;
    let mut p = spawn(&env);
    let config = env.dir.path().join("home/.config/dstore/config.toml");
    tokio::task::spawn_blocking(move || {
        expect(&mut p, &format!("Config file: {}", config.display()));
        expect(&mut p, "dstore> ");
        p.send_line("exit").unwrap();
        p.expect(expectrl::Eof).unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_typed_before_ctrl_c_still_runs() {
    let env = Env::new().await;
    env.fault(
        FaultRoute::CreateMessage,
        1,
        3,
        FaultAction::Stall(Duration::from_secs(60)),
    );
    let path = env.file("stuck.bin", 4 * PART as usize);
    let mut p = spawn(&env);
    let path_text = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        expect(&mut p, "dstore> ");
        p.send_line(format!("upload {path_text}")).unwrap();
        expect(&mut p, "1/4 parts");
        p.send_line("list").unwrap();
        // The terminal takes in what is written to it a little later (the pty does not echo
        // here, so there is nothing to wait for).
        std::thread::sleep(Duration::from_millis(500));
        p.send(ControlCode::EndOfText).unwrap();
        expect(&mut p, "cancelled after 1/4 parts");
        p.expect(Regex(r"ID +NAME +SIZE")).unwrap();
        expect(&mut p, "incomplete");
        expect(&mut p, "dstore> ");
        p.send_line("exit").unwrap();
        p.expect(expectrl::Eof).unwrap();
    })
    .await
    .unwrap();
}
