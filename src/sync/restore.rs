//! Restore of a snapshot's tree (docs/sync.md 4): folders, files, links, modes and mtimes, every
//! file's chunks opened and checked and its whole SHA-256 compared before it takes its name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::catalog::{ChunkRef, FileManifest, PackRef, Status, FORMAT_V2};
use crate::progress::Progress;
use crate::repo::crypto::Keys;
use crate::repo::download::{Rebuild, Sink};
use crate::repo::snapshot::{Kind, Node, Snapshot};
use crate::store::PartStore;
use crate::transfer::download::{partial_path, Partial};

/// What a restore wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct Restored {
    pub files: usize,
    pub dirs: usize,
    pub links: usize,
    pub bytes: u64,
}

/// The nodes of `snap` at or under `sub` ("" for all), each with its path relative to `sub`'s
/// own parent when `sub` names a file, or to `sub` when it names a folder.
pub fn select<'a>(snap: &'a Snapshot, sub: &str) -> Result<Vec<(&'a Node, String)>> {
    if sub.is_empty() {
        return Ok(snap.files.iter().map(|n| (n, n.path.clone())).collect());
    }
    let Some(top) = snap.node(sub) else {
        bail!(
            "{sub:?} is not in snapshot {} of {} ({} files)",
            snap.seq,
            snap.name,
            snap.files.iter().filter(|n| n.kind == Kind::File).count()
        );
    };
    if top.kind != Kind::Dir {
        let name = sub.rsplit('/').next().unwrap_or(sub).to_string();
        return Ok(vec![(top, name)]);
    }
    let prefix = format!("{sub}/");
    Ok(snap
        .files
        .iter()
        .filter_map(|n| {
            n.path
                .strip_prefix(&prefix)
                .map(|rest| (n, rest.to_string()))
        })
        .collect())
}

/// A file's own manifest for the download machinery: its chunks with a packs table of its own.
pub fn manifest_of(snap: &Snapshot, node: &Node, channels: &[u64]) -> FileManifest {
    let mut packs: Vec<PackRef> = Vec::new();
    let mut map = std::collections::HashMap::new();
    let chunks: Vec<ChunkRef> = node
        .chunks
        .iter()
        .map(|c| {
            let at = *map.entry(c.pack).or_insert_with(|| {
                packs.push(snap.packs[c.pack as usize].clone());
                packs.len() as u32 - 1
            });
            ChunkRef { pack: at, ..*c }
        })
        .collect();
    FileManifest {
        format: FORMAT_V2,
        id: snap.folder.clone(),
        name: node
            .path
            .rsplit('/')
            .next()
            .unwrap_or(&node.path)
            .to_string(),
        source_path: PathBuf::new(),
        size: node.size.unwrap_or(0),
        mtime: node.mtime,
        sha256: node.sha256.clone(),
        part_size: 0,
        layout: Vec::new(),
        channels: channels.to_vec(),
        status: Status::Complete,
        created_at: snap.time,
        updated_at: snap.time,
        hidden: false,
        remote_manifest: None,
        mode: node.mode,
        source_stamp: None,
        entry_version: None,
        packs,
        chunks,
    }
}

/// What a restore runs with.
pub struct Restore<'a, S> {
    pub store: Arc<S>,
    pub keys: &'a Keys,
    pub channels: &'a [u64],
    pub concurrency: usize,
    pub cancel: &'a CancellationToken,
    pub force: bool,
}

/// Files up to this size are written from whole packs fetched once and kept for the next
/// files (a round packs small files together, in path order, as restore goes); larger ones
/// fetch their chunks' ranges.
const SMALL_FILE: u64 = 1 << 20;

/// Packs kept in memory for small files: a few, each at most one attachment.
const CACHED_PACKS: usize = 3;

/// Whole packs fetched for small files, checked against their pack ID, most recent last.
#[derive(Default)]
struct PackCache {
    packs: Vec<(u64, bytes::Bytes)>,
}

fn system_time(t: OffsetDateTime) -> std::time::SystemTime {
    let ns = t.unix_timestamp_nanos();
    if ns >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns as u64)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_nanos(ns.unsigned_abs() as u64)
    }
}

