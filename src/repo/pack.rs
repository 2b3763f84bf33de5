//! Packs: sealed chunks in one attachment, with a sealed header listing them (docs/format.md, "Packs").
//!
//! `pack = blob_1 || ... || blob_n || sealed_header || header_len (u32 LE)`, header =
//! `version (u8 = 2) || count (u32) || count * entry (49 bytes)`.

use std::ops::Range;

use super::compress::{self, DecompressError, RESERVED_FLAGS};
use super::crypto::{ChunkId, CryptoError, Keys};

/// The header's version byte.
pub const VERSION: u8 = 2;
/// `chunk_id(32) || offset(u64) || sealed_len(u32) || plain_len(u32) || flags(u8)`.
pub const ENTRY_LEN: usize = 32 + 8 + 4 + 4 + 1;
/// `version || count`.
pub const HEADER_FIXED: usize = 1 + 4;
/// The `header_len` trailer.
pub const TRAILER_LEN: usize = 4;
/// Left free under the attachment limit for the multipart framing (FORMAT2.md).
pub const FRAMING_MARGIN: usize = 64 * 1024;

/// The largest pack for a channel's per-attachment limit.
pub fn pack_limit(attachment_limit: usize) -> usize {
    attachment_limit.saturating_sub(FRAMING_MARGIN)
}

/// What is wrong with a pack or a blob. Each a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("a chunk of {plain_len} bytes cannot fit in a pack of at most {limit} bytes; raise the part size or lower the chunker's maximum")]
    DoesNotFit { plain_len: usize, limit: usize },
    #[error("a pack of {len} bytes is too short or its header length ({header_len}) is out of range: the pack is truncated or not a pack")]
    Truncated { len: usize, header_len: usize },
    #[error("the pack header is {len} bytes, not what its count of {count} entries needs: the pack is damaged")]
    HeaderLength { len: usize, count: u32 },
    #[error(
        "the pack was written by a newer dstore (header version {0}); upgrade dstore to read it"
    )]
    Version(u8),
    #[error("a pack header entry points outside the pack's blobs: the pack is damaged")]
    EntryOutOfRange,
    #[error("a blob is {len} bytes but its entry says {sealed_len}: the wrong bytes were fetched or the pack is truncated")]
    BlobLength { len: usize, sealed_len: u32 },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Decompress(#[from] DecompressError),
}

/// One chunk's entry in a pack header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub id: ChunkId,
    pub offset: u64,
    pub sealed_len: u32,
    pub plain_len: u32,
    pub flags: u8,
}

impl PackEntry {
    /// The blob's bytes in the pack (a Range request's span).
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + u64::from(self.sealed_len)
    }
}

/// A pack's header: its entries in pack order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackHeader {
    pub entries: Vec<PackEntry>,
}

impl PackHeader {
    /// The header's bytes before sealing.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_FIXED + ENTRY_LEN * self.entries.len());
        out.push(VERSION);
        // A pack holds far fewer than 2^32 entries (each blob is at least 40 bytes of a ~10 MiB pack).
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.id);
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.sealed_len.to_le_bytes());
            out.extend_from_slice(&e.plain_len.to_le_bytes());
            out.push(e.flags);
        }
        out
    }

    /// Parses an opened header, checking that every entry lies within `[0, blobs_len)`.
    pub fn decode(header: &[u8], blobs_len: u64) -> Result<PackHeader, PackError> {
        let (&version, rest) = header
            .split_first()
            .ok_or(PackError::HeaderLength { len: 0, count: 0 })?;
        if version != VERSION {
            return Err(PackError::Version(version));
        }
        let count_bytes: [u8; 4] =
            rest.get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(PackError::HeaderLength {
                    len: header.len(),
                    count: 0,
                })?;
        let count = u32::from_le_bytes(count_bytes);
        let body = &rest[4..];
        if body.len() as u64 != u64::from(count) * ENTRY_LEN as u64 {
            return Err(PackError::HeaderLength {
                len: header.len(),
                count,
            });
        }
        let entries = body
            .chunks_exact(ENTRY_LEN)
            .map(|b| parse_entry(b, blobs_len))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PackHeader { entries })
    }
}

fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    out
}

