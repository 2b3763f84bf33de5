//! The master key and the key files that wrap it (docs/format.md, "Key file"): a random 256-bit
//! master key, sealed under a key derived from a passphrase with Argon2id. Several key files may
//! wrap the same master key; adding, removing or changing one re-encrypts no data.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::crypto::{self, RepoId, SEAL_OVERHEAD};
use super::passphrase::Passphrase;
use super::xchacha::XChaCha;

/// Length of the master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;
/// Length of a key file's Argon2id salt in bytes.
pub const SALT_LEN: usize = 16;
/// The key file's format number.
const FORMAT: u32 = 2;
/// The key file's KDF name.
const KDF: &str = "argon2id";
/// Associated data prefix of the sealed master key (then the repository ID).
const AD_KEY: &[u8] = b"dstore key v2";

/// Upper bounds on a key file's KDF parameters. A key file is read from Discord before anything is
/// authenticated, so a forged one must not make dstore allocate gigabytes or spin for hours.
/// 4 GiB and 64 passes are far beyond the defaults (64 MiB, 3 passes).
const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;

/// The repository's random 256-bit master key. Debug redacts it; its bytes are overwritten on drop
/// (best effort: without `unsafe` the compiler may have left copies elsewhere).
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl MasterKey {
    /// A fresh master key from the OS RNG.
    pub fn random() -> MasterKey {
        let mut k = [0u8; MASTER_KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut k);
        MasterKey(k)
    }

    /// A master key from its bytes (for a key kept outside Discord, such as the emulator demo's).
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> MasterKey {
        MasterKey(bytes)
    }

    /// The raw key, for key derivation and for the one place that keeps it locally.
    pub fn as_bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0 = [0u8; MASTER_KEY_LEN];
        // Keeps the store from being removed as dead.
        std::hint::black_box(&self.0);
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Argon2id cost parameters of a key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB (default 65536 = 64 MiB).
    pub m_cost_kib: u32,
    /// Passes over the memory (default 3).
    pub t_cost: u32,
    /// Lanes (default 1).
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane (FORMAT2.md, "Repository").
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 65536,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

/// Why a key file could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The tag did not verify: the passphrase is wrong (or the key file is another repository's).
    #[error("the passphrase does not open this key file")]
    WrongPassphrase,
    /// [`open_any`]: the passphrase opened none of the repository's key files.
    #[error("the passphrase opens none of the {count} key file{} of this repository; check it (DSTORE_PASSPHRASE, its file or command, or what you typed)", if *count == 1 { "" } else { "s" })]
    NoneOpens {
        /// How many key files were tried (or skipped as unreadable).
        count: usize,
    },
    /// [`open_any`] with no key file at all.
    #[error("this repository is encrypted but has no key file in its first channel; a copy may be in the data dir's repo/keys/ folder")]
    NoKeyFiles,
    /// A key file of a later format.
    #[error(
        "a key file was written by a newer dstore (key file format {0}); upgrade dstore to use it"
    )]
    Newer(u32),
    /// The key file is not JSON of the expected shape, or its fields are out of range.
    #[error("a key file is damaged or not a dstore key file ({0}); `dstore key list` shows the key files")]
    Malformed(String),
    /// The KDF parameters are outside what dstore accepts.
    #[error("a key file asks for Argon2id costs dstore does not accept ({0})")]
    Params(String),
}

/// A key file (JSON, posted to the first channel, one per passphrase):
/// `{"format":2,"kdf":"argon2id","m_cost_kib":..,"t_cost":..,"p_cost":..,"salt":hex16,"sealed":hex}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Always 2.
    pub format: u32,
    /// Always "argon2id".
    pub kdf: String,
    /// Argon2id memory in KiB.
    pub m_cost_kib: u32,
    /// Argon2id passes.
    pub t_cost: u32,
    /// Argon2id lanes.
    pub p_cost: u32,
    /// 16 random bytes, hex.
    pub salt: String,
    /// AEAD(kek, master_key, ad = "dstore key v2" || repo_id), hex (72 bytes).
    pub sealed: String,
}

