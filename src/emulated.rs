//! `--emulator`: a Discord emulator started in this process on loopback, with a channel of its
//! own, so dstore can be tried without a Discord account. One process at a time owns an
//! emulator's state: a second would serve its own diverging copy of the same messages.
//!
//! The demo's repository has a passphrase of its own, random, kept in `<data-dir>/demo-passphrase`
//! (0600) so nobody has to invent one to try dstore; the banner says where it is. That is the one
//! passphrase dstore ever writes to disk.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use dstore_emulator::{Emulator, EmulatorConfig};

use crate::config::{Config, Secret};

/// A running emulator and the lock on its state, held for as long as it runs.
pub struct Emulated {
    pub emulator: Emulator,
    /// The file holding the demo repository's passphrase.
    pub passphrase_file: PathBuf,
    _lock: File,
}

impl std::ops::Deref for Emulated {
    type Target = Emulator;
    fn deref(&self) -> &Emulator {
        &self.emulator
    }
}

/// Starts the emulator with its state in `<data-dir>/emulator` and points `config` at it; says
/// so in a sentence when another dstore process already runs an emulator on that state.
pub async fn start(config: &mut Config, data_dir_given: bool) -> Result<Emulated> {
    if !data_dir_given {
        config.data_dir = demo_dir();
    }
    let state = config.data_dir.join("emulator");
    let lock = lock_state(&state)?;
    let emulator = Emulator::start(EmulatorConfig::new(&state))
        .await
        .with_context(|| format!("cannot start the emulator in {}", state.display()))?;
    config.token = Secret::new(emulator.token());
    config.channels = vec![emulator.channel_id()];
    config.api_base = emulator.base_url();
    let passphrase_file = config.data_dir.join(DEMO_PASSPHRASE);
    demo_passphrase(&passphrase_file)?;
    config.passphrase_file = Some(passphrase_file.clone());
    Ok(Emulated {
        emulator,
        passphrase_file,
        _lock: lock,
    })
}

/// The demo passphrase's file name in the data dir.
const DEMO_PASSPHRASE: &str = "demo-passphrase";

/// Creates the demo's passphrase file (64 random hex characters, 0600) unless it exists: made
/// once, so the repository it opens stays usable between runs.
fn demo_passphrase(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let text = format!("{}\n", hex::encode(bytes));
    crate::catalog::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write the demo's passphrase file {}", path.display()))
}

/// Takes the OS lock on the emulator's state folder (released when the process ends, however
/// it ends).
fn lock_state(state: &Path) -> Result<File> {
    std::fs::create_dir_all(state)
        .with_context(|| format!("cannot create the emulator's folder {}", state.display()))?;
    let path = state.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => bail!(
            "another dstore process is running an emulator on {}; leave it first, or give this one \
             its own data dir with --data-dir DIR",
            state.display()
        ),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// The demo's data dir, kept between runs so an interrupted upload can be resumed.
fn demo_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("dstore")
        .join("emulator-demo")
}