fn parse_entry(b: &[u8], blobs_len: u64) -> Result<PackEntry, PackError> {
    let e = PackEntry {
        id: le::<32>(b),
        offset: u64::from_le_bytes(le(&b[32..])),
        sealed_len: u32::from_le_bytes(le(&b[40..])),
        plain_len: u32::from_le_bytes(le(&b[44..])),
        flags: b[48],
    };
    let end = e.offset.checked_add(u64::from(e.sealed_len));
    if end.is_none_or(|end| end > blobs_len) {
        return Err(PackError::EntryOutOfRange);
    }
    Ok(e)
}

/// The length of a sealed header of `count` entries.
fn sealed_header_len(keys: &Keys, count: usize) -> usize {
    keys.overhead() + HEADER_FIXED + ENTRY_LEN * count
}

/// Builds one pack in memory (at most `limit` bytes): compresses and seals each chunk as it is
/// added, and seals the header at the end.
pub struct PackWriter<'k> {
    keys: &'k Keys,
    limit: usize,
    /// The pack so far is `bytes[..used]`. Past it, in a reused buffer, lie bytes of an
    /// earlier pack, each overwritten before it counts, so the room is never zeroed again.
    bytes: Vec<u8>,
    used: usize,
    header: PackHeader,
}

impl<'k> PackWriter<'k> {
    /// A writer of packs of at most `limit` bytes (see [`pack_limit`]).
    pub fn new(keys: &'k Keys, limit: usize) -> Self {
        Self::with_buffer(keys, limit, Vec::new())
    }

    /// [`PackWriter::new`] writing into `buffer`, a pack buffer reused: what it holds is
    /// overwritten, never part of the pack.
    pub fn with_buffer(keys: &'k Keys, limit: usize, buffer: Vec<u8>) -> Self {
        PackWriter {
            keys,
            limit,
            bytes: buffer,
            used: 0,
            header: PackHeader::default(),
        }
    }

    /// The pack's size if it were finished now.
    pub fn size(&self) -> usize {
        self.used + sealed_header_len(self.keys, self.header.entries.len()) + TRAILER_LEN
    }

    /// The next `n` bytes of the pack, to be written whole by the caller.
    fn room(&mut self, n: usize) -> &mut [u8] {
        let end = self.used + n;
        if self.bytes.len() < end {
            if self.bytes.capacity() < self.limit {
                // One allocation of the whole pack: no reallocation copies as it fills.
                self.bytes.reserve_exact(self.limit - self.bytes.len());
            }
            // Zeroed only where the buffer never held anything.
            self.bytes.resize(end, 0);
        }
        let start = self.used;
        self.used = end;
        &mut self.bytes[start..end]
    }

    /// Chunks added so far.
    pub fn len(&self) -> usize {
        self.header.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.header.entries.is_empty()
    }

    /// Whether a chunk of `plain_len` bytes surely fits: the worst case is stored raw (a body is
    /// never longer than its plaintext), plus the seal and one more header entry.
    pub fn would_fit(&self, plain_len: usize) -> bool {
        self.size_with(plain_len + self.keys.overhead()) <= self.limit
    }

    fn size_with(&self, sealed_len: usize) -> usize {
        self.size() + sealed_len + ENTRY_LEN
    }

    /// Compresses and seals a chunk into the pack. Fails, leaving the pack as it was, when the
    /// sealed chunk does not fit (never after [`PackWriter::would_fit`] said yes).
    pub fn add(&mut self, id: ChunkId, plain: &[u8]) -> Result<&PackEntry, PackError> {
        let (flags, body) = compress::compress(plain);
        self.add_sealing(id, flags, plain.len(), &body)
    }

    /// Seals a chunk's body (compressed when `flags` says so, of a chunk of `plain_len` bytes)
    /// straight into the pack, with no copy in between. Fails, leaving the pack as it was, when
    /// the sealed chunk does not fit.
    pub fn add_sealing(
        &mut self,
        id: ChunkId,
        flags: u8,
        plain_len: usize,
        body: &[u8],
    ) -> Result<&PackEntry, PackError> {
        let too_big = PackError::DoesNotFit {
            plain_len,
            limit: self.limit,
        };
        let sealed = body.len() + self.keys.overhead();
        let (Ok(sealed_len), Ok(plain32)) = (u32::try_from(sealed), u32::try_from(plain_len))
        else {
            return Err(too_big);
        };
        if !self.would_fit_sealed(sealed) {
            return Err(too_big);
        }
        let (keys, offset) = (self.keys, self.used);
        let room = self.room(sealed);
        if keys.seal_blob_to(&id, flags, body, room).is_err() {
            // The room is the blob's length: this does not happen. Nothing was added.
            self.used = offset;
            return Err(too_big);
        }
        self.header.entries.push(PackEntry {
            id,
            offset: offset as u64,
            sealed_len,
            plain_len: plain32,
            flags,
        });
        Ok(&self.header.entries[self.header.entries.len() - 1])
    }

