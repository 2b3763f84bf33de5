//! Upload (and, when the binary has it, download) throughput of the release `dstore` binary
//! against a local `dstore-emulator`, beside a plain HTTP client moving the same bytes in the
//! same 8 MiB parts with the same concurrency.
//!
//! Run with `cargo bench --bench throughput`; the file size comes from `DSTORE_BENCH_MB`
//! (MiB, default 1024). For each client it reports wall-clock MB/s, CPU seconds (user +
//! system) per GiB moved, and peak resident memory. Every measured client is a child process of
//! its own, and so is the emulator, so the server's memory and CPU are never counted. Children
//! are sampled every 20 ms through `/proc/<pid>/status` (VmHWM) and `/proc/<pid>/stat`.
//!
//! Why a reference: the plain client (this binary re-run with `--reference-upload` or
//! `--reference-download`) pays only for HTTP, multipart framing and loopback copies; no
//! hashing, no manifests, no journal. The ratios are therefore dstore's own overhead.
//!
//! Format 2 (`DSTORE_FORMAT=2`, sealed with a passphrase, chunk sizes 1 MiB / 1 MiB / 8 MiB,
//! packs up to the emulator's 10 MiB attachment limit) runs after: random and text-like files
//! up and down, the random file uploaded a second time under another name (a hard link), and a
//! copy with 1 MiB inserted in its middle. Its rows add `stored/file`: the bytes the emulator
//! stored for the upload (its attachment blobs grow by them) over the file's size. The rows'
//! CPU includes one Argon2id key derivation per command (64 MiB, 3 passes), shown alone in the
//! `key open` row. `DSTORE_BENCH_FORMATS` (`1`, `2` or `1,2`, the default) picks the formats.
//!
//! Why peak RSS: the upload pipeline streams the file and keeps about concurrency + 1 parts in
//! memory whatever the file size, so peak RSS should stay near (4 + 1) x 8 MiB plus the runtime
//! whether the file is 256 MiB or 1 GiB. A peak that grows with the file means a part or a
//! buffer is being held longer than it should.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[path = "common/mod.rs"]
mod common;
use common::{measure, write_random};

const MIB: u64 = 1 << 20;
const PART: u64 = 8 * MIB;
const CONCURRENCY: usize = 4;

fn main() {
    // `cargo bench` passes `--bench` (and any filter); only the reference modes are ours.
    let mode = std::env::args().find(|a| a.starts_with("--reference-"));
    let result = match mode.as_deref() {
        Some("--reference-upload") => reference_upload(),
        Some("--reference-download") => reference_download(),
        Some(other) => Err(anyhow::anyhow!("unknown mode {other}")),
        None => bench(),
    };
    if let Err(e) = result {
        eprintln!("throughput: {e:#}");
        std::process::exit(1);
    }
}

fn bench() -> Result<()> {
    let mib = std::env::var("DSTORE_BENCH_MB").map_or(Ok(1024), |v| v.parse::<u64>());
    let mib = mib.context("DSTORE_BENCH_MB takes a whole number of MiB")?;
    let bins = common::release_dir()?;
    // Declared before the emulator so it is removed after the emulator is killed.
    let tmp = tempfile::Builder::new().prefix("dstore-bench-").tempdir()?;
    let source = tmp.path().join("source.bin");
    eprintln!("writing {mib} MiB of pseudo-random bytes");
    let source_sha = write_random(&source, mib * MIB)?;
    let emu = Emulator::start(&bins.join("dstore-emulator"), tmp.path())?;
    let formats = std::env::var("DSTORE_BENCH_FORMATS").unwrap_or_else(|_| "1,2".into());
    let formats: Vec<&str> = formats.split(',').map(str::trim).collect();
    if formats.contains(&"1") {
        format1(&bins, tmp.path(), &emu, &source, &source_sha, mib)?;
    }
    if formats.contains(&"2") {
        format2(&bins, tmp.path(), &emu, &source, &source_sha, mib)?;
    }
    drop(emu);
    Ok(())
}

