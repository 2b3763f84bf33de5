//! Format 2 against an independent decoder: objects built by dstore's own key files, chunker,
//! compression, packs and sealing, read back by tests/decoder/decode.py, which is written only
//! from docs/format.md.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dstore::repo::chunker::{Chunker, ChunkerParams};
use dstore::repo::compress::FLAG_ZSTD;
use dstore::repo::crypto::{Keys, ObjectKind, RepoId};
use dstore::repo::keys::{KdfParams, KeyFile, MasterKey};
use dstore::repo::pack::PackWriter;
use dstore::repo::passphrase::Passphrase;
use serde_json::json;
use sha2::{Digest, Sha256};

const PASSPHRASE: &str = "correct horse battery staple";
const FILE_ID: &str = "k3f9x2ab7q";
const CHUNKER: ChunkerParams = ChunkerParams {
    min: 16 * 1024,
    avg: 64 * 1024,
    max: 256 * 1024,
};
/// Small packs, so the file spans several.
const PACK_LIMIT: usize = 400 * 1024;

/// About 1.5 MiB: text-like runs (compressible), random runs (incompressible), and a repeated
/// run (deduplicated).
fn sample_file() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    };
    let text: Vec<u8> = (0..12_000)
        .flat_map(|i| {
            format!("line {i}: the quick brown fox jumps over the lazy dog\n").into_bytes()
        })
        .collect();
    let noise = random(300_000);
    let mut file = Vec::new();
    file.extend_from_slice(&text[..300_000]);
    file.extend_from_slice(&noise);
    file.extend_from_slice(&random(250_000));
    file.extend_from_slice(&text[300_000..]);
    file.extend_from_slice(&noise);
    file.extend_from_slice(&random(12_345));
    file
}

/// What an upload of `file` would post: (attachment name, bytes) of each pack, and the entry's
/// chunk records `[chunk_id, pack, offset, sealed_len, plain_len, flags]`.
struct Stored {
    packs: Vec<(String, Vec<u8>)>,
    chunks: Vec<serde_json::Value>,
    flags_seen: Vec<u8>,
}

fn store(keys: &Keys, file: &[u8]) -> Stored {
    let mut packs = Vec::new();
    let mut chunks = Vec::new();
    let mut flags_seen = Vec::new();
    let mut placed: HashMap<[u8; 32], (usize, u64, u32, u32, u8)> = HashMap::new();
    let mut writer = PackWriter::new(keys, PACK_LIMIT);
    let mut refs = Vec::new();
    for chunk in Chunker::new(file, CHUNKER, keys.chunker_seed()).unwrap() {
        let chunk = chunk.unwrap();
        let id = keys.chunk_id(&chunk.data);
        refs.push(id);
        if placed.contains_key(&id) {
            continue;
        }
        if !writer.would_fit(chunk.data.len()) {
            let full = std::mem::replace(&mut writer, PackWriter::new(keys, PACK_LIMIT));
            packs.push(full.finish().0);
        }
        let e = *writer.add(id, &chunk.data).unwrap();
        flags_seen.push(e.flags);
        placed.insert(
            id,
            (packs.len(), e.offset, e.sealed_len, e.plain_len, e.flags),
        );
    }
    if !writer.is_empty() {
        packs.push(writer.finish().0);
    }
    for id in refs {
        let (p, off, slen, plen, flags) = placed[&id];
        chunks.push(json!([hex(&id), p, off, slen, plen, flags]));
    }
    let packs = packs
        .into_iter()
        .enumerate()
        .map(|(n, bytes)| (keys.object_name(ObjectKind::Pack, FILE_ID, n as u64), bytes))
        .collect();
    Stored {
        packs,
        chunks,
        flags_seen,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes the config, the key file (if any), the packs and the sealed entry into `dir`, the
/// entry describing the packs as they are now (so a pack altered before this keeps its pack ID).
fn write_repo(dir: &Path, keys: &Keys, key_file: Option<&KeyFile>, stored: &Stored, file: &[u8]) {
    let mut config = json!({"format": 2, "repo_id": keys.repo_id().to_hex(),
        "encryption": keys.encrypted(),
        "chunker": {"min": CHUNKER.min, "avg": CHUNKER.avg, "max": CHUNKER.max}});
    if !keys.encrypted() {
        config["chunker_seed"] = json!(keys.chunker_seed());
    }
    std::fs::write(dir.join("dstore-config.json"), config.to_string()).unwrap();
    if let Some(k) = key_file {
        std::fs::write(dir.join(k.file_name()), k.to_json()).unwrap();
    }
    let mut packs = Vec::new();
    for (n, (name, bytes)) in stored.packs.iter().enumerate() {
        std::fs::write(dir.join(name), bytes).unwrap();
        packs.push(json!({"channel_id": "1100000000000000001",
            "message_id": format!("{}", 1_200_000_000_000_000_000u64 + n as u64),
            "attachment_id": format!("{}", 1_300_000_000_000_000_000u64 + n as u64),
            "pack_id": hex(&keys.pack_id(bytes)), "size": bytes.len()}));
    }
    let entry = json!({"format": 2, "kind": "entry", "id": FILE_ID, "version": 1,
        "name": "mixed.bin", "size": file.len(), "mtime": "2026-11-21T16:00:00Z", "mode": 420,
        "sha256": hex(&Sha256::digest(file)), "created_at": "2026-11-21T16:05:12Z",
        "packs": packs, "chunks": stored.chunks});
    let sealed = keys.seal_entry(entry.to_string().as_bytes());
    std::fs::write(
        dir.join(keys.object_name(ObjectKind::Entry, FILE_ID, 1)),
        sealed,
    )
    .unwrap();
}

fn decoder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/decoder/decode.py")
}

/// Fails (never skips) when python3 or the decoder's packages are missing.
fn require_python() {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import nacl.bindings, argon2.low_level, blake3, zstandard, cryptography",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 with the decoder's packages is needed: run \
         `python3 -m pip install -r tests/decoder/requirements.txt`"
    );
}

