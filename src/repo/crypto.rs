//! Sealing and opening with the repository keys (docs/format.md, "Keys", "Chunks", "Packs" and
//! "Catalogue entry"): subkeys derived from the master key, chunk and pack IDs, sealed boxes with
//! their associated data, and the opaque attachment names.
//!
//! A sealed box is `nonce(24) || ciphertext || tag(16)` under XChaCha20-Poly1305 (src/repo/xchacha.rs),
//! with a random nonce from the OS: random 192-bit nonces never repeat, even across resumes on several machines.
//! An unencrypted repository uses the same calls with the plain scheme: IDs are SHA-256, blobs,
//! headers and entries are stored as they are, and names are keyed with 32 zero bytes.

use std::fmt;

use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

use super::keys::MasterKey;
use super::xchacha::XChaCha;

/// Length of a repository ID in bytes.
pub const REPO_ID_LEN: usize = 16;
/// Length of a sealed box's random nonce.
pub const NONCE_LEN: usize = 24;
/// Length of a sealed box's authentication tag.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a body in an encrypted repository: nonce 24 + tag 16. The plain scheme adds
/// nothing; [`Keys::overhead`] gives the figure for a given repository.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Length of a pack ID in bytes (hex in manifests).
pub const PACK_ID_LEN: usize = 16;
/// Length of an opaque attachment name: 32 hex of the name, 16 hex of the tag, then ".bin".
pub const OBJECT_NAME_LEN: usize = 48 + 4;

/// A chunk ID: keyed BLAKE3 of the plaintext (encrypted) or its SHA-256 (unencrypted).
pub type ChunkId = [u8; 32];

/// HKDF-SHA256 info strings of the subkeys (FORMAT2.md, "Repository").
const INFO_ID: &[u8] = b"dstore v2 chunk-id";
const INFO_DATA: &[u8] = b"dstore v2 data";
const INFO_CATALOGUE: &[u8] = b"dstore v2 catalogue";
const INFO_NAMES: &[u8] = b"dstore v2 names";
const INFO_CHUNKER: &[u8] = b"dstore v2 chunker";

/// Prefixes of the associated data of each kind of sealed box.
const AD_CHUNK: &[u8] = b"dstore v2 chunk";
const AD_HEADER: &[u8] = b"dstore v2 pack header";
const AD_ENTRY: &[u8] = b"dstore v2 entry";

/// The random ID of a repository, bound into every sealed box so nothing moves between repositories.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RepoId(pub [u8; REPO_ID_LEN]);

impl RepoId {
    /// A fresh random repository ID, from the OS RNG.
    pub fn random() -> RepoId {
        let mut id = [0u8; REPO_ID_LEN];
        rand::rngs::OsRng.fill_bytes(&mut id);
        RepoId(id)
    }

    /// The ID as 32 lowercase hex characters (as in the config).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 32 hex characters; `None` for anything else.
    pub fn from_hex(s: &str) -> Option<RepoId> {
        let mut id = [0u8; REPO_ID_LEN];
        hex::decode_to_slice(s, &mut id).ok()?;
        Some(RepoId(id))
    }
}

impl fmt::Debug for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoId({})", self.to_hex())
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The kinds of object posted under an opaque name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A pack of chunks (one attachment).
    Pack,
    /// A sealed catalogue entry (one per complete file version).
    Entry,
    /// A piece of a catalogue entry too large for one attachment.
    Piece,
    /// A synced folder's snapshot (docs/sync.md).
    Snapshot,
}

impl ObjectKind {
    /// Every kind, in the order [`Keys::name_kind`] tries them.
    pub const ALL: [ObjectKind; 4] = [
        ObjectKind::Pack,
        ObjectKind::Entry,
        ObjectKind::Piece,
        ObjectKind::Snapshot,
    ];

    /// The kind's string in the name derivation: "pack", "entry", "piece" or "snapshot".
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Pack => "pack",
            ObjectKind::Entry => "entry",
            ObjectKind::Piece => "piece",
            ObjectKind::Snapshot => "snapshot",
        }
    }
}

