//! `--emulator`: a Discord emulator started in this process on loopback, with a channel of its
//! own, so dstore can be tried without a Discord account.

use std::path::PathBuf;

use anyhow::{Context, Result};
use dstore_emulator::{Emulator, EmulatorConfig};

use crate::config::{Config, Secret};

/// Starts the emulator with its state in `<data-dir>/emulator` and points `config` at it.
pub async fn start(config: &mut Config, data_dir_given: bool) -> Result<Emulator> {
    if !data_dir_given {
        config.data_dir = demo_dir();
    }
    let state = config.data_dir.join("emulator");
    let emulator = Emulator::start(EmulatorConfig::new(&state))
        .await
        .with_context(|| format!("cannot start the emulator in {}", state.display()))?;
    config.token = Secret::new(emulator.token());
    config.channels = vec![emulator.channel_id()];
    config.api_base = emulator.base_url();
    Ok(emulator)
}

/// The demo's data dir, kept between runs so an interrupted upload can be resumed.
fn demo_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("dstore")
        .join("emulator-demo")
}
