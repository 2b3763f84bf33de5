//! The stages of a format-2 transfer, each alone on one thread: chunking, the whole-file
//! SHA-256, chunk IDs (keyed BLAKE3), compression, sealing (XChaCha20-Poly1305), packing, and
//! on the way back opening and decompression. For each: MB/s (wall) and CPU seconds per GiB of
//! the file (the thread's own CPU time, from `/proc/thread-self/schedstat`), on incompressible
//! and on text-like data; then the sums for an upload and a download done on one thread, beside
//! the bound `openssl speed` gives for hashing once and sealing once; then the compression
//! ratio and the deduplication of the same file stored again and of a copy with 1 MiB inserted.
//!
//! Run with `cargo bench --bench format2`; `DSTORE_BENCH_STAGE_MB` sets the data per case (MiB,
//! default 256). Figures are per GiB of the *file*, so a stage that works on compressed bytes
//! (sealing text) costs less than its raw speed suggests.

use std::collections::HashSet;
use std::io::Cursor;
use std::process::Command;
use std::time::Instant;

use dstore::hash::Sha256;
use dstore::repo::chunker::{Buffers, Chunk, Chunker, ChunkerParams};
use dstore::repo::compress;
use dstore::repo::crypto::{ChunkId, Keys, RepoId};
use dstore::repo::keys::MasterKey;
use dstore::repo::pack::{self, PackEntry};

#[path = "common/mod.rs"]
mod common;

const MIB: usize = 1 << 20;
const GIB: f64 = (1u64 << 30) as f64;
/// What the project's issue quotes for this machine, used when `openssl` cannot be run.
const OPENSSL_SHA256: f64 = 1.2e9;
const OPENSSL_CHACHA: f64 = 3.0e9;

