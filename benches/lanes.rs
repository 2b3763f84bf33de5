//! Lanes against Discord-shaped limits: format-2 uploads and downloads of one file through the
//! release `dstore` binary over 1, 4 and 8 bot channels, and over 1, 4 and 8 webhooks (without a
//! bot token), each against an emulator with the limits below. For each it prints the time and
//! MB/s, the best time those limits allow and the ratio of measured to best, the 429s, invalid
//! requests and requests the emulator answered, and dstore's peak RSS and CPU seconds.
//!
//! Run with `cargo bench --bench lanes`. `DSTORE_BENCH_MB` sets the file size (MiB, default
//! 512), `DSTORE_BENCH_LANES` the lane counts (default `1,4,8`) and `DSTORE_BENCH_KINDS` the
//! kinds (`bot,webhook`, the default).
//!
//! The emulator runs in this process (its counters are read directly); dstore runs as a child
//! process of its own, sampled every 20 ms through `/proc/<pid>/status` (VmHWM) and
//! `/proc/<pid>/stat`, so the server's memory and CPU are never counted. Each row gets a fresh
//! emulator (no window carries over from the row before) and a fresh repository, made by the
//! bot; each upload starts once the windows of that set-up have run out.
//!
//! The limits (the emulator's defaults, discord-api.md §3, plus two link caps):
//!
//! - 10 MiB per attachment (boost tier 0), so packs are at most 10 MiB;
//! - a bot channel: 5 creates per 5 s, in fixed windows each opened by its first request;
//! - the bot: 50 requests per second over all its routes;
//! - a webhook: 5 executes per 2 s; and the webhooks of one channel together 30 per 60 s (the
//!   hidden cap no header announces). Each webhook here is in a channel of its own, as the
//!   README advises, so each webhook lane has a hidden cap of its own;
//! - a shared link of [`LINK`] bytes per second over all connections, and [`CONNECTION`] bytes
//!   per second on each connection.
//!
//! The best time ([`best_upload`], [`best_download`]) is computed from those limits alone (no
//! CPU, no latency), as a lower bound a reader can check:
//!
//! - every message (each pack, then the catalogue entry) leaves at a slot its lane allows: the
//!   slots of a lane are simulated window by window ([`slots`]), the first window full (the
//!   first-window burst), and the earliest `messages` slots over all lanes are taken;
//! - after the k-th of those slots only the packs not yet sent can move, no faster than the
//!   link: the upload ends no sooner than `slot[k] + (bytes of the smallest N-k+1 packs) / LINK`
//!   for every k (k = 1 is all bytes over the link);
//! - the last message's pack alone crosses one connection: no sooner than its slot plus
//!   `its bytes / CONNECTION`.
//!
//! A download's best is its CDN bytes over the link, and its message reads within the 50 per
//! second global (ranges can be split over as many connections as it takes, so the
//! per-connection cap bounds nothing on its own).

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use dstore_emulator::{Emulator, EmulatorConfig, RateLimits, Stats};
use serde_json::Value;
use sha2::{Digest, Sha256};

mod common;
use common::{measure, write_random, Measured};

const MIB: u64 = 1 << 20;
/// The shared link: 32 MiB/s, both ways and all connections together.
const LINK: u64 = 32 * MIB;
/// Each connection: 8 MiB/s (four connections fill the link).
const CONNECTION: u64 = 8 * MIB;
const PASSPHRASE: &str = "lanes benchmark passphrase";

