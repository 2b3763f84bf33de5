//! The repository on Discord (docs/format.md, sections 2, 2.1, 2.2, 8 and 9): its config
//! (`dstore-config.json`), its key files (`dstore-key-<id>.json`), the copies this machine keeps
//! in `<data-dir>/repo/`, and opening it with a passphrase.
//!
//! The config and the key files live in the first configured channel. Only messages by a trusted
//! author count; others that look like them are reported in one warning line and never opened.
//! Nothing is written to disk unless the repository opened; no passphrase or key is ever written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::chunker::{BadChunkerParams, ChunkerParams};
use super::crypto::{Keys, RepoId};
use super::keys::{self, KdfParams, KeyError, KeyFile, MasterKey};
use super::passphrase::{self, Passphrase, PassphraseError, Prompt, Purpose, Source};
use crate::store::{BotStore, PartStore, PutPart, RemotePart};

/// The storage format this dstore writes and reads.
pub const FORMAT: u32 = 2;
/// The config's attachment name.
pub const CONFIG_NAME: &str = "dstore-config.json";

/// The config of a repository, exactly the JSON of docs/format.md section 2.1:
/// `{"format":2,"repo_id":"<32 hex>","encryption":true,"chunker":{"min":..,"avg":..,"max":..}}`,
/// plus `"chunker_seed"` when `encryption` is false.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// The storage format, 2.
    pub format: u32,
    /// Random at `init`; bound into every sealed object.
    #[serde(with = "repo_id_hex")]
    pub repo_id: RepoId,
    /// Whether objects are sealed (section 9 when not).
    pub encryption: bool,
    /// Chunk size bounds in bytes.
    pub chunker: ChunkerParams,
    /// The chunker's seed, only in an unencrypted repository (an encrypted one derives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunker_seed: Option<u64>,
}

/// `repo_id` as 32 lowercase hex characters.
mod repo_id_hex {
    use super::RepoId;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &RepoId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RepoId, D::Error> {
        let text = String::deserialize(d)?;
        let lower = text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        match RepoId::from_hex(&text) {
            Some(id) if lower => Ok(id),
            _ => Err(D::Error::custom(
                "repo_id is not 32 lowercase hexadecimal characters",
            )),
        }
    }
}

/// Why a config cannot be used. None of these carries anything secret (a config holds nothing).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config of a later format.
    #[error("the repository config was written by a newer dstore (format {0}); upgrade dstore")]
    Newer(u32),
    /// Not JSON of the expected shape.
    #[error("the repository config is damaged or not a dstore config ({0})")]
    Malformed(String),
    /// Chunker bounds outside what the chunker accepts.
    #[error(transparent)]
    Bounds(#[from] BadChunkerParams),
}

impl RepoConfig {
    /// A new config with a fresh random `repo_id` and the default chunker; an unencrypted one
    /// gets a random chunker seed (section 9).
    pub fn new(encryption: bool) -> RepoConfig {
        RepoConfig {
            format: FORMAT,
            repo_id: RepoId::random(),
            encryption,
            chunker: ChunkerParams::default(),
            chunker_seed: (!encryption).then(rand::random::<u64>),
        }
    }

    /// The config as posted: compact JSON, fields in the order of section 2.1.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of numbers, a bool and a string always serializes.
        serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("a config always serializes"))
    }

    /// Parses and checks a config: its format (a newer one is refused), its shape, its chunker
    /// bounds, and that an unencrypted one has its chunker seed. Unknown fields are ignored.
    pub fn from_json(bytes: &[u8]) -> Result<RepoConfig, ConfigError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::Malformed(format!("not JSON: {e}")))?;
        // The format first, so a newer config's other changes read as "newer", not "damaged".
        match value.get("format").and_then(|f| f.as_u64()) {
            Some(f) if f > u64::from(FORMAT) => {
                return Err(ConfigError::Newer(u32::try_from(f).unwrap_or(u32::MAX)))
            }
            Some(f) if f == u64::from(FORMAT) => {}
            Some(f) => return Err(ConfigError::Malformed(format!("format {f}, expected 2"))),
            None => return Err(ConfigError::Malformed("no format number".into())),
        }
        let config: RepoConfig =
            serde_json::from_value(value).map_err(|e| ConfigError::Malformed(e.to_string()))?;
        config.chunker.validate()?;
        if !config.encryption && config.chunker_seed.is_none() {
            return Err(ConfigError::Malformed(
                "encryption is off but chunker_seed is missing".into(),
            ));
        }
        Ok(config)
    }

    /// "encrypted" or "unencrypted", for messages.
    fn scheme(&self) -> &'static str {
        if self.encryption {
            "encrypted"
        } else {
            "unencrypted"
        }
    }
}