/// Why a sealed object or a chunk did not open. Each says what is wrong; none carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A blob's tag did not verify (or it was too short to hold one).
    #[error("a chunk failed its integrity check (wrong repository, or damaged); run `dstore verify` to find the damaged files")]
    Chunk,
    /// A chunk opened, but its plaintext does not hash to the ID it is stored under.
    #[error("a chunk does not match its ID (moved, swapped or damaged); run `dstore verify` to find the damaged files")]
    ChunkId,
    /// A pack header's tag did not verify.
    #[error("a pack header failed its integrity check (wrong repository, or damaged)")]
    Header,
    /// A catalogue entry's tag did not verify.
    #[error("a catalogue entry failed its integrity check (sealed by another repository's key, or damaged)")]
    Entry,
}

/// The secret part of an encrypted repository's keys.
#[derive(Clone)]
struct Sealing {
    id_key: [u8; 32],
    data: XChaCha,
    catalogue: XChaCha,
}

/// The keys of an open repository (encrypted) or the plain scheme (unencrypted). Cheap to clone,
/// Send + Sync; Debug shows only the repository ID and the scheme.
#[derive(Clone)]
pub struct Keys {
    repo_id: RepoId,
    chunker_seed: u64,
    /// 32 zero bytes in an unencrypted repository (FORMAT2.md).
    name_key: [u8; 32],
    /// `None` in an unencrypted repository.
    sealing: Option<Sealing>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("repo_id", &self.repo_id)
            .field("encrypted", &self.encrypted())
            .finish_non_exhaustive()
    }
}

/// HKDF-SHA256 with salt = repo_id, 32 bytes of output for `info`.
fn subkey(master: &MasterKey, repo_id: &RepoId, info: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(&repo_id.0), master.as_bytes());
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32, so expand cannot fail.
    hk.expand(info, &mut out)
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 length"));
    out
}

impl Keys {
    /// The keys of an encrypted repository: subkeys from the master key with HKDF-SHA256, salt =
    /// repo_id, info strings "dstore v2 chunk-id", "data", "catalogue", "names", "chunker".
    pub fn derive(master: &MasterKey, repo_id: RepoId) -> Keys {
        let id_key = subkey(master, &repo_id, INFO_ID);
        let data_key = subkey(master, &repo_id, INFO_DATA);
        let cat_key = subkey(master, &repo_id, INFO_CATALOGUE);
        let name_key = subkey(master, &repo_id, INFO_NAMES);
        let seed = subkey(master, &repo_id, INFO_CHUNKER);
        let mut seed8 = [0u8; 8];
        seed8.copy_from_slice(&seed[..8]);
        Keys {
            repo_id,
            chunker_seed: u64::from_le_bytes(seed8),
            name_key,
            sealing: Some(Sealing {
                id_key,
                data: XChaCha::new(data_key),
                catalogue: XChaCha::new(cat_key),
            }),
        }
    }

    /// The plain scheme of an unencrypted repository, whose chunker seed is stored in its config.
    pub fn unencrypted(repo_id: RepoId, chunker_seed: u64) -> Keys {
        Keys {
            repo_id,
            chunker_seed,
            name_key: [0u8; 32],
            sealing: None,
        }
    }

    /// Whether objects are sealed (false for an `encryption = false` repository).
    pub fn encrypted(&self) -> bool {
        self.sealing.is_some()
    }

    /// The repository ID bound into every sealed box.
    pub fn repo_id(&self) -> &RepoId {
        &self.repo_id
    }

    /// The seed of the content-defined chunker (secret in an encrypted repository).
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// Bytes that sealing adds to a body: [`SEAL_OVERHEAD`] when encrypted, 0 when not.
    pub fn overhead(&self) -> usize {
        if self.encrypted() {
            SEAL_OVERHEAD
        } else {
            0
        }
    }

