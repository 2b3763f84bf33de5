//! The prompt on a pseudo-terminal: help, suggestions, tab completion, Ctrl-C cancelling a
//! transfer but not the prompt, and Ctrl-D leaving.

use std::time::Duration;

use expectrl::{ControlCode, Regex};

use crate::common::{Env, PART};
use crate::pty::{exit, expect, on_prompt, stalling_file, start_upload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_help_completion_and_exit() {
    let env = Env::new().await;
    let path = env.file("with space.bin", 2 * PART as usize);
    let path_text = path.display().to_string();
    on_prompt(&env, move |p| {
        expect(p, "dstore> ");
        p.send_line("help").unwrap();
        expect(p, "resume");
        expect(p, "dstore> ");
        p.send_line("lsit").unwrap();
        expect(p, "did you mean `list`");
        // Tab completes the command name.
        p.send("upl\t").unwrap();
        expect(p, "upload ");
        p.send_line(format!("\"{path_text}\"")).unwrap();
        let stored = p
            .expect(Regex(
                r"Stored with space\.bin \([^)]*\) as ([a-z2-9]{10}):",
            ))
            .unwrap();
        let id = String::from_utf8_lossy(stored.get(1).unwrap()).to_string();
        expect(p, "dstore> ");
        p.send_line("list").unwrap();
        expect(p, "complete");
        expect(p, "dstore> ");
        // Tab completes the only file ID after `resume`.
        p.send("resume \t").unwrap();
        expect(p, &id);
        p.send_line("").unwrap();
        expect(p, "already complete");
        expect(p, "dstore> ");
        // Tab completes a local path after `upload`, escaping the space.
        let dir = std::path::Path::new(&path_text)
            .parent()
            .unwrap()
            .display()
            .to_string();
        p.send(format!("upload {dir}/with\t")).unwrap();
        expect(p, "space.bin");
        p.send_line("").unwrap();
        // The same bytes again: named, not stored twice.
        expect(p, &format!("is already stored as {id}"));
        expect(p, "dstore> ");
        // Ctrl-C at the prompt does not leave; Ctrl-D does.
        p.send(ControlCode::EndOfText).unwrap();
        expect(p, "Ctrl-D to leave");
        p.send(ControlCode::EndOfTransmission).unwrap();
        p.expect(expectrl::Eof).unwrap();
    })
    .await;
    let history = std::fs::read_to_string(env.data_dir().join("history.txt")).unwrap();
    assert!(
        history.contains("lsit") && history.contains("resume "),
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_transfer_and_the_prompt_goes_on() {
    let env = Env::new().await;
    let path = stalling_file(&env, "stuck.bin", 4, 3, Duration::from_secs(60));
    let uploaded = path.clone();
    let out = on_prompt(&env, move |p| {
        start_upload(p, &uploaded);
        expect(p, "Uploading");
        std::thread::sleep(Duration::from_millis(500));
        p.send(ControlCode::EndOfText).unwrap();
        expect(p, "cancelled after 1/4 parts");
        expect(p, "dstore> ");
        p.send_line("list").unwrap();
        let found = p.expect("incomplete").unwrap();
        let before = String::from_utf8_lossy(found.before()).to_string();
        exit(p);
        before
    })
    .await;
    let id = env.session().catalog.ids()[0].clone();
    assert!(out.contains(&id), "{out}");
    env.emu.faults().clear();
    let m = crate::common::resume(&env.session(), &id).await.unwrap();
    assert_eq!(
        env.stored_bytes(&env.session(), &m.id),
        std::fs::read(&path).unwrap()
    );
}