/// An open repository: its config and its keys (the plain scheme when unencrypted).
#[derive(Clone, Debug)]
pub struct Repository {
    pub config: RepoConfig,
    pub keys: Keys,
    /// The ID of the key file that opened it; `None` when unencrypted.
    pub key_id: Option<String>,
}

impl Repository {
    /// The chunk size bounds of the config.
    pub fn chunker(&self) -> ChunkerParams {
        self.config.chunker
    }

    /// The chunker's seed: derived from the master key, or the config's when unencrypted.
    pub fn chunker_seed(&self) -> u64 {
        self.keys.chunker_seed()
    }
}

/// The key ID in a key file's attachment name `dstore-key-<8 lowercase hex>.json`.
pub fn key_id_of(name: &str) -> Option<&str> {
    let id = name.strip_prefix("dstore-key-")?.strip_suffix(".json")?;
    (id.len() == 8 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(id)
}

/// Whether an attachment name is the config's or a key file's.
pub fn is_repo_object(name: &str) -> bool {
    name == CONFIG_NAME || key_id_of(name).is_some()
}

// ---------------------------------------------------------------------------------------------
// Passphrases

/// An environment lookup that can move to a blocking thread.
type EnvFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where passphrases come from: an environment lookup (the process's, or a given one in tests)
/// and, when allowed and stdin is one, the terminal. Cheap to clone; Debug shows nothing of it.
#[derive(Clone)]
pub struct Secrets {
    env: EnvFn,
    terminal: bool,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("terminal", &self.terminal)
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// The process environment and the terminal.
    pub fn process() -> Secrets {
        Secrets {
            env: Arc::new(|k| std::env::var(k).ok()),
            terminal: true,
        }
    }

    /// The given variables only, never the terminal (as a script would run).
    pub fn given(pairs: &[(&str, &str)]) -> Secrets {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Secrets {
            env: Arc::new(move |k| map.get(k).cloned()),
            terminal: false,
        }
    }

    /// Whether a person can be asked: the terminal is allowed and stdin is one.
    pub fn interactive(&self) -> bool {
        use std::io::IsTerminal;
        self.terminal && std::io::stdin().is_terminal()
    }

    /// The passphrase for `purpose`: DSTORE_PASSPHRASE, _FILE, _COMMAND, then `file` (the
    /// configuration's), then the terminal (twice when creating). `terminal: false` never asks.
    pub async fn passphrase(
        &self,
        purpose: Purpose,
        file: Option<&Path>,
        terminal: bool,
    ) -> Result<(Passphrase, Source), PassphraseError> {
        let env = self.env.clone();
        let file = file.map(Path::to_path_buf);
        let ask = terminal && self.terminal;
        blocking(move || {
            let lookup = |k: &str| env(k);
            let mut prompt: Box<dyn Prompt> = if ask {
                Box::new(passphrase::Terminal)
            } else {
                Box::new(NoPrompt)
            };
            passphrase::obtain_with_file(purpose, &lookup, file.as_deref(), prompt.as_mut())
        })
        .await
        .unwrap_or(Err(PassphraseError::Cancelled))
    }

    /// A new passphrase for `key add` and `key passwd`: DSTORE_NEW_PASSPHRASE, else
    /// DSTORE_NEW_PASSPHRASE_FILE (its first line), else DSTORE_NEW_PASSPHRASE_COMMAND, else
    /// typed twice on the terminal. Never the current passphrase's sources.
    pub async fn new_passphrase(&self) -> Result<Passphrase> {
        let env = self.env.clone();
        let ask = self.terminal;
        let got = blocking(move || {
            // The same sources as the current passphrase, under the DSTORE_NEW_ names.
            let lookup =
                |k: &str| env(&k.replacen("DSTORE_PASSPHRASE", "DSTORE_NEW_PASSPHRASE", 1));
            let mut prompt: Box<dyn Prompt> = if ask {
                Box::new(passphrase::Terminal)
            } else {
                Box::new(NoPrompt)
            };
            passphrase::obtain_with(Purpose::Create, &lookup, prompt.as_mut())
        })
        .await
        .unwrap_or(Err(PassphraseError::Cancelled));
        let renamed = |s: Source| match s {
            Source::Env => "DSTORE_NEW_PASSPHRASE".to_string(),
            Source::File => "DSTORE_NEW_PASSPHRASE_FILE".to_string(),
            Source::Command => "DSTORE_NEW_PASSPHRASE_COMMAND".to_string(),
            other => other.to_string(),
        };
        match got {
            Ok((p, _)) => Ok(p),
            Err(PassphraseError::NoneToCreate | PassphraseError::NoneToOpen) => bail!(
                "no new passphrase: set DSTORE_NEW_PASSPHRASE (or DSTORE_NEW_PASSPHRASE_FILE, \
                 DSTORE_NEW_PASSPHRASE_COMMAND), or run the command on a terminal to type it; \
                 nothing was changed"
            ),
            Err(PassphraseError::Empty(s)) => {
                bail!("the new passphrase from {} is empty; give a non-empty passphrase", renamed(s))
            }
            Err(PassphraseError::NotText(s)) => {
                bail!("the new passphrase from {} is not UTF-8 text", renamed(s))
            }
            Err(PassphraseError::File { path, source, .. }) => bail!(
                "cannot read the new passphrase file {} (from DSTORE_NEW_PASSPHRASE_FILE): {source}",
                path.display()
            ),
            Err(PassphraseError::CommandFailed(status)) => bail!(
                "DSTORE_NEW_PASSPHRASE_COMMAND failed ({status}); run it by hand to see why"
            ),
            Err(PassphraseError::CommandStart(e)) => {
                bail!("cannot run DSTORE_NEW_PASSPHRASE_COMMAND with `sh -c`: {e}")
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A prompt that is never available (a script, or a question a person must not be asked).
struct NoPrompt;

impl Prompt for NoPrompt {
    fn available(&self) -> bool {
        false
    }
    fn ask(&mut self, _: &str) -> std::io::Result<Option<String>> {
        Ok(None)
    }
}

/// Runs blocking work (a prompt, Argon2id) off the async threads; `None` if it panicked.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

// ---------------------------------------------------------------------------------------------
// This machine's copies: <data-dir>/repo/

/// `<data-dir>/repo/`: `config.json` (the config's bytes as on Discord) and `keys/<id>.json`.
#[derive(Clone, Debug)]
pub struct LocalRepo {
    dir: PathBuf,
}

impl LocalRepo {
    pub fn new(data_dir: &Path) -> LocalRepo {
        LocalRepo {
            dir: data_dir.join("repo"),
        }
    }

    /// `<data-dir>/repo/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<data-dir>/repo/config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    fn key_path(&self, id: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{id}.json"))
    }

    /// The config this machine uses, if it has one.
    pub fn config(&self) -> Result<Option<RepoConfig>> {
        let path = self.config_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        RepoConfig::from_json(&bytes).map(Some).with_context(|| {
            format!(
                "cannot use {}; remove {} to read the repository from Discord again",
                path.display(),
                self.dir.display()
            )
        })
    }

    /// Keeps the config's bytes, atomically (0600).
    pub fn write_config(&self, bytes: &[u8]) -> Result<()> {
        let path = self.config_path();
        crate::catalog::write_atomic(&path, bytes)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The key file copies, ordered by ID; an unreadable one is reported and left out.
    pub fn key_files(&self) -> Result<Vec<KeyFile>> {
        let dir = self.dir.join("keys");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot read {}", dir.display()))?
                .path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Temporaries of an interrupted write start with a dot.
            let Some(id) = name
                .strip_suffix(".json")
                .filter(|_| !name.starts_with('.'))
            else {
                continue;
            };
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| KeyFile::from_json(&b).map_err(|e| e.to_string()))
            {
                Ok(k) => files.push((id.to_string(), k)),
                Err(why) => eprintln!(
                    "warning: the key file copy {} cannot be used ({why}); skipped",
                    path.display()
                ),
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(files.into_iter().map(|(_, k)| k).collect())
    }

    /// Keeps a copy of a key file, atomically.
    pub fn write_key(&self, file: &KeyFile) -> Result<()> {
        let path = self.key_path(&file.id());
        crate::catalog::write_atomic(&path, &file.to_json())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Removes the copy of key file `id`, if there is one.
    pub fn remove_key(&self, id: &str) -> Result<()> {
        let path = self.key_path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The first channel

/// Where the repository lives: the store, the first channel, the data dir, and the passphrase
/// file the configuration names (the demo's).
#[derive(Clone)]
pub struct Place {
    pub store: Arc<BotStore>,
    pub channel: u64,
    pub data_dir: PathBuf,
    pub passphrase_file: Option<PathBuf>,
}

/// A key file found in the first channel.
#[derive(Debug)]
pub struct RemoteKey {
    pub part: RemotePart,
    /// The key ID from the attachment name.
    pub id: String,
    /// The key file, or why it cannot be read.
    pub file: Result<KeyFile, String>,
}

/// What the first channel holds: the newest trusted config (its message and bytes) and every
/// trusted key file, newest first.
#[derive(Debug, Default)]
pub struct Scan {
    pub config: Option<(RemotePart, Bytes)>,
    pub keys: Vec<RemoteKey>,
}

impl Scan {
    /// The key files that could be read, newest first.
    pub fn key_files(&self) -> Vec<KeyFile> {
        self.keys
            .iter()
            .filter_map(|k| k.file.as_ref().ok().cloned())
            .collect()
    }

    /// The distinct key IDs, newest first.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for k in &self.keys {
            if !ids.contains(&k.id) {
                ids.push(k.id.clone());
            }
        }
        ids
    }
}

/// Reads the first channel for the config and the key files (every page). Messages by anyone but
/// a trusted author are reported in one warning line and never read.
pub async fn scan(place: &Place) -> Result<Scan> {
    let store = &place.store;
    let channel = place.channel;
    if !store.reads_history() {
        // Webhooks only: nothing on Discord can be read back (docs/lanes.md 5).
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            eprintln!(
                "warning: {}",
                crate::store::StoreError::NeedsBot(
                    "finding a repository already on Discord (and `recover`)"
                )
            );
        }
        return Ok(Scan::default());
    }
    let found = store
        .find_parts(channel, &is_repo_object, OffsetDateTime::UNIX_EPOCH)
        .await
        .map_err(|e| {
            anyhow!("cannot read the repository's config and key files in channel {channel}: {e}")
        })?;
    let trusted = store
        .trusted_authors()
        .await
        .map_err(|e| anyhow!("cannot ask Discord who this bot is: {e}"))?;
    let (mut ours, strangers): (Vec<RemotePart>, Vec<RemotePart>) = found
        .into_iter()
        .partition(|p| trusted.contains(&p.author_id));
    if !strangers.is_empty() {
        let mut ids: Vec<String> = strangers.iter().map(|p| p.message_id.to_string()).collect();
        ids.dedup();
        eprintln!(
            "warning: {} in channel {channel} look{} like repository config or key files but {} not posted by this bot; skipped (message{} {})",
            crate::render::plural(strangers.len() as u64, "attachment"),
            if strangers.len() == 1 { "s" } else { "" },
            if strangers.len() == 1 { "was" } else { "were" },
            if ids.len() == 1 { "" } else { "s" },
            ids.join(", ")
        );
        tracing::warn!(
            channel,
            count = strangers.len(),
            "skipped config or key files posted by another user"
        );
    }
    // Newest first, whatever order the pages came in.
    ours.sort_by_key(|p| std::cmp::Reverse((p.posted_at, p.message_id)));
    let mut scan = Scan::default();
    for part in ours {
        if part.filename == CONFIG_NAME {
            if scan.config.is_none() {
                let bytes = read(store, &part).await?;
                scan.config = Some((part, bytes));
            }
            continue;
        }
        let Some(id) = key_id_of(&part.filename).map(str::to_string) else {
            continue;
        };
        let bytes = read(store, &part).await?;
        let file = KeyFile::from_json(&bytes).map_err(|e| e.to_string());
        scan.keys.push(RemoteKey { part, id, file });
    }
    Ok(scan)
}

async fn read(store: &BotStore, part: &RemotePart) -> Result<Bytes> {
    store.read_part(part).await.map_err(|e| {
        anyhow!(
            "cannot download {} (message {} in channel {}): {e}",
            part.filename,
            part.message_id,
            part.channel_id
        )
    })
}

/// Posts one object as the only attachment of a message with empty content.
pub async fn post(place: &Place, filename: &str, data: Vec<u8>) -> Result<RemotePart> {
    place
        .store
        .put_part(PutPart {
            channel_id: place.channel,
            filename: filename.to_string(),
            // A new nonce per object: a retry after a lost reply returns the same message.
            nonce: format!("repo.{}", crate::catalog::new_file_id()),
            data: Bytes::from(data),
            reload: None,
        })
        .await
        .map_err(|e| anyhow!("cannot post {filename} to channel {}: {e}", place.channel))
}

/// Deletes the messages of key file `id` in the first channel.
pub async fn delete_key_messages(place: &Place, scan: &Scan, id: &str) -> Result<usize> {
    let mut n = 0;
    for k in scan.keys.iter().filter(|k| k.id == id) {
        place
            .store
            .delete_message(k.part.channel_id, k.part.message_id)
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot delete key file {id} (message {} in channel {}): {e}",
                    k.part.message_id,
                    k.part.channel_id
                )
            })?;
        n += 1;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Opening

/// An opened repository with what key commands need besides: the master key (encrypted), the key
/// file that opened it, and the channel as read (when it was read).
pub struct Opened {
    pub repository: Repository,
    pub master: Option<MasterKey>,
    pub key_file: Option<KeyFile>,
    pub scan: Option<Scan>,
}

/// Opens the repository: this machine's config if it has one, else the newest trusted config on
/// Discord; then, when encrypted, the passphrase on the local key file copies, and on Discord's
/// when none of them opens. `rescan` reads the channel even when the local copies suffice (the
/// key commands). `None` when neither this machine nor Discord has a config. Nothing is written
/// unless the repository opened.
pub async fn open(place: &Place, secrets: &Secrets, rescan: bool) -> Result<Option<Opened>> {
    let local = LocalRepo::new(&place.data_dir);
    let known = local.config()?;
    let mut scan_done = if rescan || known.is_none() {
        Some(scan_against(place, &local, known.as_ref()).await?)
    } else {
        None
    };
    // The config, and its bytes when it comes from Discord (to keep).
    let (config, new_bytes) = match (known, scan_done.as_ref().and_then(|s| s.config.as_ref())) {
        (Some(known), _) => (known, None),
        (None, Some((part, bytes))) => (parse_remote(part, bytes)?, Some(bytes.clone())),
        (None, None) => return Ok(None),
    };
    if !config.encryption {
        if let Some(s) = &scan_done {
            refuse_keys_when_unencrypted(place, s)?;
        }
        // from_json checked the seed is there.
        let seed = config.chunker_seed.unwrap_or_default();
        if let Some(bytes) = &new_bytes {
            local.write_config(bytes)?;
        }
        return Ok(Some(Opened {
            repository: Repository {
                keys: Keys::unencrypted(config.repo_id, seed),
                config,
                key_id: None,
            },
            master: None,
            key_file: None,
            scan: scan_done,
        }));
    }

    let local_keys = local.key_files()?;
    if local_keys.is_empty() && scan_done.is_none() {
        scan_done = Some(scan_against(place, &local, Some(&config)).await?);
    }
    let remote_now = scan_done.as_ref().map(Scan::key_files).unwrap_or_default();
    if local_keys.is_empty() && remote_now.is_empty() {
        return Err(KeyError::NoKeyFiles.into());
    }
    let (pass, _) = secrets
        .passphrase(Purpose::Open, place.passphrase_file.as_deref(), true)
        .await?;
    let repo_id = config.repo_id;
    let mut tried = local_keys.clone();
    let mut found = try_keys(local_keys, repo_id, pass.clone()).await?;
    if found.is_none() {
        // None of the copies opens: the channel may hold a key file added since.
        if scan_done.is_none() {
            scan_done = Some(scan_against(place, &local, Some(&config)).await?);
        }
        let fresh: Vec<KeyFile> = scan_done
            .as_ref()
            .map(Scan::key_files)
            .unwrap_or_default()
            .into_iter()
            .filter(|k| !tried.contains(k))
            .collect();
        tried.extend(fresh.iter().cloned());
        found = try_keys(fresh, repo_id, pass).await?;
    }
    let unreadable = scan_done
        .as_ref()
        .map_or(0, |s| s.keys.iter().filter(|k| k.file.is_err()).count());
    let Some((master, key_file)) = found else {
        return Err(KeyError::NoneOpens {
            count: tried.len() + unreadable,
        }
        .into());
    };
    // Opened: keep the config and the key files found, so later commands need no scan.
    if let Some(bytes) = &new_bytes {
        local.write_config(bytes)?;
    }
    let kept = local.key_files()?;
    let remote_files = scan_done.as_ref().map(Scan::key_files).unwrap_or_default();
    for k in remote_files.iter().chain(std::iter::once(&key_file)) {
        if !kept.contains(k) {
            local.write_key(k)?;
        }
    }
    Ok(Some(Opened {
        repository: Repository {
            keys: Keys::derive(&master, repo_id),
            config,
            key_id: Some(key_file.id()),
        },
        master: Some(master),
        key_file: Some(key_file),
        scan: scan_done,
    }))
}

/// [`scan`], then checks that the config found agrees with the one this machine uses (`known`),
/// and that a config saying encryption is off comes with no key file.
async fn scan_against(
    place: &Place,
    local: &LocalRepo,
    known: Option<&RepoConfig>,
) -> Result<Scan> {
    let s = scan(place).await?;
    if let Some((part, bytes)) = &s.config {
        let remote = parse_remote(part, bytes)?;
        if let Some(known) = known {
            agree(local, known, &remote)?;
        }
        if !remote.encryption {
            refuse_keys_when_unencrypted(place, &s)?;
        }
    }
    Ok(s)
}

/// A config saying `encryption: false` while trusted key files exist is refused (section 2.1).
fn refuse_keys_when_unencrypted(place: &Place, s: &Scan) -> Result<()> {
    if s.keys.is_empty() {
        return Ok(());
    }
    bail!(
        "the repository config says encryption is off, but channel {} holds {} posted by this bot; \
         refusing it (encryption cannot be turned off after `init`); check the channel",
        place.channel,
        crate::render::plural(s.keys.len() as u64, "key file")
    )
}

/// Tries the passphrase on `files` in order (off the async threads: Argon2id takes a while);
/// reports the ones skipped as damaged or newer.
async fn try_keys(
    files: Vec<KeyFile>,
    repo_id: RepoId,
    pass: Passphrase,
) -> Result<Option<(MasterKey, KeyFile)>> {
    if files.is_empty() {
        return Ok(None);
    }
    let result = blocking(move || {
        let r = keys::open_any(&files, &repo_id, &pass);
        (r, files)
    })
    .await
    .ok_or_else(|| anyhow!("opening the key files failed unexpectedly"))?;
    let (r, files) = result;
    match r {
        Ok(opened) => {
            for (i, why) in &opened.skipped {
                eprintln!("warning: key file {} skipped: {why}", files[*i].id());
            }
            Ok(Some((opened.master, files[opened.index].clone())))
        }
        Err(KeyError::NoneOpens { .. } | KeyError::NoKeyFiles) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn parse_remote(part: &RemotePart, bytes: &[u8]) -> Result<RepoConfig> {
    RepoConfig::from_json(bytes).with_context(|| {
        format!(
            "cannot use the repository config on Discord (message {} in channel {})",
            part.message_id, part.channel_id
        )
    })
}

/// A config on Discord that differs from the one this machine uses is an error naming both.
fn agree(local: &LocalRepo, known: &RepoConfig, remote: &RepoConfig) -> Result<()> {
    if known.repo_id == remote.repo_id && known.encryption == remote.encryption {
        return Ok(());
    }
    bail!(
        "the repository config on Discord (repo ID {}, {}) differs from the one this machine uses \
         (repo ID {}, {}, in {}); refusing to follow it. If the repository was really re-created, \
         remove {} and run the command again",
        remote.repo_id,
        remote.scheme(),
        known.repo_id,
        known.scheme(),
        local.config_path().display(),
        local.dir().display()
    )
}

// ---------------------------------------------------------------------------------------------
// Init

/// What `init` made.
pub struct Initialised {
    pub repository: Repository,
    /// Key files that were in the channel without a config (an interrupted `init`), removed.
    pub orphans_removed: usize,
}

/// Whether a passphrase to create a key with can be had without asking anyone.
pub async fn script_passphrase(place: &Place, secrets: &Secrets) -> bool {
    secrets
        .passphrase(Purpose::Create, place.passphrase_file.as_deref(), false)
        .await
        .is_ok()
}

/// Creates the repository: refuses when one exists (on Discord, or in this data dir); draws the
/// repo ID and (encrypted) the master key; posts the key file, then the config; keeps copies.
pub async fn init(place: &Place, secrets: &Secrets, encryption: bool) -> Result<Initialised> {
    let local = LocalRepo::new(&place.data_dir);
    let scan = scan(place).await?;
    if let Some((part, bytes)) = &scan.config {
        let which = RepoConfig::from_json(bytes)
            .map(|c| format!("repository {}", c.repo_id))
            .unwrap_or_else(|_| "repository config".into());
        bail!(
            "channel {} already holds a repository ({which}, message {}); nothing was changed. \
             `dstore key list` shows its key files, `dstore key add` adds a passphrase",
            place.channel,
            part.message_id
        );
    }
    if let Some(known) = local.config()? {
        bail!(
            "this data dir uses repository {} ({}) but channel {} holds no repository config; \
             if that repository is gone, remove {} and run `dstore init` again",
            known.repo_id,
            local.config_path().display(),
            place.channel,
            local.dir().display()
        );
    }
    let config = RepoConfig::new(encryption);
    let repo_id = config.repo_id;
    let config_json = config.to_json();
    let repository = if encryption {
        let (pass, _) = secrets
            .passphrase(Purpose::Create, place.passphrase_file.as_deref(), true)
            .await?;
        let master = MasterKey::random();
        let existing = scan.key_files();
        let m = master.clone();
        let key_file = blocking(move || {
            KeyFile::create_among(&m, &repo_id, &pass, KdfParams::default(), &existing)
        })
        .await
        .ok_or_else(|| anyhow!("making the key file failed unexpectedly"))??;
        // The key file goes first. A kill before the config is posted leaves a key file no reader
        // ever looks at (readers start from the config) and `init` can simply run again (it
        // removes such orphans, below). The other order would leave a config without a key file:
        // `init` would refuse to run again and nobody could open the repository, ever.
        post(place, &key_file.file_name(), key_file.to_json()).await?;
        post(place, CONFIG_NAME, config_json.clone()).await?;
        local.write_config(&config_json)?;
        local.write_key(&key_file)?;
        Repository {
            keys: Keys::derive(&master, repo_id),
            key_id: Some(key_file.id()),
            config,
        }
    } else {
        post(place, CONFIG_NAME, config_json.clone()).await?;
        local.write_config(&config_json)?;
        Repository {
            keys: Keys::unencrypted(repo_id, config.chunker_seed.unwrap_or_default()),
            key_id: None,
            config,
        }
    };
    // Key files that were there before any config can open nothing: their repo ID was never
    // posted. They are this bot's own (the scan kept only those), so they go.
    let orphans = scan.ids();
    for id in &orphans {
        if let Err(e) = delete_key_messages(place, &scan, id).await {
            eprintln!("warning: {e:#}; it opens nothing and can be deleted by hand");
        }
    }
    Ok(Initialised {
        repository,
        orphans_removed: orphans.len(),
    })
}

#[cfg(test)]
#[path = "repository_tests.rs"]
mod tests;
