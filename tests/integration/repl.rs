//! The prompt on a pseudo-terminal: help, suggestions, tab completion, Ctrl-C cancelling a
//! transfer but not the prompt, and Ctrl-D leaving.

use std::time::Duration;

use dstore_emulator::{FaultAction, FaultRoute};
use expectrl::{ControlCode, Session};

use crate::cli::dstore;
use crate::common::{Env, PART};

fn spawn(env: &Env) -> Session {
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
        p.expect("dstore> ").unwrap();
        p.send_line("help").unwrap();
        p.expect("resume").unwrap();
        p.expect("dstore> ").unwrap();
        p.send_line("lsit").unwrap();
        p.expect("did you mean `list`").unwrap();
        // Tab completes the command name.
        p.send("upl\t").unwrap();
        p.send_line(format!("\"{path_text}\"")).unwrap();
        p.expect("Stored with space.bin").unwrap();
        p.expect("dstore> ").unwrap();
        p.send_line("list").unwrap();
        p.expect("complete").unwrap();
        p.expect("dstore> ").unwrap();
        // Tab completes the only file ID after `resume`.
        p.send("resume \t").unwrap();
        p.send_line("").unwrap();
        p.expect("already complete").unwrap();
        p.expect("dstore> ").unwrap();
        // Tab completes a local path after `upload`, escaping the space.
        let dir = std::path::Path::new(&path_text)
            .parent()
            .unwrap()
            .display()
            .to_string();
        p.send(format!("upload {dir}/with\t")).unwrap();
        p.send_line("").unwrap();
        p.expect("Stored with space.bin").unwrap();
        p.expect("dstore> ").unwrap();
        // Ctrl-C at the prompt does not leave; Ctrl-D does.
        p.send(ControlCode::EndOfText).unwrap();
        p.expect("Ctrl-D to leave").unwrap();
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
        p.expect("dstore> ").unwrap();
        p.send_line(format!("upload {path_text}")).unwrap();
        p.expect("Uploading").unwrap();
        std::thread::sleep(Duration::from_millis(500));
        p.send(ControlCode::EndOfText).unwrap();
        p.expect("cancelled after 1/4 parts").unwrap();
        p.expect("dstore> ").unwrap();
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
