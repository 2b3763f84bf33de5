//! The prompt on a pseudo-terminal: help, suggestions, tab completion, Ctrl-C cancelling a
//! transfer but not the prompt, and Ctrl-D leaving.

use std::time::Duration;

use dstore_emulator::{FaultAction, FaultRoute};
use expectrl::{ControlCode, Regex, Session};

use crate::cli::dstore;
use crate::common::{Env, PART};

/// Waits for `needle`; on a timeout, fails showing what the terminal printed instead.
pub fn expect(p: &mut Session, needle: &str) {
    if let Err(e) = p.expect(needle) {
        let mut buf = vec![0u8; 16 * 1024];
        let n = p.try_read(&mut buf).unwrap_or(0);
        panic!(
            "waiting for {needle:?}: {e}; the terminal shows {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

pub fn spawn(env: &Env) -> Session {
    let mut p = Session::spawn(dstore(env)).unwrap();
    p.set_expect_timeout(Some(Duration::from_secs(30)));
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_help_completion_and_exit() {
    let env = Env::new().await;
    let path = env.file("with space.bin", 2 * PART as usize);
    let mut p = spawn(&env);
    let path_text = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        expect(&mut p, "dstore> ");
        p.send_line("help").unwrap();
        expect(&mut p, "resume");
        expect(&mut p, "dstore> ");
        p.send_line("lsit").unwrap();
        expect(&mut p, "did you mean `list`");
        // Tab completes the command name.
        p.send("upl\t").unwrap();
        expect(&mut p, "upload ");
        p.send_line(format!("\"{path_text}\"")).unwrap();
        let stored = p
            .expect(Regex(
                r"Stored with space\.bin \([^)]*\) as ([a-z2-9]{10}):",
            ))
            .unwrap();
        let id = String::from_utf8_lossy(stored.get(1).unwrap()).to_string();
        expect(&mut p, "dstore> ");
        p.send_line("list").unwrap();
        expect(&mut p, "complete");
        expect(&mut p, "dstore> ");
        // Tab completes the only file ID after `resume`.
        p.send("resume \t").unwrap();
        expect(&mut p, &id);
        p.send_line("").unwrap();
        expect(&mut p, "already complete");
        expect(&mut p, "dstore> ");
        // Tab completes a local path after `upload`, escaping the space.
        let dir = std::path::Path::new(&path_text)
            .parent()
            .unwrap()
            .display()
            .to_string();
        p.send(format!("upload {dir}/with\t")).unwrap();
        expect(&mut p, "space.bin");
        p.send_line("").unwrap();
        // The same bytes again: named, not stored twice.
        expect(&mut p, &format!("is already stored as {id}"));
        expect(&mut p, "dstore> ");
        // Ctrl-C at the prompt does not leave; Ctrl-D does.
        p.send(ControlCode::EndOfText).unwrap();
        expect(&mut p, "Ctrl-D to leave");
        p.send(ControlCode::EndOfTransmission).unwrap();
        p.expect(expectrl::Eof).unwrap();
    })
    .await
    .unwrap();
    let history = std::fs::read_to_string(env.data_dir().join("history.txt")).unwrap();
    assert!(
        history.contains("lsit") && history.contains("resume "),
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_transfer_and_the_prompt_goes_on() {
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
    let out = tokio::task::spawn_blocking(move || {
        expect(&mut p, "dstore> ");
        p.send_line(format!("upload {path_text}")).unwrap();
        expect(&mut p, "Uploading");
        std::thread::sleep(Duration::from_millis(500));
        p.send(ControlCode::EndOfText).unwrap();
        expect(&mut p, "cancelled after 1/4 parts");
        expect(&mut p, "dstore> ");
        p.send_line("list").unwrap();
        let found = p.expect("incomplete").unwrap();
        let before = String::from_utf8_lossy(found.before()).to_string();
        p.send_line("exit").unwrap();
        p.expect(expectrl::Eof).unwrap();
        before
    })
    .await
    .unwrap();
    let id = env.session().catalog.ids()[0].clone();
    assert!(out.contains(&id), "{out}");
    env.emu.faults().clear();
    let m = crate::common::resume(&env.session(), &id).await.unwrap();
    assert_eq!(
        env.stored_bytes(&env.session(), &m.id),
        std::fs::read(&path).unwrap()
    );
}