    /// Whether a body of `body_len` bytes fits once sealed ([`PackWriter::add_sealing`]).
    pub fn would_fit_body(&self, body_len: usize) -> bool {
        self.would_fit_sealed(body_len + self.keys.overhead())
    }

    /// Whether a blob already sealed (`sealed_len` bytes) fits with its header entry.
    pub fn would_fit_sealed(&self, sealed_len: usize) -> bool {
        self.size_with(sealed_len) <= self.limit
    }

    /// Appends a blob sealed elsewhere ([`Keys::seal_blob`] of `entry`'s ID and flags), setting
    /// the entry's offset; fails, leaving the pack as it was, when it does not fit.
    pub fn add_sealed(
        &mut self,
        mut entry: PackEntry,
        blob: &[u8],
    ) -> Result<&PackEntry, PackError> {
        if blob.len() != entry.sealed_len as usize || !self.would_fit_sealed(blob.len()) {
            return Err(PackError::DoesNotFit {
                plain_len: entry.plain_len as usize,
                limit: self.limit,
            });
        }
        entry.offset = self.used as u64;
        self.room(blob.len()).copy_from_slice(blob);
        self.header.entries.push(entry);
        Ok(&self.header.entries[self.header.entries.len() - 1])
    }

    /// The pack's bytes and its header.
    pub fn finish(self) -> (Vec<u8>, PackHeader) {
        let mut bytes = self.bytes;
        bytes.truncate(self.used);
        let sealed = self.keys.seal_header(&self.header.encode());
        bytes.extend_from_slice(&sealed);
        // The header of a pack under ~4 GiB: its length fits a u32.
        bytes.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        (bytes, self.header)
    }
}

/// From a pack's length and its last 4 bytes, the range of its sealed header.
pub fn header_range(pack_len: u64, trailer: &[u8]) -> Result<Range<u64>, PackError> {
    let truncated = |header_len: usize| PackError::Truncated {
        len: pack_len as usize,
        header_len,
    };
    let t: [u8; 4] = trailer.try_into().map_err(|_| truncated(0))?;
    let header_len = u32::from_le_bytes(t);
    let end = pack_len
        .checked_sub(TRAILER_LEN as u64)
        .ok_or(truncated(0))?;
    let start = end
        .checked_sub(u64::from(header_len))
        .ok_or(truncated(header_len as usize))?;
    if (header_len as usize) < HEADER_FIXED {
        return Err(truncated(header_len as usize));
    }
    Ok(start..end)
}

/// Opens a sealed header whose blobs end at `blobs_len` (the header range's start).
pub fn open_header(keys: &Keys, sealed: &[u8], blobs_len: u64) -> Result<PackHeader, PackError> {
    if sealed.len() < keys.overhead() + HEADER_FIXED {
        return Err(PackError::Truncated {
            len: sealed.len(),
            header_len: sealed.len(),
        });
    }
    let header = keys.open_header(sealed)?;
    PackHeader::decode(&header, blobs_len)
}

/// Opens one blob fetched by its entry's range: length, tag, decompression to exactly
/// `plain_len`, then the chunk ID against the plaintext (docs/format.md, "Opening a blob").
pub fn open_blob(keys: &Keys, entry: &PackEntry, sealed: &[u8]) -> Result<Vec<u8>, PackError> {
    if sealed.len() != entry.sealed_len as usize {
        return Err(PackError::BlobLength {
            len: sealed.len(),
            sealed_len: entry.sealed_len,
        });
    }
    if entry.flags & RESERVED_FLAGS != 0 {
        return Err(DecompressError::ReservedFlags { flags: entry.flags }.into());
    }
    let body = keys.open_blob(&entry.id, entry.flags, sealed)?;
    let plain = compress::decompress(entry.flags, body, entry.plain_len as usize)?;
    keys.verify_chunk(&entry.id, &plain)?;
    Ok(plain)
}

/// Where [`open_blob_in_place`] left a blob's plaintext.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenedBlob {
    /// At this range of the sealed bytes (a raw chunk, decrypted where it lay).
    InPlace(Range<usize>),
    /// In the buffer given for decompression.
    Decompressed,
}