impl KeyFile {
    /// Wraps `master` under `passphrase` with a fresh salt. Fails only for parameters argon2 or
    /// dstore refuses.
    pub fn create(
        master: &MasterKey,
        repo_id: &RepoId,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<KeyFile, KeyError> {
        Self::create_among(master, repo_id, passphrase, params, &[])
    }

    /// [`KeyFile::create`] with a salt whose key ID (its first 8 hex) none of `existing` has, so
    /// `key add` never gives two key files one name.
    pub fn create_among(
        master: &MasterKey,
        repo_id: &RepoId,
        passphrase: &Passphrase,
        params: KdfParams,
        existing: &[KeyFile],
    ) -> Result<KeyFile, KeyError> {
        let mut random = || {
            let mut salt = [0u8; SALT_LEN];
            rand::rngs::OsRng.fill_bytes(&mut salt);
            salt
        };
        Self::create_from(master, repo_id, passphrase, params, existing, &mut random)
    }

    /// [`KeyFile::create_among`] drawing salts from `salts`.
    fn create_from(
        master: &MasterKey,
        repo_id: &RepoId,
        passphrase: &Passphrase,
        params: KdfParams,
        existing: &[KeyFile],
        salts: &mut dyn FnMut() -> [u8; SALT_LEN],
    ) -> Result<KeyFile, KeyError> {
        let salt = loop {
            let salt = salts();
            let id = hex::encode(&salt[..4]);
            if existing.iter().all(|k| k.id() != id) {
                break salt;
            }
        };
        let kek = kek(passphrase, &salt, params)?;
        let sealed = crypto::seal(&XChaCha::new(kek), &ad(repo_id), master.as_bytes());
        Ok(KeyFile {
            format: FORMAT,
            kdf: KDF.to_string(),
            m_cost_kib: params.m_cost_kib,
            t_cost: params.t_cost,
            p_cost: params.p_cost,
            salt: hex::encode(salt),
            sealed: hex::encode(sealed),
        })
    }

    /// Unwraps the master key with `passphrase`; a wrong passphrase (or a key file of another
    /// repository) gives [`KeyError::WrongPassphrase`].
    pub fn open(&self, repo_id: &RepoId, passphrase: &Passphrase) -> Result<MasterKey, KeyError> {
        if self.format > FORMAT {
            return Err(KeyError::Newer(self.format));
        }
        if self.format != FORMAT || self.kdf != KDF {
            return Err(KeyError::Malformed(format!(
                "format {} with kdf {:?}, expected format 2 with argon2id",
                self.format, self.kdf
            )));
        }
        let mut salt = [0u8; SALT_LEN];
        hex::decode_to_slice(&self.salt, &mut salt)
            .map_err(|_| KeyError::Malformed("its salt is not 16 bytes of hex".into()))?;
        let mut sealed = [0u8; MASTER_KEY_LEN + SEAL_OVERHEAD];
        hex::decode_to_slice(&self.sealed, &mut sealed)
            .map_err(|_| KeyError::Malformed("its sealed key is not 72 bytes of hex".into()))?;
        let kek = kek(passphrase, &salt, self.params())?;
        let opened = crypto::open(&XChaCha::new(kek), &ad(repo_id), &sealed)
            .ok_or(KeyError::WrongPassphrase)?;
        let mut key = [0u8; MASTER_KEY_LEN];
        key.copy_from_slice(&opened);
        Ok(MasterKey(key))
    }

    /// The Argon2id parameters this key file was made with.
    pub fn params(&self) -> KdfParams {
        KdfParams {
            m_cost_kib: self.m_cost_kib,
            t_cost: self.t_cost,
            p_cost: self.p_cost,
        }
    }

    /// A short public ID of this key file: the first 8 hex characters of its salt.
    pub fn id(&self) -> String {
        self.salt.chars().take(8).collect()
    }

    /// The key file's attachment name: `dstore-key-<8 hex>.json`, the hex being [`KeyFile::id`].
    pub fn file_name(&self) -> String {
        format!("dstore-key-{}.json", self.id())
    }

    /// The key file as JSON bytes, for posting.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("a key file always serializes"))
    }

    /// Parses a key file downloaded from Discord.
    pub fn from_json(bytes: &[u8]) -> Result<KeyFile, KeyError> {
        serde_json::from_slice(bytes).map_err(|e| KeyError::Malformed(format!("{e}")))
    }
}

/// What [`open_any`] found: the master key, which key file opened it, and the key files that could
/// not be tried (damaged, or of a newer format), to report.
#[derive(Debug)]
pub struct Opened {
    /// The repository's master key.
    pub master: MasterKey,
    /// The index in the given list of the key file that opened.
    pub index: usize,
    /// Key files skipped before it, with why.
    pub skipped: Vec<(usize, KeyError)>,
}

/// Tries `passphrase` on each key file in the order given (newest first, by the format) until one
/// opens. A damaged or newer key file is skipped (and listed); when none opens, one error says so.
pub fn open_any(
    files: &[KeyFile],
    repo_id: &RepoId,
    passphrase: &Passphrase,
) -> Result<Opened, KeyError> {
    if files.is_empty() {
        return Err(KeyError::NoKeyFiles);
    }
    let mut skipped = Vec::new();
    for (index, file) in files.iter().enumerate() {
        match file.open(repo_id, passphrase) {
            Ok(master) => {
                return Ok(Opened {
                    master,
                    index,
                    skipped,
                })
            }
            Err(KeyError::WrongPassphrase) => {}
            Err(e) => skipped.push((index, e)),
        }
    }
    Err(KeyError::NoneOpens { count: files.len() })
}

/// "dstore key v2" || repo_id.
fn ad(repo_id: &RepoId) -> Vec<u8> {
    let mut ad = AD_KEY.to_vec();
    ad.extend_from_slice(&repo_id.0);
    ad
}

/// kek = Argon2id v0x13 (passphrase, salt, m, t, p), 32 bytes.
fn kek(passphrase: &Passphrase, salt: &[u8], p: KdfParams) -> Result<[u8; 32], KeyError> {
    if p.m_cost_kib > MAX_M_COST_KIB || p.t_cost > MAX_T_COST || p.p_cost > MAX_P_COST {
        return Err(KeyError::Params(format!(
            "{} KiB, {} passes, {} lanes; at most {MAX_M_COST_KIB} KiB, {MAX_T_COST} passes, {MAX_P_COST} lanes",
            p.m_cost_kib, p.t_cost, p.p_cost
        )));
    }
    let params = Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| KeyError::Params(format!("{e}")))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.expose().as_bytes(), salt, &mut out)
        .map_err(|e| KeyError::Params(format!("{e}")))?;
    Ok(out)
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
