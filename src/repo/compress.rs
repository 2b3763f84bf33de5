//! The per-chunk compression decision and bounded decompression (docs/format.md, "Chunks").

use std::borrow::Cow;

/// Flags bit 0: the body is zstd-compressed.
pub const FLAG_ZSTD: u8 = 0x01;
/// Bits a reader must refuse: written by a newer dstore.
pub const RESERVED_FLAGS: u8 = !FLAG_ZSTD;
/// zstd level 3 (FORMAT2.md).
pub const LEVEL: i32 = 3;
/// The sample tried first: a chunk whose first 64 KiB do not shrink by 3% is stored raw.
pub const SAMPLE: usize = 64 * 1024;
/// The largest plaintext a chunk can have (fastcdc's largest maximum chunk size, 16 MiB).
pub const MAX_PLAIN: usize = fastcdc::v2020::MAXIMUM_MAX as usize;

/// Why a chunk body did not decompress.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    #[error("a chunk claims {plain_len} bytes, more than any chunk can hold ({MAX_PLAIN}); the pack header or entry is damaged")]
    TooLarge { plain_len: usize },
    #[error("a compressed chunk does not decompress to its recorded {plain_len} bytes (damaged, or larger than recorded); run `dstore verify` to find the damaged files")]
    Corrupt { plain_len: usize },
    #[error("a raw chunk is {len} bytes but its recorded length is {plain_len}; the pack header or entry is damaged")]
    RawLength { len: usize, plain_len: usize },
    #[error("a chunk has flags {flags:#04x}: it was written by a newer dstore; upgrade dstore to read it")]
    ReservedFlags { flags: u8 },
}

/// `compressed <= plain * 0.97`, in integers.
fn pays(compressed: usize, plain: usize) -> bool {
    compressed.saturating_mul(100) <= plain.saturating_mul(97)
}

fn zstd_compress(data: &[u8]) -> Option<Vec<u8>> {
    // Compression of an in-memory slice fails only on allocation failure; store raw then.
    zstd::bulk::compress(data, LEVEL).ok()
}

/// Decides how to store a chunk: `(FLAG_ZSTD, compressed)` when that is at most 97% of the
/// plaintext, else `(0, plaintext)` borrowed. A chunk longer than [`SAMPLE`] whose first 64 KiB do
/// not shrink by 3% is stored raw without compressing it whole, so incompressible data costs the
/// sample only.
pub fn compress(plain: &[u8]) -> (u8, Cow<'_, [u8]>) {
    compress_with(plain, zstd_compress)
}