/// Format 1 through the binary, beside the plain HTTP reference.
fn format1(
    bins: &Path,
    tmp: &Path,
    emu: &Emulator,
    source: &Path,
    source_sha: &str,
    mib: u64,
) -> Result<()> {
    let dstore = |args: &[&str]| {
        let mut cmd = Command::new(bins.join("dstore"));
        cmd.env("DSTORE_TOKEN", &emu.token)
            .env("DSTORE_CHANNELS", &emu.channel)
            .env("DSTORE_API_BASE", &emu.base)
            .env("DSTORE_DATA_DIR", tmp.join("data"))
            .env("DSTORE_CONFIG", tmp.join("config.toml"))
            .args(["--part-size", "8MiB", "--concurrency", "4"])
            .args(args);
        cmd
    };
    let reference = |mode: &str, file: &Path| {
        let mut cmd = Command::new(std::env::current_exe().expect("own path"));
        cmd.arg(mode)
            .env("DSTORE_BENCH_BASE", &emu.base)
            .env("DSTORE_BENCH_TOKEN", &emu.token)
            .env("DSTORE_BENCH_CHANNEL", &emu.channel)
            .env("DSTORE_BENCH_FILE", file);
        cmd
    };
    // An empty config file keeps a user's own config out of the run.
    std::fs::write(tmp.join("config.toml"), "")?;

    eprintln!("upload: dstore");
    let src = source.to_str().context("temp path is not UTF-8")?;
    let up = measure(&mut dstore(&["upload", src, "--json"]))?;
    let json_at = up.stdout.find('{').unwrap_or(0);
    let reply: Value =
        serde_json::from_str(&up.stdout[json_at..]).context("dstore upload printed no JSON")?;
    let id = reply["id"].as_str().context("no file id")?;
    let sha = reply["sha256"].as_str().unwrap_or(source_sha);
    anyhow::ensure!(
        sha == source_sha,
        "dstore hashed {sha}, the file is {source_sha}"
    );
    eprintln!("upload: reference");
    let ref_up = measure(&mut reference("--reference-upload", source))?;
    let messages = ref_up.stdout.trim().to_string();

    let mut rows = vec![
        ("upload dstore", up.figures(mib)),
        ("upload reference", ref_up.figures(mib)),
    ];
    let has_download = {
        let help = Command::new(bins.join("dstore")).arg("help").output()?;
        let mut commands = help
            .stdout
            .split(|&b| b == b'\n')
            .map(|l| l.trim_ascii_start());
        commands.any(|l| l.starts_with(b"download "))
    };
    if has_download {
        let dest = tmp.join("download.bin");
        eprintln!("download: dstore");
        let dest_arg = dest.to_str().context("temp path is not UTF-8")?;
        let dl = measure(&mut dstore(&["download", id, dest_arg]))?;
        check_copy(&dest, source_sha, "dstore download")?;
        eprintln!("download: reference");
        let mut cmd = reference("--reference-download", &dest);
        let ref_dl = measure(cmd.env("DSTORE_BENCH_MESSAGES", &messages))?;
        check_copy(&dest, source_sha, "reference download")?;
        rows.push(("download dstore", dl.figures(mib)));
        rows.push(("download reference", ref_dl.figures(mib)));
    }

    println!(
        "\nformat 1, {mib} MiB file, 8 MiB parts, concurrency {CONCURRENCY} \
         (emulator on loopback, no rate limits)"
    );
    println!(
        "{:<20}{:>8}{:>12}{:>15}",
        "", "MB/s", "CPU-s/GiB", "peak RSS MiB"
    );
    for pair in rows.chunks(2) {
        for (name, f) in pair {
            println!("{name:<20}{:>8.1}{:>12.2}{:>15.1}", f.0, f.1, f.2);
        }
        let (a, b) = (pair[0].1, pair[1].1);
        println!("{:<20}{:>8.2}{:>27.1}", "ratio", a.0 / b.0, a.2 / b.2);
    }
    if !has_download {
        println!("download: not available");
    }
    Ok(())
}

/// The passphrase of the benchmark's format-2 repository (a throwaway one in a temp dir).
const PASSPHRASE: &str = "throughput benchmark passphrase";