fn main() {
    if let Err(e) = bench() {
        eprintln!("lanes: {e:#}");
        std::process::exit(1);
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Bot,
    Webhook,
}

/// One row of the table.
struct Row {
    kind: Kind,
    lanes: usize,
    up: Transfer,
    down: Transfer,
}

/// One measured command, with what the emulator saw meanwhile and the best time.
struct Transfer {
    run: Measured,
    best: f64,
    stats: Stats,
    bytes: u64,
}

fn bench() -> Result<()> {
    let mib = std::env::var("DSTORE_BENCH_MB").map_or(Ok(512), |v| v.parse::<u64>());
    let mib = mib.context("DSTORE_BENCH_MB takes a whole number of MiB")?;
    let lanes = std::env::var("DSTORE_BENCH_LANES").unwrap_or_else(|_| "1,4,8".into());
    let lanes: Vec<usize> = lanes
        .split(',')
        .map(|n| n.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .context("DSTORE_BENCH_LANES takes comma-separated lane counts")?;
    let kinds = std::env::var("DSTORE_BENCH_KINDS").unwrap_or_else(|_| "bot,webhook".into());
    let kinds: Vec<Kind> = kinds
        .split(',')
        .map(|k| match k.trim() {
            "bot" => Ok(Kind::Bot),
            "webhook" => Ok(Kind::Webhook),
            other => bail!("DSTORE_BENCH_KINDS: {other:?} is neither bot nor webhook"),
        })
        .collect::<Result<_>>()?;
    let dstore = common::release_dir()?.join("dstore");
    let tmp = tempfile::Builder::new()
        .prefix("dstore-bench-lanes-")
        .tempdir()?;
    let source = tmp.path().join("source.bin");
    eprintln!("writing {mib} MiB of pseudo-random bytes");
    let sha = write_random(&source, mib * MIB)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for &kind in &kinds {
        for &n in &lanes {
            eprintln!("{kind:?} x {n}");
            let dir = tmp.path().join(format!("{kind:?}-{n}"));
            rows.push(row(&rt, &dstore, &dir, &source, &sha, kind, n)?);
            std::fs::remove_dir_all(&dir)?;
        }
    }
    print_table(mib, &rows);
    Ok(())
}

/// The emulator's limits for the benchmark: Discord's folklore numbers and the two link caps.
fn config(state: &Path) -> EmulatorConfig {
    let mut c = EmulatorConfig::new(state);
    c.rate_limits = Some(RateLimits::default());
    c.link_bytes_per_sec = Some(LINK);
    c.connection_bytes_per_sec = Some(CONNECTION);
    c
}

fn row(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    dir: &Path,
    source: &Path,
    sha: &str,
    kind: Kind,
    n: usize,
) -> Result<Row> {
    std::fs::create_dir_all(dir)?;
    let emu = rt.block_on(Emulator::start(config(&dir.join("emulator"))))?;
    let mut channels = vec![emu.channel_id()];
    while channels.len() < n {
        channels.push(emu.add_channel(emu.guild_id()));
    }
    let hooks: Vec<String> = match kind {
        Kind::Bot => Vec::new(),
        Kind::Webhook => channels
            .iter()
            .map(|&c| emu.create_webhook(c).url)
            .collect(),
    };
    let config_file = dir.join("config.toml");
    std::fs::write(&config_file, "")?;
    let channel_list: Vec<String> = channels.iter().map(u64::to_string).collect();
    let dstore = |bot: bool, args: &[&str]| {
        let mut cmd = Command::new(bin);
        cmd.env(
            "DSTORE_TOKEN",
            if bot { emu.token() } else { String::new() },
        )
        .env("DSTORE_CHANNELS", channel_list.join(","))
        .env("DSTORE_WEBHOOKS", hooks.join(","))
        .env("DSTORE_API_BASE", emu.base_url().trim_end_matches('/'))
        .env("DSTORE_DATA_DIR", dir.join("data"))
        .env("DSTORE_CONFIG", &config_file)
        .env("DSTORE_FORMAT", "2")
        .env("DSTORE_PASSPHRASE", PASSPHRASE)
        .env(
            "RUST_LOG",
            std::env::var("DSTORE_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .args(args);
        cmd
    };
    // The repository is made by the bot (its posts count against no webhook's limit); then
    // the windows its posts opened are let run out, so each transfer starts on fresh windows,
    // as the best time assumes.
    measure(&mut dstore(true, &["init"]))?;
    std::thread::sleep(RateLimits::default().create_message.1 + Duration::from_millis(500));

    let before = emu.stats();
    let src = source.to_str().context("temp path is not UTF-8")?;
    let bot = kind == Kind::Bot;
    let up = measure(&mut dstore(bot, &["upload", src, "--json"]))?;
    let after_up = emu.stats();
    if std::env::var_os("DSTORE_BENCH_VERBOSE").is_some() {
        let d = diff(&after_up, &before);
        eprintln!(
            "upload: {:?} 429s {:?}\n{}",
            d.by_status, d.rate_limited, up.stderr
        );
    }
    let json_at = up.stdout.find('{').unwrap_or(0);
    let reply: Value =
        serde_json::from_str(&up.stdout[json_at..]).context("dstore upload printed no JSON")?;
    let got = reply["sha256"].as_str().unwrap_or_default();
    anyhow::ensure!(got == sha, "dstore hashed {got}, the file is {sha}");
    let id = reply["id"].as_str().context("no file id")?.to_string();
    // Every message the upload created: its packs and its catalogue entry.
    let mut sizes: Vec<u64> = Vec::new();
    for &c in &channels {
        for m in emu.messages(c) {
            if m.attachments.len() == 1 && m.attachments[0].size > 64 * 1024 {
                sizes.push(m.attachments[0].size);
            }
        }
    }
    let messages = (after_up.messages_created - before.messages_created) as usize;
    let up_bytes: u64 = sizes.iter().sum();
    let best_up = best_upload(kind, n, &sizes, messages);

    let dest = dir.join("download.bin");
    let dest_arg = dest.to_str().context("temp path is not UTF-8")?;
    let down = measure(&mut dstore(bot, &["download", &id, dest_arg]))?;
    let after_down = emu.stats();
    if std::env::var_os("DSTORE_BENCH_VERBOSE").is_some() {
        let d = diff(&after_down, &after_up);
        eprintln!(
            "download: {:?} 429s {:?}\n{}",
            d.by_status, d.rate_limited, down.stderr
        );
    }
    check_copy(&dest, sha)?;
    let cdn = after_down.cdn_bytes - after_up.cdn_bytes;
    let reads = (after_down.requests - after_up.requests) - after_down.cdn_downloads
        + after_up.cdn_downloads;
    let best_down = best_download(cdn, reads);
    rt.block_on(emu.shutdown());
    Ok(Row {
        kind,
        lanes: n,
        up: Transfer {
            run: up,
            best: best_up,
            stats: diff(&after_up, &before),
            bytes: up_bytes,
        },
        down: Transfer {
            run: down,
            best: best_down,
            stats: diff(&after_down, &after_up),
            bytes: cdn,
        },
    })
}

/// What the emulator counted between two snapshots (the counters the table shows).
fn diff(after: &Stats, before: &Stats) -> Stats {
    let mut d = after.clone();
    d.requests -= before.requests;
    d.invalid_requests -= before.invalid_requests;
    d.rate_limited.user -= before.rate_limited.user;
    d.rate_limited.global -= before.rate_limited.global;
    d.rate_limited.shared -= before.rate_limited.shared;
    d.messages_created -= before.messages_created;
    d
}

/// The windows of one lane's limits: `(count, period)` each, every window opened by the first
/// request after the last one ended (as the emulator's are, and Discord's appear to be).
fn lane_limits(kind: Kind) -> Vec<(u32, f64)> {
    let l = RateLimits::default();
    match kind {
        Kind::Bot => vec![(l.create_message.0, l.create_message.1.as_secs_f64())],
        Kind::Webhook => vec![
            (l.webhook_execute.0, l.webhook_execute.1.as_secs_f64()),
            (l.webhook_channel.0, l.webhook_channel.1.as_secs_f64()),
        ],
    }
}

/// The first `n` instants (seconds from the first request) at which a lane with `limits` can
/// send, each request as early as every window allows.
fn slots(limits: &[(u32, f64)], n: usize) -> Vec<f64> {
    // (start, count) of each limit's current window; none is open yet.
    let mut windows: Vec<Option<(f64, u32)>> = vec![None; limits.len()];
    let mut out = Vec::with_capacity(n);
    let mut t = 0.0f64;
    while out.len() < n {
        // The earliest instant at or after t when every limit has room.
        let mut moved = true;
        while moved {
            moved = false;
            for (w, &(count, period)) in windows.iter().zip(limits) {
                if let Some((start, used)) = *w {
                    if t < start + period && used >= count {
                        t = start + period;
                        moved = true;
                    }
                }
            }
        }
        for (w, &(_, period)) in windows.iter_mut().zip(limits) {
            match w {
                Some((start, used)) if t < *start + period => *used += 1,
                _ => *w = Some((t, 1)),
            }
        }
        out.push(t);
    }
    out
}

/// The best upload time over `lanes` lanes of `kind` for packs of `sizes` bytes and `messages`
/// messages in all (the packs and the catalogue entry), as the module comment derives it.
fn best_upload(kind: Kind, lanes: usize, sizes: &[u64], messages: usize) -> f64 {
    let one = slots(&lane_limits(kind), messages.max(1));
    // Every lane has the same limits: the i-th slot of each lane, lanes side by side. The bot's
    // 50/s global is never the tighter one here (8 channels x 5 per 5 s = 8 per second).
    let mut all: Vec<f64> = one
        .iter()
        .flat_map(|&t| std::iter::repeat_n(t, lanes))
        .collect();
    all.truncate(messages.max(1));
    let mut smallest = sizes.to_vec();
    smallest.sort_unstable();
    let link = LINK as f64;
    let mut best = 0.0f64;
    // After slot k (0-based) the packs still to go are at least the smallest (N - k) packs.
    let packs = smallest.len().min(all.len());
    for k in 0..packs {
        let left: u64 = smallest[..packs - k].iter().sum();
        best = best.max(all[k] + left as f64 / link);
    }
    if let (Some(&last), Some(&first)) = (all.last(), smallest.first()) {
        best = best.max(last + first as f64 / CONNECTION as f64);
    }
    best
}

/// The best download time: `cdn` bytes over the link, and `reads` API requests within the 50
/// per second global.
fn best_download(cdn: u64, reads: u64) -> f64 {
    let link = cdn as f64 / LINK as f64;
    let reads = reads.saturating_sub(50) as f64 / 50.0;
    link.max(reads)
}

fn print_table(mib: u64, rows: &[Row]) {
    println!(
        "\nlanes: a {mib} MiB file, format 2; emulator limits: 10 MiB per file, 5 creates / 5 s per \
         channel, 5 / 2 s per webhook,\n30 / 60 s per channel over its webhooks (hidden), 50/s \
         global; link {} MiB/s shared, {} MiB/s per connection",
        LINK / MIB,
        CONNECTION / MIB
    );
    println!(
        "{:<16}{:>8}{:>8}{:>8}{:>10}{:>7}{:>8}{:>10}{:>10}{:>8}",
        "", "s", "MB/s", "best s", "measured/", "429s", "invalid", "requests", "peak RSS", "CPU s"
    );
    println!(
        "{:<16}{:>8}{:>8}{:>8}{:>10}{:>7}{:>8}{:>10}{:>10}{:>8}",
        "", "", "", "", "best", "", "", "", "MiB", ""
    );
    for r in rows {
        for (dir, t) in [("up", &r.up), ("down", &r.down)] {
            let name = format!(
                "{} {} x{}",
                dir,
                match r.kind {
                    Kind::Bot => "bot",
                    Kind::Webhook => "webhook",
                },
                r.lanes
            );
            println!(
                "{name:<16}{:>8.1}{:>8.1}{:>8.1}{:>10.3}{:>7}{:>8}{:>10}{:>10.1}{:>8.1}",
                t.run.wall,
                t.bytes as f64 / 1e6 / t.run.wall,
                t.best,
                t.run.wall / t.best,
                t.stats.rate_limited.total(),
                t.stats.invalid_requests,
                t.stats.requests,
                t.run.peak_kib as f64 / 1024.0,
                t.run.cpu,
            );
        }
    }
    println!(
        "(MB/s: bytes sent (up: packs; down: CDN bytes) per second; best: from the limits alone, \
         see benches/lanes.rs)"
    );
}

/// Checks a downloaded copy against the source's hash, then deletes it to free the disk.
fn check_copy(path: &Path, want: &str) -> Result<()> {
    let mut file = File::open(path).context("the download wrote nothing")?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash)?;
    let got = hex::encode(hash.finalize());
    std::fs::remove_file(path)?;
    if got != want {
        bail!("the copy's sha256 is {got}, the source's {want}");
    }
    Ok(())
}