/// The calling thread's CPU time in seconds: `/proc/thread-self/schedstat` (nanoseconds on
/// CPU), else the process's user + system ticks.
fn thread_cpu() -> f64 {
    if let Some(ns) = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
    {
        return ns as f64 / 1e9;
    }
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// One stage's figures: wall seconds and CPU seconds for `file_bytes` of the file.
#[derive(Clone, Copy, Default)]
struct Fig {
    wall: f64,
    cpu: f64,
    file_bytes: f64,
}

impl Fig {
    fn mb_s(&self) -> f64 {
        self.file_bytes / self.wall / 1e6
    }
    fn cpu_per_gib(&self) -> f64 {
        self.cpu * GIB / self.file_bytes
    }
    fn plus(self, o: Fig) -> Fig {
        Fig {
            wall: self.wall + o.wall,
            cpu: self.cpu + o.cpu,
            file_bytes: self.file_bytes,
        }
    }
}

fn timed<T>(file_bytes: usize, f: impl FnOnce() -> T) -> (T, Fig) {
    let (c0, t0) = (thread_cpu(), Instant::now());
    let out = std::hint::black_box(f());
    let fig = Fig {
        wall: t0.elapsed().as_secs_f64(),
        cpu: thread_cpu() - c0,
        file_bytes: file_bytes as f64,
    };
    (out, fig)
}

/// Every stage over one data set, and what it stored.
struct Case {
    stages: Vec<(&'static str, Fig)>,
    stored: usize,
}

fn chunk(keys: &Keys, data: &[u8]) -> Vec<Chunk> {
    Chunker::new(
        Cursor::new(data),
        ChunkerParams::default(),
        keys.chunker_seed(),
    )
    .expect("the default chunker parameters are valid")
    .collect::<Result<Vec<_>, _>>()
    .expect("reading memory cannot fail")
}

/// Each stage as the upload and download pipelines run it: buffers reused (a chunk's buffer
/// goes back once it is sealed), bodies sealed and opened in place. What a stage needs from the
/// one before is made outside its timing, so each figure is that stage's alone.
fn run_case(keys: &Keys, data: &[u8]) -> Case {
    let n = data.len();
    let (lens, f_chunk) = timed(n, || {
        let pool = Buffers::new(4);
        let cutter = Chunker::new(
            Cursor::new(data),
            ChunkerParams::default(),
            keys.chunker_seed(),
        )
        .expect("the default chunker parameters are valid")
        .with_buffers(pool.clone());
        let mut lens = Vec::new();
        for c in cutter {
            let c = c.expect("reading memory cannot fail");
            lens.push(c.data.len());
            pool.give(c.data);
        }
        lens
    });
    let chunks = chunk(keys, data);
    assert_eq!(
        lens,
        chunks.iter().map(|c| c.data.len()).collect::<Vec<_>>()
    );
    let (_, f_sha) = timed(n, || {
        let mut h = Sha256::default();
        for piece in data.chunks(MIB) {
            h.update(piece);
        }
        h.finish_hex()
    });
    let (ids, f_id) = timed(n, || {
        chunks
            .iter()
            .map(|c| keys.chunk_id(&c.data))
            .collect::<Vec<ChunkId>>()
    });
    let (flags, f_comp) = timed(n, || {
        let mut out = Vec::new();
        chunks
            .iter()
            .map(|c| compress::compress_into(&c.data, &mut out))
            .collect::<Vec<u8>>()
    });
    let bodies: Vec<Vec<u8>> = chunks
        .iter()
        .zip(&flags)
        .map(|(c, &f)| {
            let mut out = Vec::new();
            if compress::compress_into(&c.data, &mut out) == f && f != 0 {
                out
            } else {
                c.data.clone()
            }
        })
        .collect();
    let mut sealed: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| vec![0u8; b.len() + keys.overhead()])
        .collect();
    let (_, f_seal) = timed(n, || {
        for (((id, &f), body), out) in ids.iter().zip(&flags).zip(&bodies).zip(&mut sealed) {
            keys.seal_blob_to(id, f, body, out).expect("sealed");
        }
    });
    let stored: usize = sealed.iter().map(Vec::len).sum();
    let entries: Vec<PackEntry> = ids
        .iter()
        .zip(&flags)
        .zip(&sealed)
        .zip(&chunks)
        .map(|(((id, &f), s), c)| PackEntry {
            id: *id,
            offset: 0,
            sealed_len: s.len() as u32,
            plain_len: c.data.len() as u32,
            flags: f,
        })
        .collect();
    // Packing as the packer does it: each body sealed straight into a pack of the emulator's
    // default limit, the header sealed, the pack ID computed; pack buffers reused.
    let limit = pack::pack_limit(10 * MIB);
    let (_, f_pack) = timed(n, || {
        let mut spare = Vec::new();
        let mut ids = Vec::new();
        let mut writer = pack::PackWriter::with_buffer(keys, limit, Vec::new());
        for (e, b) in entries.iter().zip(&bodies) {
            if !writer.is_empty() && !writer.would_fit_body(b.len()) {
                let full = std::mem::replace(
                    &mut writer,
                    pack::PackWriter::with_buffer(keys, limit, std::mem::take(&mut spare)),
                );
                let (bytes, _) = full.finish();
                ids.push(keys.pack_id(&bytes));
                spare = bytes;
            }
            writer
                .add_sealing(e.id, e.flags, e.plain_len as usize, b)
                .expect("fits");
        }
        let (bytes, _) = writer.finish();
        ids.push(keys.pack_id(&bytes));
        ids
    });
    drop(bodies);
    // Opening: the tag checked and the body decrypted in place; then decompression into a
    // reused buffer; then the chunk ID of the plaintext (pack::open_blob_in_place runs all
    // three, as a download does).
    let mut opened = sealed;
    let (ranges, f_open) = timed(n, || {
        entries
            .iter()
            .zip(opened.iter_mut())
            .map(|(e, s)| keys.open_blob_in_place(&e.id, e.flags, s).expect("opens"))
            .collect::<Vec<_>>()
    });
    let (_, f_dec) = timed(n, || {
        let mut out = Vec::new();
        for ((e, s), r) in entries.iter().zip(&opened).zip(&ranges) {
            if e.flags != 0 {
                compress::decompress_into(e.flags, &s[r.clone()], e.plain_len as usize, &mut out)
                    .expect("decompresses");
            }
        }
    });
    let (_, f_check) = timed(n, || {
        ids.iter()
            .zip(&chunks)
            .all(|(id, c)| keys.verify_chunk(id, &c.data).is_ok())
    });
    // The whole path once more, untimed, as the pipelines run it: what comes out is the chunk.
    let mut out = Vec::new();
    for (e, c) in entries.iter().zip(&chunks) {
        let flags = compress::compress_into(&c.data, &mut out);
        let body = if flags != 0 {
            out.clone()
        } else {
            c.data.clone()
        };
        let mut blob = vec![0u8; body.len() + keys.overhead()];
        keys.seal_blob_to(&e.id, flags, &body, &mut blob)
            .expect("sealed");
        match pack::open_blob_in_place(keys, e, &mut blob, &mut out).expect("opens") {
            pack::OpenedBlob::InPlace(r) => assert_eq!(blob[r], c.data[..]),
            pack::OpenedBlob::Decompressed => assert_eq!(out, c.data),
        }
    }
    drop(opened);
    let up = f_chunk.plus(f_sha).plus(f_id).plus(f_comp).plus(f_pack);
    let down = f_open.plus(f_dec).plus(f_check).plus(f_sha);
    Case {
        stages: vec![
            ("chunk (FastCDC)", f_chunk),
            ("sha256 (ring)", f_sha),
            ("chunk ID (BLAKE3)", f_id),
            ("compress (zstd)", f_comp),
            ("seal (XChaCha20-P1305)", f_seal),
            ("pack (sealed into it, header, ID)", f_pack),
            ("open", f_open),
            ("decompress", f_dec),
            ("chunk ID check", f_check),
            ("upload, one thread", up),
            ("download, one thread", down),
        ],
        stored,
    }
}

/// Bytes per second `openssl speed` measures for one EVP algorithm on 1 MiB buffers.
fn openssl_speed(alg: &str) -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-evp", alg, "-bytes", "1048576", "-seconds", "1"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last()?;
    let k = last.split_whitespace().last()?.strip_suffix('k')?;
    Some(k.parse::<f64>().ok()? * 1000.0)
}