    /// The ID of a chunk: `H(id_key, plaintext)` (keyed BLAKE3), or SHA-256 when unencrypted.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        match &self.sealing {
            Some(s) => *blake3::keyed_hash(&s.id_key, plaintext).as_bytes(),
            None => {
                let mut id = [0u8; 32];
                id.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, plaintext).as_ref());
                id
            }
        }
    }

    /// Checks that a chunk's plaintext (after decompression) hashes to the ID it is stored under.
    pub fn verify_chunk(&self, id: &ChunkId, plaintext: &[u8]) -> Result<(), CryptoError> {
        if self.chunk_id(plaintext) == *id {
            Ok(())
        } else {
            Err(CryptoError::ChunkId)
        }
    }

    /// Seals a chunk's body (compressed when `flags` bit0 is set, raw otherwise) with data_key and
    /// ad = "dstore v2 chunk" || repo_id || chunk_id || flags. Unencrypted: the body as it is.
    pub fn seal_blob(&self, id: &ChunkId, flags: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + self.overhead());
        self.seal_blob_into(id, flags, body, &mut out);
        out
    }

    /// [`Keys::seal_blob`] appended to `out` (a pack being assembled), with no other copy; returns
    /// the sealed length.
    pub fn seal_blob_into(&self, id: &ChunkId, flags: u8, body: &[u8], out: &mut Vec<u8>) -> usize {
        match &self.sealing {
            Some(s) => seal_onto(
                &s.data,
                &self.blob_ad(id, flags),
                body,
                &random_nonce(),
                out,
            ),
            None => out.extend_from_slice(body),
        }
        body.len() + self.overhead()
    }

    /// [`Keys::seal_blob`] into `out`, which must be exactly the blob's length (the body's and
    /// [`Keys::overhead`]): the body is encrypted straight into its place, with no copy.
    pub fn seal_blob_to(
        &self,
        id: &ChunkId,
        flags: u8,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        if out.len() != body.len() + self.overhead() {
            return Err(CryptoError::Chunk);
        }
        let Some(s) = &self.sealing else {
            out.copy_from_slice(body);
            return Ok(());
        };
        if seal_into(
            &s.data,
            &self.blob_ad(id, flags),
            body,
            &random_nonce(),
            out,
        ) {
            Ok(())
        } else {
            Err(CryptoError::Chunk)
        }
    }

    /// [`Keys::open_blob`] without a copy: checks the tag of `sealed` (a whole blob) and decrypts
    /// its body where it lies; returns the range of the plaintext body within `sealed`.
    pub fn open_blob_in_place(
        &self,
        id: &ChunkId,
        flags: u8,
        sealed: &mut [u8],
    ) -> Result<std::ops::Range<usize>, CryptoError> {
        match &self.sealing {
            Some(s) => {
                let body_len = sealed
                    .len()
                    .checked_sub(SEAL_OVERHEAD)
                    .ok_or(CryptoError::Chunk)?;
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(&sealed[..NONCE_LEN]);
                let mut tag = [0u8; TAG_LEN];
                tag.copy_from_slice(&sealed[NONCE_LEN + body_len..]);
                let body = NONCE_LEN..NONCE_LEN + body_len;
                s.data
                    .open_in_place(
                        &nonce,
                        &self.blob_ad(id, flags),
                        &mut sealed[body.clone()],
                        &tag,
                    )
                    .map_err(|_| CryptoError::Chunk)?;
                Ok(body)
            }
            None => Ok(0..sealed.len()),
        }
    }

    /// [`Keys::open_blob_in_place`] out of place: the whole sealed blob's body checked and
    /// decrypted into `out`, which must be exactly the body's length. When it fails, `out`
    /// holds nothing of use.
    pub fn open_blob_to(
        &self,
        id: &ChunkId,
        flags: u8,
        sealed: &[u8],
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        if sealed.len() != out.len() + self.overhead() {
            return Err(CryptoError::Chunk);
        }
        let Some(s) = &self.sealing else {
            out.copy_from_slice(sealed);
            return Ok(());
        };
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let (nonce, tag) = (nonce.try_into(), tag.try_into());
        let (Ok(nonce), Ok(tag)) = (nonce, tag) else {
            return Err(CryptoError::Chunk);
        };
        s.data
            .open_to(nonce, &self.blob_ad(id, flags), body, out, tag)
            .map_err(|_| CryptoError::Chunk)
    }

    /// Opens a blob sealed by [`Keys::seal_blob`] under the same ID and flags, checking its tag.
    /// The caller then decompresses when flagged and calls [`Keys::verify_chunk`].
    pub fn open_blob(
        &self,
        id: &ChunkId,
        flags: u8,
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        match &self.sealing {
            Some(s) => open(&s.data, &self.blob_ad(id, flags), sealed).ok_or(CryptoError::Chunk),
            None => Ok(sealed.to_vec()),
        }
    }

    /// Seals a pack header with data_key and ad = "dstore v2 pack header" || repo_id.
    /// Unencrypted: the header as it is.
    pub fn seal_header(&self, header: &[u8]) -> Vec<u8> {
        match &self.sealing {
            Some(s) => seal(&s.data, &self.ad(AD_HEADER), header),
            None => header.to_vec(),
        }
    }

    /// Opens a pack header sealed by [`Keys::seal_header`], checking its tag.
    pub fn open_header(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match &self.sealing {
            Some(s) => open(&s.data, &self.ad(AD_HEADER), sealed).ok_or(CryptoError::Header),
            None => Ok(sealed.to_vec()),
        }
    }

    /// Seals a catalogue entry's JSON (or a piece of it) with cat_key and ad = "dstore v2 entry" ||
    /// repo_id. Unencrypted: the JSON as it is (an unencrypted repository is readable by design).
    pub fn seal_entry(&self, json: &[u8]) -> Vec<u8> {
        match &self.sealing {
            Some(s) => seal(&s.catalogue, &self.ad(AD_ENTRY), json),
            None => json.to_vec(),
        }
    }

    /// Opens a catalogue entry sealed by [`Keys::seal_entry`], checking its tag.
    pub fn open_entry(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match &self.sealing {
            Some(s) => open(&s.catalogue, &self.ad(AD_ENTRY), sealed).ok_or(CryptoError::Entry),
            None => Ok(sealed.to_vec()),
        }
    }

    /// The ID of a whole pack (docs/format.md 5): `H(id_key, "pack" || len (u64 LE) || tail)`
    /// truncated to 16 bytes, where `tail` is the sealed header and its trailer (the last
    /// `header_len + 4` bytes), or the whole pack when its trailer points outside it;
    /// unencrypted, SHA-256 of the same. The sealed header lists every blob's chunk ID, offset
    /// and length under its own tag and a random nonce, and each blob is checked by its own tag
    /// and chunk ID, so the blobs are not hashed a second time.
    pub fn pack_id(&self, pack: &[u8]) -> [u8; PACK_ID_LEN] {
        // The same hash as a chunk ID, of a short message: a few KiB of header (the whole
        // pack only when it is damaged).
        let tail = &pack[pack_id_tail(pack)..];
        let mut m = Vec::with_capacity(4 + 8 + tail.len());
        m.extend_from_slice(b"pack");
        m.extend_from_slice(&(pack.len() as u64).to_le_bytes());
        m.extend_from_slice(tail);
        let mut id = [0u8; PACK_ID_LEN];
        id.copy_from_slice(&self.chunk_id(&m)[..PACK_ID_LEN]);
        id
    }

    /// The opaque attachment name of an object: `hex(r) || hex(t) || ".bin"` with
    /// r = H(name_key, kind || 0 || file_id || 0 || index_le)[..16] and
    /// t = H(name_key, "tag" || 0 || kind || 0 || r)[..8]. Deterministic, so resume finds an
    /// orphaned object by name.
    pub fn object_name(&self, kind: ObjectKind, file_id: &str, index: u64) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.name_key);
        h.update(kind.as_str().as_bytes());
        h.update(&[0]);
        h.update(file_id.as_bytes());
        h.update(&[0]);
        h.update(&index.to_le_bytes());
        let mut r = [0u8; 16];
        r.copy_from_slice(&h.finalize().as_bytes()[..16]);
        let mut name = String::with_capacity(OBJECT_NAME_LEN);
        name.push_str(&hex::encode(r));
        name.push_str(&hex::encode(self.name_tag(kind, &r)));
        name.push_str(".bin");
        name
    }

    /// The kind of an object from its opaque name alone, or `None` when the name is not one this
    /// repository's keys made (another repository's, another tool's, or not an object name).
    pub fn name_kind(&self, name: &str) -> Option<ObjectKind> {
        let stem = name.strip_suffix(".bin")?;
        // Names are made in lowercase hex; anything else is not one of ours.
        if stem.len() != 48 || !stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut r = [0u8; 16];
        let mut t = [0u8; 8];
        hex::decode_to_slice(&stem[..32], &mut r).ok()?;
        hex::decode_to_slice(&stem[32..], &mut t).ok()?;
        ObjectKind::ALL
            .into_iter()
            .find(|kind| self.name_tag(*kind, &r) == t)
    }

    /// t = H(name_key, "tag" || 0 || kind || 0 || r)[..8].
    fn name_tag(&self, kind: ObjectKind, r: &[u8; 16]) -> [u8; 8] {
        let mut h = blake3::Hasher::new_keyed(&self.name_key);
        h.update(b"tag\0");
        h.update(kind.as_str().as_bytes());
        h.update(&[0]);
        h.update(r);
        let mut t = [0u8; 8];
        t.copy_from_slice(&h.finalize().as_bytes()[..8]);
        t
    }

    /// prefix || repo_id.
    fn ad(&self, prefix: &[u8]) -> Vec<u8> {
        let mut ad = Vec::with_capacity(prefix.len() + REPO_ID_LEN);
        ad.extend_from_slice(prefix);
        ad.extend_from_slice(&self.repo_id.0);
        ad
    }

    /// "dstore v2 chunk" || repo_id || chunk_id || flags.
    fn blob_ad(&self, id: &ChunkId, flags: u8) -> Vec<u8> {
        let mut ad = self.ad(AD_CHUNK);
        ad.extend_from_slice(id);
        ad.push(flags);
        ad
    }
}

