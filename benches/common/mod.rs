//! Test data shared by the benchmarks: incompressible bytes and text-like bytes, both
//! deterministic, so every run measures the same input. Each benchmark uses part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use sha2::{Digest, Sha256};

/// A xorshift64* generator: fast, deterministic, and incompressible to zstd.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut s = self.0;
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        self.0 = s;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with pseudo-random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = words.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// A generator of text-like bytes: lines of words drawn from a 4096-word vocabulary with a
/// skewed (Zipf-like) frequency, punctuation, numbers and dates. zstd level 3 keeps about a
/// third of it, near what it keeps of English prose or logs; nothing repeats at long range, so
/// the chunker finds no duplicates in it.
pub struct Text {
    rng: XorShift,
    words: Vec<Vec<u8>>,
    line: u64,
}

impl Text {
    pub fn new(seed: u64) -> Self {
        let mut rng = XorShift::new(seed);
        const SYLLABLES: [&str; 32] = [
            "an", "ber", "cal", "den", "er", "fo", "gra", "hin", "is", "jo", "ka", "lor", "men",
            "nu", "or", "pel", "qua", "ri", "sto", "tur", "un", "ve", "wi", "xen", "ya", "zo",
            "th", "ing", "ed", "ly", "tion", "st",
        ];
        let words = (0..4096)
            .map(|_| {
                let n = 1 + (rng.next_u64() % 4) as usize;
                let mut w = Vec::new();
                for _ in 0..n {
                    w.extend_from_slice(SYLLABLES[(rng.next_u64() % 32) as usize].as_bytes());
                }
                w
            })
            .collect();
        Text {
            rng,
            words,
            line: 0,
        }
    }

    /// Appends lines to `out` until it holds at least `len` bytes.
    pub fn fill_to(&mut self, out: &mut Vec<u8>, len: usize) {
        while out.len() < len {
            self.line += 1;
            let r = self.rng.next_u64();
            out.extend_from_slice(
                format!(
                    "2024-{:02}-{:02} {:05} ",
                    1 + r % 12,
                    1 + (r >> 8) % 28,
                    self.line % 100_000
                )
                .as_bytes(),
            );
            let n = 6 + (r >> 16) % 12;
            for i in 0..n {
                let a = self.rng.next_u64();
                // The product of two uniforms skews toward small indices: frequent words.
                let idx = ((a & 0xFFF) * ((a >> 12) & 0xFFF)) >> 12;
                let w = &self.words[idx as usize];
                if i == 0 {
                    out.push(w[0].to_ascii_uppercase());
                    out.extend_from_slice(&w[1..]);
                } else {
                    out.extend_from_slice(w);
                }
                match (a >> 32) % 23 {
                    0 => out.extend_from_slice(b", "),
                    1 => out.extend_from_slice(format!(" {} ", (a >> 40) % 10_000).as_bytes()),
                    _ => out.push(b' '),
                }
            }
            out.extend_from_slice(b".\n");
        }
    }
}

/// `len` pseudo-random bytes.
pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    XorShift::new(seed).fill(&mut v);
    v
}

/// `len` text-like bytes.
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 256);
    Text::new(seed).fill_to(&mut v, len);
    v.truncate(len);
    v
}

// Measuring a child process and writing its input, shared by the benchmarks that run dstore.

/// Writes `len` bytes from a xorshift64* generator; returns their SHA-256 in hex.
pub fn write_random(path: &Path, len: u64) -> anyhow::Result<String> {
    let mut out =
        std::io::BufWriter::with_capacity((1u64 << 20) as usize, std::fs::File::create(path)?);
    let mut hash = Sha256::new();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; (1u64 << 20) as usize];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(1 << 20) as usize;
        out.write_all(&buf[..n])?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    out.flush()?;
    Ok(hex::encode(hash.finalize()))
}

/// Reads a child's pipe to the end on a thread of its own, so the child never blocks on it.
pub fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.map(|mut p| p.read_to_string(&mut s));
        s
    })
}

/// VmHWM (peak resident set, KiB) from `/proc/<pid>/status`.
pub fn vm_hwm_kib(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The sum of two consecutive tick fields of a `/proc/*/stat` file, counted after the
/// parenthesised command name: 11 is utime + stime (fields 14, 15), 13 cutime + cstime (16, 17).
pub fn proc_stat(path: &Path, index: usize) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(index);
    let a: u64 = fields.next()?.parse().ok()?;
    let b: u64 = fields.next()?.parse().ok()?;
    Some(a + b)
}

/// Clock ticks per second of `/proc/*/stat` (USER_HZ, 100 on Linux).
pub const TICKS_PER_SEC: f64 = 100.0;

/// What a child cost: wall and CPU seconds, peak RSS, and what it printed.
pub struct Measured {
    pub wall: f64,
    pub cpu: f64,
    pub peak_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

impl Measured {
    /// (MB/s, CPU seconds per GiB, peak RSS in MiB).
    pub fn figures(&self, mib: u64) -> (f64, f64, f64) {
        let (m, rss) = (mib as f64, self.peak_kib as f64 / 1024.0);
        (
            m * (1u64 << 20) as f64 / 1e6 / self.wall,
            self.cpu * 1024.0 / m,
            rss,
        )
    }
}

/// Runs a child to completion, sampling its peak RSS and CPU time until it exits.
pub fn measure(cmd: &mut Command) -> anyhow::Result<Measured> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The files written just before (the bench's own inputs, the last run's output) go to disk
    // first: their writeback is no part of the run, and on 2 cores it would slow it down.
    let _ = Command::new("sync").status();
    let reaped_before = proc_stat(Path::new("/proc/self/stat"), 13).unwrap_or(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
    let (mut peak_kib, mut ticks) = (0, 0);
    let status = loop {
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
    // Once reaped, the child's exact total shows in our cutime + cstime.
    let reaped = proc_stat(Path::new("/proc/self/stat"), 13).unwrap_or(0) - reaped_before;
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        bail!("{cmd:?} failed ({status}):\n{stderr}{stdout}");
    }
    Ok(Measured {
        wall,
        cpu: ticks.max(reaped) as f64 / TICKS_PER_SEC,
        peak_kib,
        stdout,
        stderr,
    })
}

/// The release folder holding `dstore` and `dstore-emulator`, built first if either is missing.
/// `cargo bench` runs a benchmark from <target>/release/deps, whatever CARGO_TARGET_DIR says.
pub fn release_dir() -> anyhow::Result<PathBuf> {
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
