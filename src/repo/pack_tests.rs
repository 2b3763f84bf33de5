use super::*;
use crate::repo::crypto::RepoId;
use crate::repo::keys::MasterKey;
use proptest::prelude::*;
use rand::{Rng, RngCore, SeedableRng};

fn enc(repo: u8) -> Keys {
    Keys::derive(&MasterKey::from_bytes([7u8; 32]), RepoId([repo; 16]))
}

fn plain() -> Keys {
    Keys::unencrypted(RepoId([1; 16]), 42)
}

fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(format!("row {i} of the table, value {}\n", i % 97).as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Chunks of mixed kinds and sizes, with their IDs.
fn sample_chunks(keys: &Keys, n: usize) -> Vec<(ChunkId, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let len = 1 + (i * 7919) % 20_000;
            let c = if i % 2 == 0 {
                text(len, i as u64)
            } else {
                random(len, i as u64)
            };
            (keys.chunk_id(&c), c)
        })
        .collect()
}

fn build(keys: &Keys, chunks: &[(ChunkId, Vec<u8>)], limit: usize) -> (Vec<u8>, PackHeader) {
    let mut w = PackWriter::new(keys, limit);
    for (id, c) in chunks {
        assert!(w.would_fit(c.len()));
        w.add(*id, c).unwrap();
    }
    let size = w.size();
    let (bytes, header) = w.finish();
    assert_eq!(bytes.len(), size);
    (bytes, header)
}

/// Reads the header and every chunk; the first error, or the chunks.
fn read_all(keys: &Keys, bytes: &[u8]) -> Result<Vec<Vec<u8>>, PackError> {
    let r = PackReader::open(keys, bytes)?;
    (0..r.entries().len()).map(|i| r.chunk(i)).collect()
}

#[test]
fn round_trip_many_chunks_encrypted_and_not() {
    for keys in [enc(1), plain()] {
        let chunks = sample_chunks(&keys, 60);
        let (bytes, header) = build(&keys, &chunks, 10 << 20);
        let r = PackReader::open(&keys, &bytes).unwrap();
        assert_eq!(r.header(), &header);
        assert_eq!(header.entries.len(), 60);
        assert_eq!(header.entries[0].offset, 0);
        for w in header.entries.windows(2) {
            assert_eq!(w[1].offset, w[0].offset + u64::from(w[0].sealed_len));
        }
        for (i, (id, c)) in chunks.iter().enumerate() {
            assert_eq!(&r.entries()[i].id, id);
            assert_eq!(&r.chunk(i).unwrap(), c);
            // Through the Range-request path too.
            let e = &r.entries()[i];
            let blob = &bytes[e.range().start as usize..e.range().end as usize];
            assert_eq!(&open_blob(&keys, e, blob).unwrap(), c);
        }
        // Text compressed, random raw.
        assert_eq!(header.entries[2].flags, compress::FLAG_ZSTD);
        assert_eq!(header.entries[1].flags, 0);
        let overhead = keys.overhead() as u32;
        assert_eq!(
            header.entries[1].sealed_len,
            header.entries[1].plain_len + overhead
        );
        // Plaintext never shows in an encrypted pack.
        if keys.encrypted() {
            let probe = &chunks[1].1[..64];
            assert!(!bytes.windows(64).any(|w| w == probe));
        }
    }
}

#[test]
fn layout_matches_the_format() {
    let keys = enc(1);
    let chunks = sample_chunks(&keys, 2);
    let (bytes, header) = build(&keys, &chunks, 1 << 20);
    let header_len = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap()) as usize;
    assert_eq!(header_len, 40 + 5 + 49 * 2);
    let blobs: usize = header.entries.iter().map(|e| e.sealed_len as usize).sum();
    assert_eq!(bytes.len(), blobs + header_len + 4);
    let opened = keys.open_header(&bytes[blobs..blobs + header_len]).unwrap();
    assert_eq!(opened[0], 2);
    assert_eq!(&opened[1..5], &2u32.to_le_bytes());
    assert_eq!(&opened[5..37], &chunks[0].0);
    assert_eq!(opened, header.encode());
}