/// Format 2 through the binary: sealed uploads and downloads of random and text-like data,
/// and what deduplication saves.
fn format2(
    bins: &Path,
    tmp: &Path,
    emu: &Emulator,
    random: &Path,
    random_sha: &str,
    mib: u64,
) -> Result<()> {
    let config = tmp.join("config2.toml");
    std::fs::write(&config, "")?;
    let dstore = |args: &[&str]| {
        let mut cmd = Command::new(bins.join("dstore"));
        cmd.env("DSTORE_TOKEN", &emu.token)
            .env("DSTORE_CHANNELS", &emu.channel)
            .env("DSTORE_API_BASE", &emu.base)
            .env("DSTORE_DATA_DIR", tmp.join("data2"))
            .env("DSTORE_CONFIG", &config)
            .env("DSTORE_FORMAT", "2")
            .env("DSTORE_PASSPHRASE", PASSPHRASE)
            .args(["--concurrency", "4"])
            .args(args);
        cmd
    };
    let blobs = tmp.join("emulator").join("blobs");
    let len = mib * MIB;
    eprintln!("format 2: init");
    measure(&mut dstore(&["init"]))?;
    eprintln!("format 2: key open");
    let key = measure(&mut dstore(&["key", "list"]))?;

    let text = tmp.join("text.txt");
    eprintln!("writing {mib} MiB of text-like bytes");
    let text_sha = write_text(&text, len)?;
    let inserted = tmp.join("inserted.bin");
    let inserted_sha = write_inserted(random, &inserted, MIB)?;

    // (name, (MB/s, CPU-s/GiB, peak RSS MiB), stored/file for uploads).
    type Row = (String, (f64, f64, f64), Option<f64>);
    let mut rows: Vec<Row> = Vec::new();
    let mut up = |name: &str, path: &Path, sha: &str| -> Result<String> {
        eprintln!("format 2: {name}");
        let before = dir_bytes(&blobs);
        let p = path.to_str().context("temp path is not UTF-8")?;
        let run = measure(&mut dstore(&["upload", p, "--json"]))?;
        let stored = dir_bytes(&blobs).saturating_sub(before);
        let size = std::fs::metadata(path)?.len();
        let json_at = run.stdout.find('{').unwrap_or(0);
        let reply: Value = serde_json::from_str(&run.stdout[json_at..])
            .context("dstore upload printed no JSON")?;
        let got = reply["sha256"].as_str().unwrap_or_default();
        anyhow::ensure!(got == sha, "dstore hashed {got}, the file is {sha}");
        rows.push((
            name.into(),
            run.figures(size / MIB),
            Some(stored as f64 / size as f64),
        ));
        reply["id"]
            .as_str()
            .map(str::to_string)
            .context("no file id")
    };
    let id_random = up("upload random", random, random_sha)?;
    let id_text = up("upload text", &text, &text_sha)?;
    // Another name for the same bytes: the same path would be found already stored, unread.
    let again = tmp.join("again.bin");
    std::fs::hard_link(random, &again)?;
    up("upload random again", &again, random_sha)?;
    up("upload 1 MiB inserted", &inserted, &inserted_sha)?;
    std::fs::remove_file(&inserted)?;
    let dest = tmp.join("download2.bin");
    let dest_arg = dest.to_str().context("temp path is not UTF-8")?;
    for (name, id, sha) in [
        ("download random", &id_random, random_sha),
        ("download text", &id_text, text_sha.as_str()),
    ] {
        eprintln!("format 2: {name}");
        let run = measure(&mut dstore(&["download", id, dest_arg]))?;
        check_copy(&dest, sha, name)?;
        rows.push((name.into(), run.figures(mib), None));
    }

    println!(
        "\nformat 2, {mib} MiB files, sealed (XChaCha20-Poly1305), packs up to 10 MiB, \
         concurrency {CONCURRENCY} (emulator on loopback, no rate limits)"
    );
    println!(
        "{:<24}{:>8}{:>12}{:>15}{:>13}",
        "", "MB/s", "CPU-s/GiB", "peak RSS MiB", "stored/file"
    );
    for (name, f, stored) in &rows {
        let stored = stored.map_or(String::new(), |s| format!("{:.1}%", 100.0 * s));
        println!(
            "{name:<24}{:>8.1}{:>12.2}{:>15.1}{stored:>13}",
            f.0, f.1, f.2
        );
    }
    println!(
        "{:<24}{:>8}{:>12}{:>15.1}   (one Argon2id derivation, {:.2} CPU-s; in every row above)",
        "key open",
        "",
        "",
        key.peak_kib as f64 / 1024.0,
        key.cpu
    );
    let bound = bound();
    println!(
        "bound: hash once + seal once = {:.2} CPU-s/GiB (openssl speed{}: sha256 {:.0} MB/s, chacha20-poly1305 {:.0} MB/s)",
        bound.0,
        if bound.3 { "" } else { " as quoted" },
        bound.1 / 1e6,
        bound.2 / 1e6
    );
    Ok(())
}

