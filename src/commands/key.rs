//! `key list`, `key add`, `key remove <id>` and `key passwd` (docs/format.md section 2.2). Each
//! reads the first channel again and asks the current passphrase; none re-encrypts any data, only
//! key files change.

use anyhow::{anyhow, bail, Result};
use time::OffsetDateTime;

use super::Session;
use crate::cli::KeyAction;
use crate::repo::keys::{KdfParams, KeyFile, MasterKey};
use crate::repo::repository::{self, LocalRepo, Opened, Place, Scan};

/// One key file as `key list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key ID (the first 8 hex of its salt).
    pub id: String,
    /// Its Argon2id costs; `None` when it cannot be read.
    pub params: Option<KdfParams>,
    /// When it was posted; `None` for a copy only this machine has.
    pub posted_at: Option<OffsetDateTime>,
    /// Whether the current passphrase opened it.
    pub current: bool,
    /// Why it cannot be used, if it cannot.
    pub problem: Option<String>,
}

/// Runs a `key` subcommand.
pub async fn key(s: &Session, action: KeyAction) -> Result<()> {
    match action {
        KeyAction::List => list(s).await.map(drop),
        KeyAction::Add => add(s).await.map(drop),
        KeyAction::Remove { id } => remove(s, &id).await,
        KeyAction::Passwd => passwd(s).await.map(drop),
    }
}

/// An encrypted repository opened afresh (the channel read again), with its master key.
struct Open {
    place: Place,
    scan: Scan,
    master: MasterKey,
    key_file: KeyFile,
    opened_id: String,
    repo_id: crate::repo::crypto::RepoId,
}

/// The repository as the key commands see it.
enum Keyed {
    Encrypted(Box<Open>),
    /// An unencrypted repository, by its ID.
    Unencrypted(crate::repo::crypto::RepoId),
}

/// Opens an encrypted repository reading the channel again; an unencrypted one is an error.
async fn encrypted(s: &Session) -> Result<Open> {
    match open(s).await? {
        Keyed::Encrypted(o) => Ok(*o),
        Keyed::Unencrypted(repo_id) => bail!(
            "repository {repo_id} is unencrypted: it has no keys to add, remove or change \
             (encryption is chosen at `dstore init`)"
        ),
    }
}

/// Opens the repository reading the channel again; an error when there is none.
async fn open(s: &Session) -> Result<Keyed> {
    let place = s.repository_place()?;
    let Some(opened) = repository::open(&place, &s.secrets, true).await? else {
        bail!(
            "there is no repository yet (no config in channel {}): `dstore init` creates one",
            place.channel
        );
    };
    let Opened {
        repository,
        master,
        key_file,
        scan,
    } = opened;
    let repo_id = repository.config.repo_id;
    s.cache_repository(repository).await;
    let (Some(master), Some(key_file)) = (master, key_file) else {
        return Ok(Keyed::Unencrypted(repo_id));
    };
    Ok(Keyed::Encrypted(Box::new(Open {
        opened_id: key_file.id(),
        place,
        scan: scan.unwrap_or_default(),
        master,
        key_file,
        repo_id,
    })))
}

/// `key list`: each key file in the first channel, newest first, the one the passphrase opened
/// marked; also prints them.
pub async fn list(s: &Session) -> Result<Vec<KeyInfo>> {
    let o = match open(s).await? {
        Keyed::Encrypted(o) => o,
        Keyed::Unencrypted(repo_id) => {
            println!("Repository {repo_id} is unencrypted: it has no key files and no passphrase.");
            return Ok(Vec::new());
        }
    };
    let mut infos: Vec<KeyInfo> = o
        .scan
        .keys
        .iter()
        .map(|k| KeyInfo {
            id: k.id.clone(),
            params: k.file.as_ref().ok().map(KeyFile::params),
            posted_at: Some(k.part.posted_at),
            current: k.file.as_ref().is_ok_and(|f| *f == o.key_file),
            problem: k.file.as_ref().err().cloned(),
        })
        .collect();
    let on_discord = infos.iter().any(|k| k.current);
    if !on_discord {
        infos.push(KeyInfo {
            id: o.opened_id.clone(),
            params: Some(o.key_file.params()),
            posted_at: None,
            current: true,
            problem: None,
        });
    }
    println!(
        "Key files of repository {} in channel {}, newest first:",
        o.repo_id, o.place.channel
    );
    for k in &infos {
        let mark = if k.current { "*" } else { " " };
        let costs = match (&k.params, &k.problem) {
            (Some(p), _) => describe_params(p),
            (None, Some(why)) => format!("cannot be read: {why}"),
            (None, None) => String::new(),
        };
        let posted = match k.posted_at {
            Some(t) => format!("posted {}", rfc3339(t)),
            None => "only on this machine, not on Discord".into(),
        };
        let this = if k.current { "  (this passphrase)" } else { "" };
        println!("{mark} {}  {costs}  {posted}{this}", k.id);
    }
    if !on_discord {
        println!(
            "The key file your passphrase opened ({}) is no longer on Discord; `dstore key add` posts a new one.",
            o.opened_id
        );
    }
    Ok(infos)
}