/// [`open_blob`] without a copy: the same checks in the same order, the body decrypted within
/// `sealed` and, when compressed, decompressed into `out` (a buffer reused; its old contents are
/// replaced). On failure `sealed` may be left half decrypted.
pub fn open_blob_in_place(
    keys: &Keys,
    entry: &PackEntry,
    sealed: &mut [u8],
    out: &mut Vec<u8>,
) -> Result<OpenedBlob, PackError> {
    if sealed.len() != entry.sealed_len as usize {
        return Err(PackError::BlobLength {
            len: sealed.len(),
            sealed_len: entry.sealed_len,
        });
    }
    if entry.flags & RESERVED_FLAGS != 0 {
        return Err(DecompressError::ReservedFlags { flags: entry.flags }.into());
    }
    let body = keys.open_blob_in_place(&entry.id, entry.flags, sealed)?;
    let plain_len = entry.plain_len as usize;
    if entry.flags & compress::FLAG_ZSTD == 0 {
        if body.len() != plain_len {
            return Err(DecompressError::RawLength {
                len: body.len(),
                plain_len,
            }
            .into());
        }
        keys.verify_chunk(&entry.id, &sealed[body.clone()])?;
        return Ok(OpenedBlob::InPlace(body));
    }
    compress::decompress_into(entry.flags, &sealed[body], plain_len, out)?;
    keys.verify_chunk(&entry.id, out)?;
    Ok(OpenedBlob::Decompressed)
}

/// Whether [`open_raw_blob_to`] opens `entry`: a chunk stored raw (flags 0), not compressed and
/// with no flag of a newer dstore.
pub fn is_raw(entry: &PackEntry) -> bool {
    entry.flags == 0
}

/// [`open_blob_in_place`] for a raw chunk ([`is_raw`]), out of place: its plaintext decrypted
/// from `sealed` straight into `out` (exactly `plain_len` bytes: the room a writer keeps for
/// it), then checked against the chunk ID. When it fails, `out` holds nothing of use.
pub fn open_raw_blob_to(
    keys: &Keys,
    entry: &PackEntry,
    sealed: &[u8],
    out: &mut [u8],
) -> Result<(), PackError> {
    let len = sealed.len();
    if len != entry.sealed_len as usize {
        return Err(PackError::BlobLength {
            len,
            sealed_len: entry.sealed_len,
        });
    }
    if entry.flags & RESERVED_FLAGS != 0 {
        return Err(DecompressError::ReservedFlags { flags: entry.flags }.into());
    }
    let body_len = len.saturating_sub(keys.overhead());
    if !is_raw(entry) || body_len != entry.plain_len as usize || out.len() != body_len {
        return Err(DecompressError::RawLength {
            len: body_len,
            plain_len: entry.plain_len as usize,
        }
        .into());
    }
    keys.open_blob_to(&entry.id, entry.flags, sealed, out)?;
    keys.verify_chunk(&entry.id, out)?;
    Ok(())
}

/// A whole pack in memory, its header opened.
pub struct PackReader<'a> {
    keys: &'a Keys,
    bytes: &'a [u8],
    header: PackHeader,
}

impl<'a> PackReader<'a> {
    /// Parses the trailer and opens the header.
    pub fn open(keys: &'a Keys, bytes: &'a [u8]) -> Result<Self, PackError> {
        let trailer = bytes
            .len()
            .checked_sub(TRAILER_LEN)
            .map(|at| &bytes[at..])
            .ok_or(PackError::Truncated {
                len: bytes.len(),
                header_len: 0,
            })?;
        let r = header_range(bytes.len() as u64, trailer)?;
        let header = open_header(keys, &bytes[r.start as usize..r.end as usize], r.start)?;
        Ok(PackReader {
            keys,
            bytes,
            header,
        })
    }

    pub fn header(&self) -> &PackHeader {
        &self.header
    }

    pub fn entries(&self) -> &[PackEntry] {
        &self.header.entries
    }

    /// Opens the chunk of entry `index` (< `entries().len()`), checked.
    pub fn chunk(&self, index: usize) -> Result<Vec<u8>, PackError> {
        let e = self
            .header
            .entries
            .get(index)
            .ok_or(PackError::EntryOutOfRange)?;
        // decode checked every entry's range against the blobs' end.
        let r = e.range();
        open_blob(self.keys, e, &self.bytes[r.start as usize..r.end as usize])
    }
}

#[cfg(test)]
#[path = "pack_tests.rs"]
mod tests;