/// (CPU-s/GiB to hash once and seal once, SHA-256 and ChaCha20-Poly1305 bytes per second, and
/// whether they were measured now) from `openssl speed`, else the figures the issue quotes.
fn bound() -> (f64, f64, f64, bool) {
    let speed = |alg: &str| -> Option<f64> {
        let out = Command::new("openssl")
            .args(["speed", "-evp", alg, "-bytes", "1048576", "-seconds", "1"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let k = text.lines().last()?.split_whitespace().last()?;
        Some(k.strip_suffix('k')?.parse::<f64>().ok()? * 1000.0)
    };
    let (sha, chacha) = (speed("sha256"), speed("chacha20-poly1305"));
    let measured = sha.is_some() && chacha.is_some();
    let (sha, chacha) = (sha.unwrap_or(1.2e9), chacha.unwrap_or(3.0e9));
    let gib = (1u64 << 30) as f64;
    (gib / sha + gib / chacha, sha, chacha, measured)
}

/// The total size of the files directly in `dir` (0 when it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    })
}

/// Writes `len` text-like bytes (benches/common); returns their SHA-256 in hex.
fn write_text(path: &Path, len: u64) -> Result<String> {
    let mut out = std::io::BufWriter::with_capacity(MIB as usize, File::create(path)?);
    let mut hash = Sha256::new();
    let mut gen = common::Text::new(11);
    let mut buf = Vec::with_capacity(MIB as usize + 4096);
    let mut left = len;
    while left > 0 {
        buf.clear();
        gen.fill_to(&mut buf, MIB as usize);
        let n = left.min(buf.len() as u64) as usize;
        out.write_all(&buf[..n])?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    out.flush()?;
    Ok(hex::encode(hash.finalize()))
}

/// Writes a copy of `source` with `extra` pseudo-random bytes inserted in its middle; returns
/// the copy's SHA-256 in hex.
fn write_inserted(source: &Path, path: &Path, extra: u64) -> Result<String> {
    let mut input = BufReader::with_capacity(MIB as usize, File::open(source)?);
    let mut out = std::io::BufWriter::with_capacity(MIB as usize, File::create(path)?);
    let mut hash = Sha256::new();
    let half = std::fs::metadata(source)?.len() / 2;
    let mut copy = |r: &mut dyn Read, out: &mut dyn Write| -> Result<()> {
        let mut buf = vec![0u8; MIB as usize];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            out.write_all(&buf[..n])?;
            hash.update(&buf[..n]);
        }
    };
    copy(&mut (&mut input).take(half), &mut out)?;
    let noise = common::random(extra as usize, 99);
    copy(&mut noise.as_slice(), &mut out)?;
    copy(&mut input, &mut out)?;
    out.flush()?;
    Ok(hex::encode(hash.finalize()))
}

/// Checks a downloaded copy against the source's hash, then deletes it to free the disk.
fn check_copy(path: &Path, want: &str, who: &str) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("{who} wrote nothing"))?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash)?;
    let got = hex::encode(hash.finalize());
    std::fs::remove_file(path)?;
    if got != want {
        bail!("{who}: the copy's sha256 is {got}, the source's {want}");
    }
    Ok(())
}

/// The emulator child; killed when dropped, also on the way out of an error.
struct Emulator {
    child: Child,
    base: String,
    token: String,
    channel: String,
}

