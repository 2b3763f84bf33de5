//! `dstore-emulator` binary: start the emulator on a state directory and print how to reach it.

use std::time::Duration;

use anyhow::{bail, Context};
use dstore_emulator::{Emulator, EmulatorConfig};

const USAGE: &str = "usage: dstore-emulator --state-dir DIR [--no-rate-limits] [--url-ttl SECS]
    [--link-rate BYTES_PER_SEC] [--connection-rate BYTES_PER_SEC]
    [--webhook-channel-limit COUNT/SECS] [--shared-retry-after SECS]";

/// The whole number after `flag`.
fn number(flag: &str, value: Option<String>) -> anyhow::Result<u64> {
    value
        .with_context(|| format!("{flag} needs a number"))?
        .parse::<u64>()
        .with_context(|| format!("{flag} takes a whole number"))
}

/// `COUNT/SECS`, e.g. `30/60`.
fn per_period(flag: &str, value: Option<String>) -> anyhow::Result<(u32, Duration)> {
    let value = value.with_context(|| format!("{flag} needs COUNT/SECS, e.g. 30/60"))?;
    let parsed = value
        .split_once('/')
        .and_then(|(n, s)| Some((n.parse().ok()?, s.parse::<u64>().ok()?)));
    match parsed {
        Some((n, secs)) if secs > 0 => Ok((n, Duration::from_secs(secs))),
        _ => bail!("{flag} takes COUNT/SECS with whole numbers, e.g. 30/60, not {value:?}"),
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<EmulatorConfig> {
    let (mut dir, mut limits, mut ttl) = (None, true, None);
    let (mut link, mut conn, mut channel_cap, mut shared_retry) = (None, None, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--state-dir" => dir = Some(args.next().context("--state-dir needs a directory")?),
            "--no-rate-limits" => limits = false,
            "--url-ttl" => ttl = Some(number("--url-ttl", args.next())?),
            "--link-rate" => link = Some(number("--link-rate", args.next())?),
            "--connection-rate" => conn = Some(number("--connection-rate", args.next())?),
            "--webhook-channel-limit" => {
                channel_cap = Some(per_period("--webhook-channel-limit", args.next())?)
            }
            "--shared-retry-after" => {
                shared_retry = Some(number("--shared-retry-after", args.next())?)
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
    if let Some(r) = config.rate_limits.as_mut() {
        r.webhook_channel = channel_cap.unwrap_or(r.webhook_channel);
        if let Some(secs) = shared_retry {
            r.webhook_channel_retry_after = Duration::from_secs(secs);
        }
    }
    config.link_bytes_per_sec = link.filter(|r| *r > 0);
    config.connection_bytes_per_sec = conn.filter(|r| *r > 0);
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
