//! `dstore-emulator` binary: start the emulator on a state directory and print how to reach it.

use std::time::Duration;

use anyhow::{bail, Context};
use dstore_emulator::{Emulator, EmulatorConfig};

const USAGE: &str = "usage: dstore-emulator --state-dir DIR [--no-rate-limits] [--url-ttl SECS]";

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<EmulatorConfig> {
    let (mut dir, mut limits, mut ttl) = (None, true, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--state-dir" => dir = Some(args.next().context("--state-dir needs a directory")?),
            "--no-rate-limits" => limits = false,
            "--url-ttl" => {
                ttl = Some(
                    args.next()
                        .context("--url-ttl needs seconds")?
                        .parse::<u64>()
                        .context("--url-ttl takes whole seconds")?,
                )
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let mut config = EmulatorConfig::new(dir.context(USAGE)?);
    if !limits {
        config.rate_limits = None;
    }
    if let Some(secs) = ttl {
        config.cdn_url_ttl = Duration::from_secs(secs);
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = parse_args(std::env::args().skip(1))?;
    let emu = Emulator::start(config).await?;
    let line = serde_json::json!({
        "base_url": emu.base_url(),
        "token": emu.token(),
        "guild_id": emu.guild_id(),
        "channel_id": emu.channel_id(),
    });
    println!("{line}");
    // Runs until killed; state is journaled as it changes, so a kill loses nothing.
    std::future::pending::<()>().await;
    Ok(())
}
