//! Upload (and, when the binary has it, download) throughput of the release `dstore` binary
//! against a local `dstore-emulator`, beside a plain HTTP client moving the same bytes in the
//! same 8 MiB parts with the same concurrency.
//!
//! Run with `cargo bench --bench throughput`; the file size comes from `DSTORE_BENCH_MB`
//! (MiB, default 1024). For each client it reports wall-clock MiB/s, CPU seconds (user +
//! system) per GiB moved, and peak resident memory. Every measured client is a child process of
//! its own, and so is the emulator, so the server's memory and CPU are never counted. Children
//! are sampled every 20 ms through `/proc/<pid>/status` (VmHWM) and `/proc/<pid>/stat`.
//!
//! Why a reference: the plain client (this binary re-run with `--reference-upload` or
//! `--reference-download`) pays only for HTTP, multipart framing and loopback copies; no
//! hashing, no manifests, no journal. The ratios are therefore dstore's own overhead.
//!
//! Why peak RSS: the upload pipeline streams the file and keeps about concurrency + 1 parts in
//! memory whatever the file size, so peak RSS should stay near (4 + 1) x 8 MiB plus the runtime
//! whether the file is 256 MiB or 1 GiB. A peak that grows with the file means a part or a
//! buffer is being held longer than it should.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;
const PART: u64 = 8 * MIB;
const CONCURRENCY: usize = 4;
/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

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
    let bins = release_bins()?;
    // Declared before the emulator so it is removed after the emulator is killed.
    let tmp = tempfile::Builder::new().prefix("dstore-bench-").tempdir()?;
    let source = tmp.path().join("source.bin");
    eprintln!("writing {mib} MiB of pseudo-random bytes");
    let source_sha = write_random(&source, mib * MIB)?;
    let emu = Emulator::start(&bins.join("dstore-emulator"), tmp.path())?;

    let dstore = |args: &[&str]| {
        let mut cmd = Command::new(bins.join("dstore"));
        cmd.env("DSTORE_TOKEN", &emu.token)
            .env("DSTORE_CHANNELS", &emu.channel)
            .env("DSTORE_API_BASE", &emu.base)
            .env("DSTORE_DATA_DIR", tmp.path().join("data"))
            .env("DSTORE_CONFIG", tmp.path().join("config.toml"))
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
    std::fs::write(tmp.path().join("config.toml"), "")?;

    eprintln!("upload: dstore");
    let src = source.to_str().context("temp path is not UTF-8")?;
    let up = measure(&mut dstore(&["upload", src, "--json"]))?;
    let json_at = up.stdout.find('{').unwrap_or(0);
    let reply: Value =
        serde_json::from_str(&up.stdout[json_at..]).context("dstore upload printed no JSON")?;
    let id = reply["id"].as_str().context("no file id")?;
    let sha = reply["sha256"].as_str().unwrap_or(&source_sha);
    anyhow::ensure!(
        sha == source_sha,
        "dstore hashed {sha}, the file is {source_sha}"
    );
    eprintln!("upload: reference");
    let ref_up = measure(&mut reference("--reference-upload", &source))?;
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
        let dest = tmp.path().join("download.bin");
        eprintln!("download: dstore");
        let dest_arg = dest.to_str().context("temp path is not UTF-8")?;
        let dl = measure(&mut dstore(&["download", id, dest_arg]))?;
        check_copy(&dest, &source_sha, "dstore download")?;
        eprintln!("download: reference");
        let mut cmd = reference("--reference-download", &dest);
        let ref_dl = measure(cmd.env("DSTORE_BENCH_MESSAGES", &messages))?;
        check_copy(&dest, &source_sha, "reference download")?;
        rows.push(("download dstore", dl.figures(mib)));
        rows.push(("download reference", ref_dl.figures(mib)));
    }

    println!(
        "\ndstore throughput, {mib} MiB file, 8 MiB parts, concurrency {CONCURRENCY} \
         (emulator on loopback, no rate limits)"
    );
    println!(
        "{:<20}{:>8}{:>12}{:>15}",
        "", "MiB/s", "CPU s/GiB", "peak RSS MiB"
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
    drop(emu);
    Ok(())
}

/// The directory holding the release `dstore` and `dstore-emulator`, built if missing.
fn release_bins() -> Result<PathBuf> {
    // `cargo bench` runs this from <target>/release/deps, whatever CARGO_TARGET_DIR says.
    let exe = std::env::current_exe()?;
    let dir = exe
        .ancestors()
        .nth(2)
        .context("no target dir")?
        .to_path_buf();
    if !dir.join("dstore").is_file() || !dir.join("dstore-emulator").is_file() {
        let target = dir.parent().context("release dir has no parent")?;
        eprintln!(
            "release binaries missing in {}: running cargo build --release --workspace --bins",
            dir.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--workspace", "--bins"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()?;
        if !status.success() {
            bail!("cargo build --release failed");
        }
    }
    Ok(dir)
}

/// Writes `len` bytes from a xorshift64* generator; returns their SHA-256 in hex.
fn write_random(path: &Path, len: u64) -> Result<String> {
    let mut out = std::io::BufWriter::with_capacity(MIB as usize, File::create(path)?);
    let mut hash = Sha256::new();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(MIB) as usize;
        out.write_all(&buf[..n])?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
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

struct Measured {
    wall: f64,
    cpu: f64,
    peak_kib: u64,
    stdout: String,
}

impl Measured {
    /// (MiB/s, CPU seconds per GiB, peak RSS in MiB).
    fn figures(&self, mib: u64) -> (f64, f64, f64) {
        let (m, rss) = (mib as f64, self.peak_kib as f64 / 1024.0);
        (m / self.wall, self.cpu * 1024.0 / m, rss)
    }
}

/// Runs a child to completion, sampling its peak RSS and CPU time until it exits.
fn measure(cmd: &mut Command) -> Result<Measured> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let reaped_before = proc_stat(Path::new("/proc/self/stat"), 13).unwrap_or(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
    let (mut peak_kib, mut ticks) = (0, 0);
    let status = loop {
        // Keep the last sample taken while the process was alive.
        if let Some(kib) = vm_hwm_kib(&proc_dir.join("status")) {
            peak_kib = kib;
        }
        if let Some(t) = proc_stat(&proc_dir.join("stat"), 11) {
            ticks = t;
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = start.elapsed().as_secs_f64();
    // Once reaped, the child's exact total shows in our cutime + cstime; the last poll may be
    // up to 20 ms stale, so take whichever is larger.
    let reaped = proc_stat(Path::new("/proc/self/stat"), 13).unwrap_or(0) - reaped_before;
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        bail!("{cmd:?} failed ({status}):\n{stderr}{stdout}");
    }
    let cpu = ticks.max(reaped) as f64 / TICKS_PER_SEC;
    Ok(Measured {
        wall,
        cpu,
        peak_kib,
        stdout,
    })
}

/// Reads a child's pipe to the end on a thread of its own, so the child never blocks on it.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.map(|mut p| p.read_to_string(&mut s));
        s
    })
}

/// VmHWM (peak resident set, KiB) from `/proc/<pid>/status`.
fn vm_hwm_kib(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The sum of two consecutive tick fields of a `/proc/*/stat` file, counted after the
/// parenthesised command name: 11 is utime + stime (fields 14, 15), 13 cutime + cstime (16, 17).
fn proc_stat(path: &Path, index: usize) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(index);
    let a: u64 = fields.next()?.parse().ok()?;
    let b: u64 = fields.next()?.parse().ok()?;
    Some(a + b)
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