impl Emulator {
    fn start(bin: &Path, tmp: &Path) -> Result<Self> {
        let log = tmp.join("emulator.log");
        let mut child = Command::new(bin)
            .arg("--no-rate-limits")
            .arg("--state-dir")
            .arg(tmp.join("emulator"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line);
        let info: Option<Value> = serde_json::from_str(&line).ok();
        let field = |k: &str| info.as_ref().map_or(String::new(), |v| v[k].to_string());
        let field = |k: &str| field(k).trim_matches('"').to_string();
        let emu = Emulator {
            child,
            base: field("base_url").trim_end_matches('/').into(),
            token: field("token"),
            channel: field("channel_id"),
        };
        if read.is_err() || info.is_none() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("the emulator did not start (printed {line:?}):\n{log}"); // drop kills it
        }
        Ok(emu)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a reference child sends or fetches, from the environment the bench sets.
struct Target {
    client: reqwest::Client,
    /// `{base}/api/v10/channels/{id}/messages`.
    messages: String,
    auth: String,
    file: File,
}

impl Target {
    fn from_env(create: bool) -> Result<Arc<Self>> {
        let var = |k: &str| std::env::var(k).with_context(|| format!("{k} is not set"));
        let (base, channel) = (var("DSTORE_BENCH_BASE")?, var("DSTORE_BENCH_CHANNEL")?);
        let file = var("DSTORE_BENCH_FILE")?;
        Ok(Arc::new(Target {
            client: reqwest::Client::new(),
            messages: format!("{base}/api/v10/channels/{channel}/messages"),
            auth: format!("Bot {}", var("DSTORE_BENCH_TOKEN")?),
            file: if create {
                File::create(file)?
            } else {
                File::open(file)?
            },
        }))
    }
}

/// The reference upload: each 8 MiB part read and posted as-is, 4 at a time. Prints the message
/// IDs in part order, comma-separated.
fn reference_upload() -> Result<()> {
    let t = Target::from_env(false)?;
    let size = t.file.metadata()?.len();
    let send = |i: u64| {
        let t = t.clone();
        async move {
            let len = PART.min(size - i * PART) as usize;
            let reader = t.clone();
            let data = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; len];
                reader.file.read_exact_at(&mut buf, i * PART).map(|_| buf)
            })
            .await??;
            let name = format!("ref.{i}.part");
            let payload = serde_json::json!({"attachments": [{"id": 0, "filename": name}]});
            let form = reqwest::multipart::Form::new()
                .part(
                    "files[0]",
                    reqwest::multipart::Part::bytes(data)
                        .file_name(name)
                        .mime_str("application/octet-stream")?,
                )
                .text("payload_json", payload.to_string());
            let post = t.client.post(&t.messages).multipart(form);
            let msg: Value = serde_json::from_slice(&fetch(post, &t.auth).await?)?;
            msg["id"].as_str().map(str::to_string).context("no id")
        }
    };
    let rt = tokio::runtime::Runtime::new()?;
    let ids: Vec<String> = rt.block_on(
        futures::stream::iter(0..size.div_ceil(PART))
            .map(send)
            .buffered(CONCURRENCY)
            .try_collect(),
    )?;
    println!("{}", ids.join(","));
    Ok(())
}

/// The reference download: for each message (in part order) fetch its JSON, then the
/// attachment, and write it at the part's offset, 4 at a time.
fn reference_download() -> Result<()> {
    let t = Target::from_env(true)?;
    let ids = std::env::var("DSTORE_BENCH_MESSAGES").context("DSTORE_BENCH_MESSAGES")?;
    let get = |(i, mid): (usize, String)| {
        let t = t.clone();
        async move {
            let get = t.client.get(format!("{}/{mid}", t.messages));
            let msg: Value = serde_json::from_slice(&fetch(get, &t.auth).await?)?;
            let cdn = msg["attachments"][0]["url"].as_str().context("no url")?;
            let data = t.client.get(cdn).send().await?.error_for_status()?;
            let data = data.bytes().await?;
            let at = i as u64 * PART;
            tokio::task::spawn_blocking(move || t.file.write_all_at(&data, at)).await??;
            anyhow::Ok(())
        }
    };
    let parts: Vec<(usize, String)> = ids.split(',').map(str::to_string).enumerate().collect();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(
        futures::stream::iter(parts)
            .map(get)
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>(),
    )
}

/// Sends an API request and returns the body of a 2xx reply.
async fn fetch(req: reqwest::RequestBuilder, auth: &str) -> Result<bytes::Bytes> {
    let reply = req.header("Authorization", auth).send().await?;
    Ok(reply.error_for_status()?.bytes().await?)
}