impl<S: PartStore> Restore<'_, S> {
    /// Writes `nodes` (paths relative to `dest`) under `dest`: folders first, then files (each
    /// verified before it takes its name), then links, then the folders' modes and mtimes,
    /// deepest first.
    pub async fn run(
        &self,
        snap: &Snapshot,
        nodes: &[(&Node, String)],
        dest: &Path,
    ) -> Result<Restored> {
        let mut done = Restored::default();
        let mut cache = PackCache::default();
        std::fs::create_dir_all(dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        for (n, rel) in nodes.iter().filter(|(n, _)| n.kind == Kind::Dir) {
            let at = dest.join(rel);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => bail!(
                    "{} is in the way of folder {}; move it aside",
                    at.display(),
                    n.path
                ),
                Err(_) => std::fs::create_dir_all(&at)
                    .with_context(|| format!("cannot create {}", at.display()))?,
            }
            done.dirs += 1;
        }
        for (n, rel) in nodes.iter().filter(|(n, _)| n.kind == Kind::File) {
            let target = dest.join(rel);
            if !self.force && std::fs::symlink_metadata(&target).is_ok() {
                bail!(
                    "{} exists; restore elsewhere, or give --force to replace it",
                    target.display()
                );
            }
            if self.cancel.is_cancelled() {
                bail!("restore cancelled; what was written is verified, run it again with --force to finish");
            }
            if n.size.unwrap_or(0) <= SMALL_FILE {
                self.small_file(snap, n, &target, &mut cache).await?;
            } else {
                self.file(snap, n, &target).await?;
            }
            done.files += 1;
            done.bytes += n.size.unwrap_or(0);
        }
        for (n, rel) in nodes.iter().filter(|(n, _)| n.kind == Kind::Symlink) {
            let at = dest.join(rel);
            if std::fs::symlink_metadata(&at).is_ok() {
                if !self.force {
                    bail!(
                        "{} exists; restore elsewhere, or give --force to replace it",
                        at.display()
                    );
                }
                std::fs::remove_file(&at)
                    .with_context(|| format!("cannot replace {}", at.display()))?;
            }
            let target = n.target.as_deref().unwrap_or_default();
            std::os::unix::fs::symlink(target, &at)
                .with_context(|| format!("cannot create the link {}", at.display()))?;
            done.links += 1;
        }
        let mut dirs: Vec<&(&Node, String)> =
            nodes.iter().filter(|(n, _)| n.kind == Kind::Dir).collect();
        dirs.sort_by_key(|(_, rel)| std::cmp::Reverse(rel.matches('/').count()));
        for (n, rel) in dirs {
            let at = dest.join(rel);
            if let Some(mode) = n.mode {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode))
                    .with_context(|| format!("cannot set the mode of {}", at.display()))?;
            }
            if let Ok(f) = std::fs::File::open(&at) {
                let _ = f.set_modified(system_time(n.mtime));
            }
        }
        Ok(done)
    }

    /// A whole pack, from the cache or fetched (and its pack ID checked).
    async fn pack(&self, p: &PackRef, cache: &mut PackCache) -> Result<bytes::Bytes> {
        if let Some((_, b)) = cache.packs.iter().find(|(id, _)| *id == p.attachment_id) {
            return Ok(b.clone());
        }
        if !self.channels.contains(&p.channel_id) {
            bail!(
                "a pack is in channel {}, which is not configured",
                p.channel_id
            );
        }
        let remote = self
            .store
            .locate_part(p.channel_id, p.message_id, p.attachment_id)
            .await
            .with_context(|| format!("the pack in message {} cannot be found", p.message_id))?;
        let bytes =
            self.store.read_part(&remote).await.with_context(|| {
                format!("the pack in message {} cannot be fetched", p.message_id)
            })?;
        if bytes.len() as u64 != p.size || self.keys.pack_id(&bytes) != p.pack_id {
            bail!(
                "the pack in message {} is not the one the snapshot names (another size or pack ID): it was altered or replaced on Discord, and the chunks it holds cannot be restored from it",
                p.message_id
            );
        }
        if cache.packs.len() >= CACHED_PACKS {
            cache.packs.remove(0);
        }
        cache.packs.push((p.attachment_id, bytes.clone()));
        Ok(bytes)
    }

    /// Restores a small file from whole packs: every chunk opened and checked, then the whole
    /// SHA-256, in the partial file, before it takes the name.
    async fn small_file(
        &self,
        snap: &Snapshot,
        node: &Node,
        target: &Path,
        cache: &mut PackCache,
    ) -> Result<()> {
        use std::io::Write;
        let size = node.size.unwrap_or(0);
        let partial = Partial::open(&partial_path(target, &snap.folder), size)?;
        let mut sha = crate::hash::Sha256::default();
        let mut out = std::io::BufWriter::new(&*partial.file);
        use std::io::Seek;
        out.seek(std::io::SeekFrom::Start(0))
            .with_context(|| format!("cannot write {}", partial.path.display()))?;
        for c in &node.chunks {
            let Some(p) = snap.packs.get(c.pack as usize) else {
                bail!("{} names a pack the snapshot does not list", node.path);
            };
            let pack = self.pack(p, cache).await?;
            let range = c.offset as usize..(c.offset + u64::from(c.sealed_len)) as usize;
            let Some(blob) = pack.get(range) else {
                bail!("a chunk of {} lies outside its pack", node.path);
            };
            let plain = crate::repo::pack::open_blob(self.keys, &c.entry(), blob)
                .map_err(|e| anyhow!("a chunk of {} failed its check: {e}", node.path))?;
            sha.update(&plain);
            out.write_all(&plain)
                .with_context(|| format!("cannot write {}", partial.path.display()))?;
        }
        out.flush()
            .with_context(|| format!("cannot write {}", partial.path.display()))?;
        drop(out);
        if Some(sha.finish_hex()) != node.sha256 {
            bail!(
                "{} does not match its SHA-256 once rebuilt; nothing was written in its place",
                node.path
            );
        }
        partial
            .place(
                target,
                system_time(node.mtime),
                node.mode.unwrap_or(0o644),
                self.force,
            )
            .map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }

    /// Restores one file to `target`, verified before it takes the name.
    pub async fn file(&self, snap: &Snapshot, node: &Node, target: &Path) -> Result<()> {
        let manifest = manifest_of(snap, node, self.channels);
        let partial = Partial::open(&partial_path(target, &snap.folder), manifest.size)?;
        let sink = Sink {
            file: partial.file.clone(),
            path: partial.path.clone(),
            resumed: partial.resumed,
        };
        let progress = Progress::new(crate::progress::ProgressMode::Hidden, "restore", 0);
        let rebuild = Rebuild {
            store: self.store.clone(),
            keys: self.keys,
            file: &manifest,
            channels: self.channels,
            concurrency: self.concurrency,
            progress: &progress,
            cancel: self.cancel,
        };
        rebuild
            .run(Some(sink))
            .await
            .map_err(|e| anyhow!("{} could not be restored: {e}", node.path))?;
        partial
            .place(
                target,
                system_time(node.mtime),
                node.mode.unwrap_or(0o644),
                self.force,
            )
            .map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }
}