/// "Argon2id 64 MiB, 3 passes, 1 lane".
fn describe_params(p: &KdfParams) -> String {
    let memory = if p.m_cost_kib.is_multiple_of(1024) {
        format!("{} MiB", p.m_cost_kib / 1024)
    } else {
        format!("{} KiB", p.m_cost_kib)
    };
    let passes = if p.t_cost == 1 { "pass" } else { "passes" };
    format!(
        "Argon2id {memory}, {} {passes}, {}",
        p.t_cost,
        crate::render::plural(u64::from(p.p_cost), "lane")
    )
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Makes and posts a key file for a new passphrase wrapping the same master key; keeps a copy.
async fn post_new_key(s: &Session, o: &Open) -> Result<KeyFile> {
    let pass = s.secrets.new_passphrase().await?;
    let mut existing = o.scan.key_files();
    existing.extend(LocalRepo::new(&o.place.data_dir).key_files()?);
    let master = o.master.clone();
    let repo_id = o.repo_id;
    let file = tokio::task::spawn_blocking(move || {
        KeyFile::create_among(&master, &repo_id, &pass, KdfParams::default(), &existing)
    })
    .await
    .map_err(|_| anyhow!("making the key file failed unexpectedly"))??;
    repository::post(&o.place, &file.file_name(), file.to_json())
        .await
        .map_err(|e| anyhow!("{e:#}; nothing was changed"))?;
    LocalRepo::new(&o.place.data_dir).write_key(&file)?;
    Ok(file)
}

/// `key add`: a new key file for a new passphrase; returns its ID.
pub async fn add(s: &Session) -> Result<String> {
    let o = encrypted(s).await?;
    let file = post_new_key(s, &o).await?;
    println!(
        "Added key file {}: the new passphrase opens repository {} too; `dstore key list` shows every key file.",
        file.id(),
        o.repo_id
    );
    Ok(file.id())
}

/// `key remove <id>`: deletes that key file's message (and this machine's copy).
pub async fn remove(s: &Session, id: &str) -> Result<()> {
    let o = encrypted(s).await?;
    let ids = o.scan.ids();
    if !ids.iter().any(|k| k == id) {
        bail!(
            "there is no key file {id:?} in this repository; its key files are {}",
            if ids.is_empty() {
                "none on Discord".to_string()
            } else {
                ids.join(", ")
            }
        );
    }
    if id == o.opened_id {
        bail!(
            "key file {id} is the one your passphrase opened; use `dstore key passwd` to change \
             the passphrase (removing it would leave you without it)"
        );
    }
    if ids.len() == 1 {
        bail!(
            "key file {id} is the repository's only key file; removing it would leave nobody able \
             to open the repository"
        );
    }
    repository::delete_key_messages(&o.place, &o.scan, id).await?;
    LocalRepo::new(&o.place.data_dir).remove_key(id)?;
    println!(
        "Removed key file {id}; {} remain{}.",
        crate::render::plural((ids.len() - 1) as u64, "key file"),
        if ids.len() - 1 == 1 { "s" } else { "" }
    );
    Ok(())
}

/// `key passwd`: a key file for the new passphrase, then the old one's removed. A kill in between
/// leaves both valid. Returns the new key ID.
pub async fn passwd(s: &Session) -> Result<String> {
    let o = encrypted(s).await?;
    let file = post_new_key(s, &o).await?;
    let old = &o.opened_id;
    // Only now, with the new key file on Discord, does the old one go.
    repository::delete_key_messages(&o.place, &o.scan, old)
        .await
        .map_err(|e| {
            anyhow!(
                "{e:#}; the new key file {} is posted, so both passphrases open the repository; \
                 `dstore key remove {old}` removes the old one",
                file.id()
            )
        })?;
    LocalRepo::new(&o.place.data_dir).remove_key(old)?;
    let mut repo = (*s
        .repository()
        .await?
        .ok_or_else(|| anyhow!("the repository vanished while changing the passphrase"))?)
    .clone();
    repo.key_id = Some(file.id());
    s.cache_repository(repo).await;
    println!(
        "Changed the passphrase: key file {} replaces {old}.",
        file.id()
    );
    Ok(file.id())
}
