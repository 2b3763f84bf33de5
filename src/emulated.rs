//! `--emulator`: a Discord emulator started in this process on loopback, with a channel of its
//! own, so dstore can be tried without a Discord account. One process at a time owns an
//! emulator's state: a second would serve its own diverging copy of the same messages.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use dstore_emulator::{Emulator, EmulatorConfig};

use crate::config::{Config, Secret};

/// A running emulator and the lock on its state, held for as long as it runs.
pub struct Emulated {
    pub emulator: Emulator,
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
    Ok(Emulated {
        emulator,
        _lock: lock,
    })
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