#[test]
fn a_chunk_too_big_for_the_limit_is_refused() {
    let keys = enc(1);
    let c = random(5000, 1);
    let mut w = PackWriter::new(&keys, 4000);
    assert!(!w.would_fit(c.len()));
    let e = w.add(keys.chunk_id(&c), &c).unwrap_err();
    assert!(matches!(e, PackError::DoesNotFit { .. }), "{e}");
    assert!(w.is_empty());
    assert_eq!(pack_limit(10 << 20), 10_420_224);
}

#[test]
fn a_flipped_byte_anywhere_is_caught_encrypted() {
    let keys = enc(1);
    let chunks = sample_chunks(&keys, 4);
    let (bytes, _) = build(&keys, &chunks, 1 << 20);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    // Every byte of the header and trailer, and a spread of blob bytes.
    let header_start = bytes.len() - 4 - (40 + 5 + 49 * 4);
    let positions: Vec<usize> = (header_start..bytes.len())
        .chain((0..400).map(|_| rng.gen_range(0..header_start)))
        .collect();
    for at in positions {
        let mut bad = bytes.clone();
        bad[at] ^= 1 << rng.gen_range(0..8);
        assert!(read_all(&keys, &bad).is_err(), "flip at {at} not caught");
    }
}

#[test]
fn a_flipped_byte_never_yields_wrong_data_unencrypted() {
    let keys = plain();
    let chunks = sample_chunks(&keys, 4);
    let (bytes, _) = build(&keys, &chunks, 1 << 20);
    let want: Vec<Vec<u8>> = chunks.iter().map(|c| c.1.clone()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    for at in 0..bytes.len() {
        if at % 7 != 0 && at < bytes.len() - 300 {
            continue;
        }
        let mut bad = bytes.clone();
        bad[at] ^= 1 << rng.gen_range(0..8);
        if let Ok(got) = read_all(&keys, &bad) {
            assert_eq!(got, want, "flip at {at} gave other data");
        }
    }
}

#[test]
fn a_truncated_pack_is_caught() {
    for keys in [enc(1), plain()] {
        let chunks = sample_chunks(&keys, 5);
        let (bytes, _) = build(&keys, &chunks, 1 << 20);
        for len in (0..bytes.len())
            .step_by(97)
            .chain(bytes.len() - 8..bytes.len())
        {
            assert!(
                read_all(&keys, &bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        // A short fetched range for one blob.
        let r = PackReader::open(&keys, &bytes).unwrap();
        let e = r.entries()[0];
        let blob = &bytes[..e.sealed_len as usize - 1];
        assert!(matches!(
            open_blob(&keys, &e, blob),
            Err(PackError::BlobLength { .. })
        ));
    }
}

#[test]
fn a_blob_moved_to_another_ids_place_is_caught() {
    for keys in [enc(1), plain()] {
        let chunks = sample_chunks(&keys, 3);
        let (bytes, header) = build(&keys, &chunks, 1 << 20);
        let mut swapped = header.clone();
        let (a, b) = (swapped.entries[0], swapped.entries[1]);
        swapped.entries[0] = PackEntry {
            offset: b.offset,
            sealed_len: b.sealed_len,
            ..a
        };
        swapped.entries[1] = PackEntry {
            offset: a.offset,
            sealed_len: a.sealed_len,
            ..b
        };
        let blobs: usize = header.entries.iter().map(|e| e.sealed_len as usize).sum();
        // Resealed by a key holder: the header opens, the blobs must not.
        let sealed = keys.seal_header(&swapped.encode());
        let mut forged = bytes[..blobs].to_vec();
        forged.extend_from_slice(&sealed);
        forged.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let r = PackReader::open(&keys, &forged).unwrap();
        assert!(r.chunk(0).is_err());
        assert!(r.chunk(1).is_err());
        assert_eq!(r.chunk(2).unwrap(), chunks[2].1);
        // Same for an entry whose flags were changed.
        let mut e = header.entries[2];
        e.flags ^= compress::FLAG_ZSTD;
        let blob = &bytes[e.range().start as usize..e.range().end as usize];
        assert!(open_blob(&keys, &e, blob).is_err());
    }
}

#[test]
fn a_pack_from_another_repository_is_caught() {
    let ours = enc(1);
    let theirs = enc(2);
    let chunks = sample_chunks(&theirs, 3);
    let (bytes, header) = build(&theirs, &chunks, 1 << 20);
    let e = PackReader::open(&ours, &bytes).err().unwrap();
    assert_eq!(e, PackError::Crypto(CryptoError::Header));
    // A blob of theirs under its own entry, read with our keys.
    let en = header.entries[0];
    let blob = &bytes[en.range().start as usize..en.range().end as usize];
    assert_eq!(
        open_blob(&ours, &en, blob),
        Err(PackError::Crypto(CryptoError::Chunk))
    );
}

#[test]
fn a_header_of_a_newer_version_or_bad_ranges_is_refused() {
    let keys = enc(1);
    let mut h = PackHeader::default().encode();
    h[0] = 3;
    assert_eq!(PackHeader::decode(&h, 0), Err(PackError::Version(3)));
    let e = PackHeader {
        entries: vec![PackEntry {
            id: [0; 32],
            offset: u64::MAX - 3,
            sealed_len: 10,
            plain_len: 0,
            flags: 0,
        }],
    };
    assert_eq!(
        PackHeader::decode(&e.encode(), 1000),
        Err(PackError::EntryOutOfRange)
    );
    let mut short = e.encode();
    short.pop();
    assert!(matches!(
        PackHeader::decode(&short, 1000),
        Err(PackError::HeaderLength { .. })
    ));
    assert!(PackReader::open(&keys, &[0xff; 4]).is_err());
    assert!(PackReader::open(&keys, &[]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Adding while would_fit says yes never exceeds the limit, and the pack fills up.
    #[test]
    fn a_pack_never_exceeds_its_limit(
        sizes in proptest::collection::vec(1usize..30_000, 1..60),
        limit in 31_000usize..200_000,
        encrypted in any::<bool>(),
    ) {
        let keys = if encrypted { enc(1) } else { plain() };
        let mut w = PackWriter::new(&keys, limit);
        for (i, len) in sizes.iter().enumerate() {
            let c = random(*len, i as u64);
            if !w.would_fit(c.len()) {
                break;
            }
            w.add(keys.chunk_id(&c), &c).unwrap();
            prop_assert!(w.size() <= limit);
        }
        let (bytes, _) = w.finish();
        prop_assert!(bytes.len() <= limit);
    }
}

/// Throughput of chunk + compress + seal with the default parameters, 256 MiB each of random
/// and text-like data (a 32 MiB sample repeated). Run with
/// `cargo test --release --lib pack_throughput -- --ignored --nocapture`; prints, asserts nothing timed.
#[test]
#[ignore]
fn pack_throughput() {
    use crate::repo::chunker::{Chunker, ChunkerParams};
    let keys = enc(1);
    for (name, sample) in [("random", random(32 << 20, 9)), ("text", text(32 << 20, 9))] {
        let total = 256usize << 20;
        let reader = Repeat {
            data: &sample,
            pos: 0,
            left: total,
        };
        let t = std::time::Instant::now();
        let limit = pack_limit(10 << 20);
        let mut w = PackWriter::new(&keys, limit);
        let (mut stored, mut packs) = (0usize, 0usize);
        for c in Chunker::new(reader, ChunkerParams::default(), keys.chunker_seed()).unwrap() {
            let c = c.unwrap();
            if !w.would_fit(c.data.len()) {
                let (p, _) = std::mem::replace(&mut w, PackWriter::new(&keys, limit)).finish();
                stored += p.len();
                packs += 1;
            }
            w.add(keys.chunk_id(&c.data), &c.data).unwrap();
        }
        stored += w.finish().0.len();
        let s = t.elapsed().as_secs_f64();
        println!(
            "{name}: {:.0} MB/s, {:.2} s/GiB, stored {:.1}% in {} packs",
            total as f64 / s / 1e6,
            s * 4.0,
            100.0 * stored as f64 / total as f64,
            packs + 1
        );
    }
}

struct Repeat<'a> {
    data: &'a [u8],
    pos: usize,
    left: usize,
}

impl std::io::Read for Repeat<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min(self.left).min(self.data.len() - self.pos);
        out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.data.len();
        self.left -= n;
        Ok(n)
    }
}

/// A pack of bodies sealed straight into it, written into a reused buffer that holds an
/// earlier pack's bytes, reads back like one built with `add`; nothing of the earlier bytes
/// is left in it; a blob that does not fit is refused and leaves the pack as it was.
#[test]
fn bodies_sealed_into_a_reused_buffer_make_a_readable_pack() {
    for keys in [enc(1), plain()] {
        let chunks = sample_chunks(&keys, 12);
        let limit = 1 << 20;
        let mut w = PackWriter::with_buffer(&keys, limit, vec![5u8; 2 * limit]);
        for (id, c) in &chunks {
            let mut body = Vec::new();
            let flags = compress::compress_into(c, &mut body);
            if flags == 0 {
                body = c.clone();
            }
            let before = w.size();
            assert!(w.add_sealing(*id, flags, c.len(), &vec![0; limit]).is_err());
            assert_eq!(w.size(), before);
            w.add_sealing(*id, flags, c.len(), &body).unwrap();
        }
        let size = w.size();
        let (bytes, _) = w.finish();
        assert_eq!(bytes.len(), size);
        let want: Vec<Vec<u8>> = chunks.iter().map(|(_, c)| c.clone()).collect();
        assert_eq!(read_all(&keys, &bytes).unwrap(), want);
        // The same chunks into a fresh buffer: the same layout, byte for byte when unencrypted.
        let (fresh, _) = build(&keys, &chunks, limit);
        assert_eq!(fresh.len(), bytes.len());
        if !keys.encrypted() {
            assert_eq!(fresh, bytes);
        }
    }
}

/// Opening in place gives every chunk `open_blob` gives and refuses what it refuses.
#[test]
fn opening_in_place_agrees_with_open_blob() {
    for keys in [enc(2), plain()] {
        let chunks = sample_chunks(&keys, 10);
        let (bytes, header) = build(&keys, &chunks, 1 << 20);
        let mut out = vec![1u8; 50];
        for (e, (_, want)) in header.entries.iter().zip(&chunks) {
            let r = e.offset as usize..(e.offset + u64::from(e.sealed_len)) as usize;
            let mut blob = bytes[r.clone()].to_vec();
            let got = match open_blob_in_place(&keys, e, &mut blob, &mut out).unwrap() {
                OpenedBlob::InPlace(at) => blob[at].to_vec(),
                OpenedBlob::Decompressed => out.clone(),
            };
            assert_eq!(&got, want);
            assert_eq!(open_blob(&keys, e, &bytes[r.clone()]).unwrap(), got);
            let mut short = bytes[r.start..r.end - 1].to_vec();
            assert!(open_blob_in_place(&keys, e, &mut short, &mut out).is_err());
            let mut wrong = *e;
            wrong.id[0] ^= 1;
            let mut blob = bytes[r].to_vec();
            assert!(open_blob_in_place(&keys, &wrong, &mut blob, &mut out).is_err());
        }
    }
}

/// Opening a raw chunk out of place gives what `open_blob` gives, and refuses a flipped byte, a
/// short blob, another chunk's ID, another repository's keys and a compressed chunk (which it
/// does not open).
#[test]
fn opening_raw_chunks_out_of_place_agrees_with_open_blob() {
    for keys in [enc(2), plain()] {
        let chunks = sample_chunks(&keys, 10);
        let (bytes, header) = build(&keys, &chunks, 1 << 20);
        let mut raw = 0;
        for (i, e) in header.entries.iter().enumerate() {
            let r = e.offset as usize..(e.offset + u64::from(e.sealed_len)) as usize;
            let blob = &bytes[r.clone()];
            let cut = (i * 977) % blob.len();
            let mut out = vec![0xAAu8; e.plain_len as usize];
            if !is_raw(e) {
                assert!(open_raw_blob_to(&keys, e, blob, &mut out).is_err());
                continue;
            }
            raw += 1;
            open_raw_blob_to(&keys, e, blob, &mut out).unwrap();
            assert_eq!(out, open_blob(&keys, e, blob).unwrap());
            assert!(open_raw_blob_to(&keys, e, &blob[..blob.len() - 1], &mut out).is_err());
            let mut wrong = *e;
            wrong.id[0] ^= 1;
            assert!(open_raw_blob_to(&keys, &wrong, blob, &mut out).is_err());
            let mut flipped = blob.to_vec();
            flipped[cut] ^= 0x10;
            assert!(open_raw_blob_to(&keys, e, &flipped, &mut out).is_err());
            if keys.encrypted() {
                assert!(open_raw_blob_to(&enc(3), e, blob, &mut out).is_err());
            }
        }
        assert!(raw >= 4, "only {raw} raw chunks");
    }
}
