//! The chunk index (docs/format.md 8.2): where one copy of each chunk lives, built from the local
//! manifests. It is a cache: everything in it comes from `file.json` and `parts/<n>.json`, so it
//! is rebuilt on every use and never written.

use std::collections::HashMap;

use super::crypto::{ChunkId, PACK_ID_LEN};
use super::pack::PackEntry;
use crate::catalog::{Catalog, CatalogError, ChunkRef, PackRef, Status, FORMAT_V2};

#[derive(Debug, Default, Clone)]
pub struct ChunkIndex {
    packs: Vec<PackRef>,
    by_pack: HashMap<[u8; PACK_ID_LEN], usize>,
    chunks: HashMap<ChunkId, (usize, PackEntry)>,
}

impl ChunkIndex {
    /// Every chunk the format-2 files of `catalog` hold: complete files' chunk lists and every
    /// pack any upload recorded (complete or not). Damaged manifests are skipped with a warning.
    pub fn build(catalog: &Catalog) -> Result<Self, CatalogError> {
        let mut index = ChunkIndex::default();
        for file in catalog.all()? {
            let file = match file {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            };
            if file.format != FORMAT_V2 {
                continue;
            }
            if file.status == Status::Complete {
                index.add_file(&file.packs, &file.chunks);
            }
            for rec in catalog.load_packs(&file.id)? {
                index.add_pack(rec.pack_ref(), rec.chunks.iter().map(|c| c.entry));
            }
        }
        Ok(index)
    }

    fn slot(&mut self, pack: PackRef) -> usize {
        if let Some(&at) = self.by_pack.get(&pack.pack_id) {
            return at;
        }
        self.by_pack.insert(pack.pack_id, self.packs.len());
        self.packs.push(pack);
        self.packs.len() - 1
    }

    /// Adds the chunks of one pack.
    pub fn add_pack(&mut self, pack: PackRef, entries: impl IntoIterator<Item = PackEntry>) {
        let at = self.slot(pack);
        for e in entries {
            self.chunks.entry(e.id).or_insert((at, e));
        }
    }

    /// Adds a file's chunk list (indices into its `packs`).
    pub fn add_file(&mut self, packs: &[PackRef], chunks: &[ChunkRef]) {
        for c in chunks {
            if let Some(p) = packs.get(c.pack as usize) {
                let at = self.slot(p.clone());
                self.chunks.entry(c.id).or_insert((at, c.entry()));
            }
        }
    }

    /// Forgets a pack (gone from Discord) and every chunk located in it.
    pub fn remove_pack(&mut self, pack_id: &[u8; PACK_ID_LEN]) {
        if let Some(at) = self.by_pack.get(pack_id).copied() {
            self.chunks.retain(|_, (p, _)| *p != at);
        }
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The known chunk IDs.
    pub fn ids(&self) -> impl Iterator<Item = &ChunkId> {
        self.chunks.keys()
    }

    /// Where chunk `id` lives.
    pub fn get(&self, id: &ChunkId) -> Option<(&PackRef, &PackEntry)> {
        self.chunks.get(id).map(|(p, e)| (&self.packs[*p], e))
    }

    /// An entry's `packs` and `chunks` for a file made of `ids` in order; `None` names the first
    /// chunk the index does not know.
    pub fn resolve(&self, ids: &[ChunkId]) -> Result<(Vec<PackRef>, Vec<ChunkRef>), ChunkId> {
        let mut packs = Vec::new();
        let mut slots: HashMap<usize, u32> = HashMap::new();
        let mut chunks = Vec::with_capacity(ids.len());
        for id in ids {
            let (p, e) = self.chunks.get(id).ok_or(*id)?;
            let pack = *slots.entry(*p).or_insert_with(|| {
                packs.push(self.packs[*p].clone());
                packs.len() as u32 - 1
            });
            chunks.push(ChunkRef {
                id: e.id,
                pack,
                offset: e.offset,
                sealed_len: e.sealed_len,
                plain_len: e.plain_len,
                flags: e.flags,
            });
        }
        Ok((packs, chunks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(n: u8) -> PackRef {
        PackRef {
            channel_id: 1,
            message_id: u64::from(n),
            attachment_id: u64::from(n),
            pack_id: [n; 16],
            size: 1000,
        }
    }

    fn entry(id: u8, offset: u64) -> PackEntry {
        PackEntry {
            id: [id; 32],
            offset,
            sealed_len: 10,
            plain_len: 5,
            flags: 0,
        }
    }

    #[test]
    fn resolves_a_chunk_list_into_an_entrys_tables() {
        let mut ix = ChunkIndex::default();
        ix.add_pack(pack(1), [entry(1, 0), entry(2, 10)]);
        ix.add_pack(pack(2), [entry(3, 0), entry(1, 10)]);
        let (packs, chunks) = ix.resolve(&[[3; 32], [1; 32], [3; 32], [2; 32]]).unwrap();
        assert_eq!(packs, vec![pack(2), pack(1)]);
        let got: Vec<(u32, u64)> = chunks.iter().map(|c| (c.pack, c.offset)).collect();
        // Chunk 1 stays where it was first seen (pack 1, offset 0).
        assert_eq!(got, vec![(0, 0), (1, 0), (0, 0), (1, 10)]);
        assert_eq!(ix.resolve(&[[9; 32]]), Err([9; 32]));
        ix.remove_pack(&[1; 16]);
        assert!(!ix.contains(&[1; 32]) && ix.contains(&[3; 32]));
    }
}
