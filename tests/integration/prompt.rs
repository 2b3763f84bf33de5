//! The prompt as a person uses it, on a pseudo-terminal: lines typed during a transfer, history
//! kept by a killed session, Ctrl-C at a question.

use std::time::Duration;

use expectrl::{ControlCode, Regex};

use crate::common::{Env, PART};
use crate::pty::{exit, expect, on_prompt, stalling_file, start_upload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_typed_during_a_transfer_all_run_in_order() {
    let env = Env::new().await;
    // One part hangs for a while, so the lines below are typed while the upload runs.
    let path = stalling_file(&env, "slow.bin", 3, 1, Duration::from_secs(6));
    on_prompt(&env, move |p| {
        start_upload(p, &path);
        expect(p, "Uploading");
        p.send_line("help").unwrap();
        p.send_line("list").unwrap();
        p.send_line("help list").unwrap();
        expect(p, "Stored slow.bin");
        expect(p, "Commands:");
        p.expect(Regex(r"ID +NAME +SIZE")).unwrap();
        expect(p, "Also show files hidden");
        expect(p, "dstore> ");
        exit(p);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_killed_session() {
    let env = Env::new().await;
    on_prompt(&env, |p| {
        expect(p, "dstore> ");
        p.send_line("list --json").unwrap();
        expect(p, "[]");
        expect(p, "dstore> ");
        p.get_process_mut().kill(expectrl::Signal::SIGKILL).unwrap();
        let _ = p.get_process_mut().wait();
    })
    .await;
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
    on_prompt(&env, move |p| {
        expect(p, "dstore> ");
        p.send_line(format!("delete {id}")).unwrap();
        expect(p, "[y/N]");
        p.send(ControlCode::EndOfText).unwrap();
        expect(p, "Nothing was deleted.");
        expect(p, "dstore> ");
        // The prompt reads the next line whole: nothing is left reading the terminal.
        p.send_line("list").unwrap();
        expect(p, "keep.bin");
        expect(p, "dstore> ");
        exit(p);
    })
    .await;
    assert_eq!(env.attachments_of(&m.id).len(), 2, "no part was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_is_reported_once_and_its_line_erased() {
    let env = Env::new().await;
    let path = stalling_file(&env, "stuck.bin", 4, 3, Duration::from_secs(60));
    let shown = on_prompt(&env, move |p| {
        start_upload(p, &path);
        expect(p, "Uploading");
        expect(p, "1/4 parts");
        p.send(ControlCode::EndOfText).unwrap();
        let found = p.expect("dstore> ").unwrap();
        let shown = String::from_utf8_lossy(found.before()).to_string();
        exit(p);
        shown
    })
    .await;
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
    let config = env.dir.path().join("home/.config/dstore/config.toml");
    on_prompt(&env, move |p| {
        expect(p, &format!("Config file: {}", config.display()));
        expect(p, "dstore> ");
        exit(p);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_typed_before_ctrl_c_still_runs() {
    let env = Env::new().await;
    let path = stalling_file(&env, "stuck.bin", 4, 3, Duration::from_secs(60));
    on_prompt(&env, move |p| {
        start_upload(p, &path);
        expect(p, "1/4 parts");
        p.send_line("list").unwrap();
        // The terminal takes in what is written to it a little later (the pty does not echo
        // here, so there is nothing to wait for).
        std::thread::sleep(Duration::from_millis(500));
        p.send(ControlCode::EndOfText).unwrap();
        expect(p, "cancelled after 1/4 parts");
        p.expect(Regex(r"ID +NAME +SIZE")).unwrap();
        expect(p, "incomplete");
        expect(p, "dstore> ");
        exit(p);
    })
    .await;
}