pub fn decode(dir: &Path, out: &Path, passphrase: &str) -> Output {
    require_python();
    Command::new("python3")
        .arg(decoder())
        .arg(dir)
        .arg(out)
        .env("DSTORE_PASSPHRASE", passphrase)
        .output()
        .unwrap()
}

/// A fixed repository ID and master key: the chunker's seed comes from the key, so the sample
/// file is cut in the same places on every run and `assert_multi` holds every time.
fn encrypted_repo() -> (Keys, KeyFile) {
    let repo_id = RepoId([0x5f; 16]);
    let master = MasterKey::from_bytes([0x42; 32]);
    let params = KdfParams {
        m_cost_kib: 1024,
        t_cost: 1,
        p_cost: 1,
    };
    let key_file =
        KeyFile::create(&master, &repo_id, &Passphrase::new(PASSPHRASE), params).unwrap();
    (Keys::derive(&master, repo_id), key_file)
}

fn assert_multi(stored: &Stored) {
    assert!(stored.packs.len() >= 2, "the file spans several packs");
    assert!(
        stored.flags_seen.contains(&FLAG_ZSTD),
        "some chunk is compressed"
    );
    assert!(stored.flags_seen.contains(&0), "some chunk is raw");
    assert!(
        stored.chunks.len() > stored.flags_seen.len(),
        "some chunk repeats"
    );
}

#[test]
fn format2_independent_decoder_reads_encrypted_file() {
    let (keys, key_file) = encrypted_repo();
    assert_round_trip(&keys, Some(&key_file), PASSPHRASE);
}

#[test]
fn format2_independent_decoder_reads_unencrypted_file() {
    let keys = Keys::unencrypted(RepoId([0x6e; 16]), 0x1234_5678_9abc_def0);
    assert_round_trip(&keys, None, "");
}

/// Stores the sample file with dstore's code and checks the decoder gives it back whole.
fn assert_round_trip(keys: &Keys, key_file: Option<&KeyFile>, passphrase: &str) {
    let file = sample_file();
    let stored = store(keys, &file);
    assert_multi(&stored);
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), keys, key_file, &stored, &file);
    let out = dir.path().join("out");
    let o = decode(dir.path(), &out, passphrase);
    assert!(
        o.status.success(),
        "decoder failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        std::fs::read(&out).unwrap() == file,
        "decoded bytes differ from the original"
    );
}

fn assert_fails(o: &Output, out: &Path, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the decoder accepted a bad repository");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!out.exists(), "nothing is written on failure");
}

#[test]
fn format2_independent_decoder_refuses_flipped_pack_byte() {
    let (keys, key_file) = encrypted_repo();
    let file = sample_file();
    let mut stored = store(&keys, &file);
    // Altered before the entry is written, so the pack ID matches and the chunk's tag must catch it.
    stored.packs[1].1[100] ^= 0x01;
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), &keys, Some(&key_file), &stored, &file);
    let out = dir.path().join("out");
    assert_fails(
        &decode(dir.path(), &out, PASSPHRASE),
        &out,
        "a chunk fails to open",
    );

    // Its sealed header altered after: the pack ID check catches it first.
    let dir = tempfile::tempdir().unwrap();
    let mut stored = store(&keys, &file);
    write_repo(dir.path(), &keys, Some(&key_file), &stored, &file);
    let in_header = stored.packs[0].1.len() - 10;
    stored.packs[0].1[in_header] ^= 0x80;
    std::fs::write(dir.path().join(&stored.packs[0].0), &stored.packs[0].1).unwrap();
    assert_fails(
        &decode(dir.path(), &out, PASSPHRASE),
        &out,
        "do not match its pack ID",
    );
}

#[test]
fn format2_independent_decoder_refuses_flipped_unencrypted_pack_byte() {
    let keys = Keys::unencrypted(RepoId::random(), 7);
    let file = sample_file();
    let mut stored = store(&keys, &file);
    stored.packs[0].1[100] ^= 0x01;
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), &keys, None, &stored, &file);
    let out = dir.path().join("out");
    let o = decode(dir.path(), &out, "");
    assert!(!o.status.success(), "the decoder accepted a flipped byte");
    assert!(!out.exists(), "nothing is written on failure");
}

#[test]
fn format2_independent_decoder_refuses_wrong_passphrase() {
    let (keys, key_file) = encrypted_repo();
    let file = sample_file();
    let stored = store(&keys, &file);
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), &keys, Some(&key_file), &stored, &file);
    let out = dir.path().join("out");
    assert_fails(
        &decode(dir.path(), &out, "not the passphrase"),
        &out,
        "the passphrase opens none of the 1 key files",
    );
}