/// Where a pack ID's `tail` starts: the sealed header's first byte, or 0 when the trailer
/// (the last 4 bytes, `header_len` LE) points outside the pack or the pack has none.
fn pack_id_tail(pack: &[u8]) -> usize {
    use super::pack::TRAILER_LEN;
    let Some(at) = pack.len().checked_sub(TRAILER_LEN) else {
        return 0;
    };
    let mut t = [0u8; TRAILER_LEN];
    t.copy_from_slice(&pack[at..]);
    at.saturating_sub(u32::from_le_bytes(t) as usize)
}

/// nonce(24) || ciphertext || tag(16), with a fresh nonce from the OS RNG, in one allocation.
pub(super) fn seal(aead: &XChaCha, ad: &[u8], plain: &[u8]) -> Vec<u8> {
    seal_with_nonce(aead, ad, plain, &random_nonce())
}

/// 24 bytes from the OS RNG.
fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

/// [`seal`] with a given nonce (known-answer tests pin the layout with it).
fn seal_with_nonce(aead: &XChaCha, ad: &[u8], plain: &[u8], nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
    seal_onto(aead, ad, plain, nonce, &mut out);
    out
}

/// Appends nonce || ciphertext || tag to `out`.
fn seal_onto(aead: &XChaCha, ad: &[u8], plain: &[u8], nonce: &[u8; NONCE_LEN], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + plain.len() + SEAL_OVERHEAD, 0);
    let sealed = seal_into(aead, ad, plain, nonce, &mut out[start..]);
    debug_assert!(sealed, "the room was made the blob's length");
}