/// Chunks of `copy` whose IDs `original` lacks, and their bytes.
fn new_chunks(keys: &Keys, original: &[u8], copy: &[u8]) -> (usize, usize, usize) {
    let seen: HashSet<ChunkId> = chunk(keys, original)
        .iter()
        .map(|c| keys.chunk_id(&c.data))
        .collect();
    let chunks = chunk(keys, copy);
    let fresh: Vec<&Chunk> = chunks
        .iter()
        .filter(|c| !seen.contains(&keys.chunk_id(&c.data)))
        .collect();
    (
        chunks.len(),
        fresh.len(),
        fresh.iter().map(|c| c.data.len()).sum(),
    )
}

fn main() {
    let mib = std::env::var("DSTORE_BENCH_STAGE_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(256);
    let keys = Keys::derive(&MasterKey::random(), RepoId::random());
    eprintln!("generating {mib} MiB of random and of text-like data");
    let random = common::random(mib * MIB, 7);
    let text = common::text(mib * MIB, 7);
    eprintln!("random");
    let r = run_case(&keys, &random);
    eprintln!("text");
    let t = run_case(&keys, &text);
    let sha = openssl_speed("sha256");
    let chacha = openssl_speed("chacha20-poly1305");
    let measured = sha.is_some() && chacha.is_some();
    let (sha, chacha) = (
        sha.unwrap_or(OPENSSL_SHA256),
        chacha.unwrap_or(OPENSSL_CHACHA),
    );

    println!(
        "\nformat 2 stages, {mib} MiB per case, each stage alone on one thread; \
         CPU-s/GiB per GiB of the file"
    );
    println!(
        "{:<24}{:>10}{:>11}{:>12}{:>11}",
        "", "random", "", "text", ""
    );
    println!(
        "{:<24}{:>10}{:>11}{:>12}{:>11}",
        "stage", "MB/s", "CPU-s/GiB", "MB/s", "CPU-s/GiB"
    );
    for ((name, a), (_, b)) in r.stages.iter().zip(&t.stages) {
        println!(
            "{name:<24}{:>10.0}{:>11.2}{:>12.0}{:>11.2}",
            a.mb_s(),
            a.cpu_per_gib(),
            b.mb_s(),
            b.cpu_per_gib()
        );
    }
    let per_gib = |rate: f64| GIB / rate;
    println!(
        "bound: hash once + seal once = {:.2} CPU-s/GiB ({} sha256 {:.0} MB/s, chacha20-poly1305 {:.0} MB/s)",
        per_gib(sha) + per_gib(chacha),
        if measured { "openssl speed now:" } else { "openssl speed as quoted:" },
        sha / 1e6,
        chacha / 1e6
    );
    println!(
        "stored (sealed chunks / file): random {:.1}%, text {:.1}%",
        100.0 * r.stored as f64 / random.len() as f64,
        100.0 * t.stored as f64 / text.len() as f64
    );
    drop((r, t));

    let (chunks, fresh, bytes) = new_chunks(&keys, &random, &random);
    println!(
        "dedup, the same random file again: {fresh} of {chunks} chunks new, {:.2}% of its bytes",
        100.0 * bytes as f64 / random.len() as f64
    );
    let mid = random.len() / 2;
    let mut inserted = Vec::with_capacity(random.len() + MIB);
    inserted.extend_from_slice(&random[..mid]);
    inserted.extend_from_slice(&common::random(MIB, 99));
    inserted.extend_from_slice(&random[mid..]);
    let (chunks, fresh, bytes) = new_chunks(&keys, &random, &inserted);
    println!(
        "dedup, 1 MiB inserted in the middle: {fresh} of {chunks} chunks new, {:.2} MiB new ({:.2}% of its bytes)",
        bytes as f64 / MIB as f64,
        100.0 * bytes as f64 / inserted.len() as f64
    );
}