/// [`compress`] with the compressor passed in, so a test can count what it is given.
fn compress_with(
    plain: &[u8],
    mut zstd_compress: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> (u8, Cow<'_, [u8]>) {
    if plain.is_empty() {
        return (0, Cow::Borrowed(plain));
    }
    if plain.len() > SAMPLE {
        let sample = &plain[..SAMPLE];
        match zstd_compress(sample) {
            Some(c) if pays(c.len(), sample.len()) => {}
            _ => return (0, Cow::Borrowed(plain)),
        }
    }
    match zstd_compress(plain) {
        Some(c) if pays(c.len(), plain.len()) => (FLAG_ZSTD, Cow::Owned(c)),
        _ => (0, Cow::Borrowed(plain)),
    }
}

/// The plaintext of a body: decompressed when `flags` has [`FLAG_ZSTD`], to exactly `plain_len`
/// bytes and never more (the output buffer is `plain_len` bytes, so a zip bomb fails instead of
/// filling memory); a raw body must be exactly `plain_len` bytes.
pub fn decompress(flags: u8, body: Vec<u8>, plain_len: usize) -> Result<Vec<u8>, DecompressError> {
    if flags & RESERVED_FLAGS != 0 {
        return Err(DecompressError::ReservedFlags { flags });
    }
    if plain_len > MAX_PLAIN {
        return Err(DecompressError::TooLarge { plain_len });
    }
    if flags & FLAG_ZSTD == 0 {
        if body.len() != plain_len {
            return Err(DecompressError::RawLength {
                len: body.len(),
                plain_len,
            });
        }
        return Ok(body);
    }
    let mut out = Vec::with_capacity(plain_len);
    let corrupt = DecompressError::Corrupt { plain_len };
    let mut d = zstd::bulk::Decompressor::new().map_err(|_| corrupt.clone())?;
    let n = d
        .decompress_to_buffer(&body[..], &mut out)
        .map_err(|_| corrupt.clone())?;
    if n != plain_len || out.len() != plain_len {
        return Err(corrupt);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{RngCore, SeedableRng};

    fn text(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 80);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(
                format!(
                    "line {i}: the quick brown fox jumps over {} dogs\n",
                    i * 7 % 13
                )
                .as_bytes(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn random(len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(len as u64).fill_bytes(&mut v);
        v
    }

    #[test]
    fn text_compresses_and_round_trips() {
        let plain = text(1 << 20);
        let (flags, body) = compress(&plain);
        assert_eq!(flags, FLAG_ZSTD);
        assert!(body.len() < plain.len() / 4, "{}", body.len());
        assert_eq!(
            decompress(flags, body.into_owned(), plain.len()).unwrap(),
            plain
        );
    }

    #[test]
    fn random_data_is_stored_raw_borrowed() {
        let plain = random(1 << 20);
        let (flags, body) = compress(&plain);
        assert_eq!(flags, 0);
        // Borrowed: the chunk was not copied (nor compressed whole).
        assert!(matches!(body, Cow::Borrowed(_)));
        assert_eq!(
            decompress(0, body.into_owned(), plain.len()).unwrap(),
            plain
        );
    }

    /// Random data costs the 64 KiB sample only: the compressor sees nothing else.
    #[test]
    fn random_data_costs_only_the_sample() {
        let plain = random(8 << 20);
        let mut seen = 0;
        let (flags, _) = compress_with(&plain, |d| {
            seen += d.len();
            zstd_compress(d)
        });
        assert_eq!((flags, seen), (0, SAMPLE));
        // Text is compressed whole after its sample.
        let plain = text(1 << 20);
        let mut seen = 0;
        let (flags, _) = compress_with(&plain, |d| {
            seen += d.len();
            zstd_compress(d)
        });
        assert_eq!((flags, seen), (FLAG_ZSTD, SAMPLE + plain.len()));
    }

    #[test]
    fn compressible_tail_after_random_sample_is_stored_raw() {
        // The documented trade-off: the decision is the sample's.
        let mut plain = random(SAMPLE);
        plain.extend(text(1 << 20));
        assert_eq!(compress(&plain).0, 0);
    }

    #[test]
    fn a_bomb_is_refused() {
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20][..], LEVEL).unwrap();
        assert!(bomb.len() < 1 << 20);
        let e = decompress(FLAG_ZSTD, bomb.clone(), 1 << 20).unwrap_err();
        assert_eq!(e, DecompressError::Corrupt { plain_len: 1 << 20 });
        let e = decompress(FLAG_ZSTD, bomb, 64 << 20).unwrap_err();
        assert_eq!(
            e,
            DecompressError::TooLarge {
                plain_len: 64 << 20
            }
        );
    }

    #[test]
    fn short_output_wrong_raw_length_and_reserved_flags_are_refused() {
        let plain = text(100_000);
        let (flags, body) = compress(&plain);
        assert!(decompress(flags, body.to_vec(), plain.len() + 1).is_err());
        assert!(decompress(0, plain.clone(), plain.len() - 1).is_err());
        assert!(decompress(0x02, plain.clone(), plain.len()).is_err());
        assert!(decompress(FLAG_ZSTD, b"not zstd".to_vec(), 10).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn compress_then_decompress_is_identity(
            plain in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200_000),
                (0usize..200_000).prop_map(text),
                (0usize..200_000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
            ]
        ) {
            let (flags, body) = compress(&plain);
            prop_assert!(body.len() <= plain.len());
            prop_assert_eq!(decompress(flags, body.into_owned(), plain.len()).unwrap(), plain);
        }
    }
}