/// Writes nonce || ciphertext || tag into `out`, which must be `plain.len() + SEAL_OVERHEAD`
/// bytes long: the plaintext is encrypted straight into its place. `false` when it is not.
fn seal_into(
    aead: &XChaCha,
    ad: &[u8],
    plain: &[u8],
    nonce: &[u8; NONCE_LEN],
    out: &mut [u8],
) -> bool {
    if out.len() != plain.len() + SEAL_OVERHEAD {
        return false;
    }
    let (head, rest) = out.split_at_mut(NONCE_LEN);
    let (cipher, tag_room) = rest.split_at_mut(plain.len());
    head.copy_from_slice(nonce);
    match aead.seal_to(nonce, ad, plain, cipher) {
        Ok(tag) => {
            tag_room.copy_from_slice(&tag);
            true
        }
        Err(_) => false,
    }
}

/// Opens nonce || ciphertext || tag; `None` when too short or when the tag does not verify.
pub(super) fn open(aead: &XChaCha, ad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let body_len = sealed.len().checked_sub(SEAL_OVERHEAD)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[..NONCE_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&sealed[NONCE_LEN + body_len..]);
    let mut plain = sealed[NONCE_LEN..NONCE_LEN + body_len].to_vec();
    aead.open_in_place(&nonce, ad, &mut plain, &tag).ok()?;
    Some(plain)
}

#[cfg(test)]
#[path = "crypto_tests.rs"]
mod tests;
