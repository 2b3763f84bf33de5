//! The binary on a pseudo-terminal: start it, wait for what it prints, type at its prompt.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dstore_emulator::{FaultAction, FaultRoute};
use expectrl::Session;

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

/// Starts `c` on a new pseudo-terminal and runs `script` against it off the async runtime (the
/// emulator serves on it meanwhile); returns what `script` returns.
pub async fn on_terminal<T, F>(c: Command, script: F) -> T
where
    T: Send + 'static,
    F: FnOnce(&mut Session) -> T + Send + 'static,
{
    let mut p = Session::spawn(c).unwrap();
    p.set_expect_timeout(Some(Duration::from_secs(30)));
    tokio::task::spawn_blocking(move || script(&mut p))
        .await
        .unwrap()
}

/// [`on_terminal`] for the prompt: `dstore` without a command.
pub async fn on_prompt<T, F>(env: &Env, script: F) -> T
where
    T: Send + 'static,
    F: FnOnce(&mut Session) -> T + Send + 'static,
{
    on_terminal(dstore(env), script).await
}

/// Waits for the prompt, then types `upload <path>`.
pub fn start_upload(p: &mut Session, path: &Path) {
    expect(p, "dstore> ");
    p.send_line(format!("upload {}", path.display())).unwrap();
}

/// Types `exit` and waits for the prompt to end.
pub fn exit(p: &mut Session) {
    p.send_line("exit").unwrap();
    p.expect(expectrl::Eof).unwrap();
}

/// A file `name` of `parts` parts whose upload sends its first part, then holds each of the
/// next `stalls` part messages for `stall`.
pub fn stalling_file(env: &Env, name: &str, parts: u64, stalls: u32, stall: Duration) -> PathBuf {
    env.fault(
        FaultRoute::CreateMessage,
        1,
        stalls,
        FaultAction::Stall(stall),
    );
    env.file(name, (parts * PART) as usize)
}
