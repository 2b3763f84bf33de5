//! The format-2 records shared by the local manifests and the sealed catalogue entries
//! (docs/format.md sections 7.1 and 8): where a pack is, where a chunk is in a pack, and the
//! record of one pack an upload posted.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use super::snowflake;
use crate::repo::crypto::{ChunkId, PACK_ID_LEN};
use crate::repo::pack::PackEntry;

/// The local manifest format of format-2 files and pack records.
pub const FORMAT_V2: u32 = 2;

/// A pack's attachment: `packs[i]` of an entry or a `file.json`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PackRef {
    #[serde(with = "snowflake")]
    pub channel_id: u64,
    #[serde(with = "snowflake")]
    pub message_id: u64,
    #[serde(with = "snowflake")]
    pub attachment_id: u64,
    #[serde(with = "pack_id_hex")]
    pub pack_id: [u8; PACK_ID_LEN],
    pub size: u64,
}

/// One chunk of a file, in file order: `[chunk_id, pack, offset, sealed_len, plain_len, flags]`,
/// `pack` indexing the `packs` beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub pack: u32,
    pub offset: u64,
    pub sealed_len: u32,
    pub plain_len: u32,
    pub flags: u8,
}

impl ChunkRef {
    /// The chunk's entry as its pack's header holds it.
    pub fn entry(&self) -> PackEntry {
        PackEntry {
            id: self.id,
            offset: self.offset,
            sealed_len: self.sealed_len,
            plain_len: self.plain_len,
            flags: self.flags,
        }
    }
}

impl Serialize for ChunkRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            hex::encode(self.id),
            self.pack,
            self.offset,
            self.sealed_len,
            self.plain_len,
            self.flags,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ChunkRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (id, pack, offset, sealed_len, plain_len, flags) =
            <(String, u32, u64, u32, u32, u8)>::deserialize(d)?;
        Ok(ChunkRef {
            id: chunk_id_from_hex(&id).map_err(serde::de::Error::custom)?,
            pack,
            offset,
            sealed_len,
            plain_len,
            flags,
        })
    }
}

/// One chunk of a pack record: `[chunk_id, offset, sealed_len, plain_len, flags, file_offset]`,
/// the file offset `null` for a pack adopted by `resume` (its chunks' places are in the entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackChunk {
    pub entry: PackEntry,
    pub file_offset: Option<u64>,
}

impl Serialize for PackChunk {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = &self.entry;
        (
            hex::encode(e.id),
            e.offset,
            e.sealed_len,
            e.plain_len,
            e.flags,
            self.file_offset,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PackChunk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (id, offset, sealed_len, plain_len, flags, file_offset) =
            <(String, u64, u32, u32, u8, Option<u64>)>::deserialize(d)?;
        Ok(PackChunk {
            entry: PackEntry {
                id: chunk_id_from_hex(&id).map_err(serde::de::Error::custom)?,
                offset,
                sealed_len,
                plain_len,
                flags,
            },
            file_offset,
        })
    }
}

/// `files/<id>/parts/<n>.json` of a format-2 file: pack `n` of its upload, as Discord confirmed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRecord {
    pub format: u32,
    pub index: u64,
    #[serde(with = "pack_id_hex")]
    pub pack_id: [u8; PACK_ID_LEN],
    pub size: u64,
    #[serde(with = "snowflake")]
    pub channel_id: u64,
    #[serde(with = "snowflake")]
    pub message_id: u64,
    #[serde(with = "snowflake")]
    pub attachment_id: u64,
    pub attachment_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub uploaded_at: OffsetDateTime,
    pub chunks: Vec<PackChunk>,
    /// The webhook that posted the pack (its ID only, never its token); absent for the bot's.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_snowflake"
    )]
    pub webhook_id: Option<u64>,
}

/// An optional snowflake as a decimal string, like the others.
mod optional_snowflake {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl PackRecord {
    /// The record of pack `index` found on Discord (adopted after a kill): its bytes' ID and
    /// length, where it is, and its header's chunks, whose places in the file are unknown. A
    /// pack by anyone trusted but the bot (`trusted[0]`) is a webhook's.
    pub fn adopted(
        index: u64,
        pack_id: [u8; PACK_ID_LEN],
        size: u64,
        remote: &crate::store::RemotePart,
        trusted: &[u64],
        entries: &[PackEntry],
    ) -> PackRecord {
        PackRecord {
            format: super::FORMAT_V2,
            index,
            pack_id,
            size,
            channel_id: remote.channel_id,
            message_id: remote.message_id,
            attachment_id: remote.attachment_id,
            attachment_name: remote.filename.clone(),
            uploaded_at: remote.posted_at,
            webhook_id: (Some(&remote.author_id) != trusted.first()).then_some(remote.author_id),
            chunks: entries
                .iter()
                .map(|&entry| PackChunk {
                    entry,
                    file_offset: None,
                })
                .collect(),
        }
    }

    /// Where the pack is.
    pub fn pack_ref(&self) -> PackRef {
        PackRef {
            channel_id: self.channel_id,
            message_id: self.message_id,
            attachment_id: self.attachment_id,
            pack_id: self.pack_id,
            size: self.size,
        }
    }
}

/// A chunk ID from 64 lowercase hex characters.
pub fn chunk_id_from_hex(s: &str) -> Result<ChunkId, String> {
    let mut id = [0u8; 32];
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "{s:?} is not a chunk ID (64 lowercase hex characters)"
        ));
    }
    hex::decode_to_slice(s, &mut id)
        .map_err(|_| format!("{s:?} is not a chunk ID (64 lowercase hex characters)"))?;
    Ok(id)
}

pub(crate) mod pack_id_hex {
    use super::PACK_ID_LEN;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; PACK_ID_LEN], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; PACK_ID_LEN], D::Error> {
        let text = String::deserialize(d)?;
        let mut id = [0u8; PACK_ID_LEN];
        if text.len() != 2 * PACK_ID_LEN || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is not a pack ID (32 lowercase hex characters)"
            )));
        }
        hex::decode_to_slice(&text, &mut id).map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not a pack ID (32 lowercase hex characters)"
            ))
        })?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_refs_are_six_element_arrays_with_hex_ids() {
        let c = ChunkRef {
            id: [0xab; 32],
            pack: 1,
            offset: 400_040,
            sealed_len: 700_040,
            plain_len: 700_000,
            flags: 0,
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            format!("[\"{}\",1,400040,700040,700000,0]", "ab".repeat(32))
        );
        assert_eq!(serde_json::from_str::<ChunkRef>(&json).unwrap(), c);
        let upper = json.replace("ab", "AB");
        assert!(serde_json::from_str::<ChunkRef>(&upper).is_err());
        assert!(serde_json::from_str::<ChunkRef>("[\"ab\",1,2,3,4,5]").is_err());
    }

    #[test]
    fn pack_records_round_trip_with_unknown_file_offsets() {
        let rec = PackRecord {
            format: FORMAT_V2,
            index: 3,
            pack_id: [0x3c; 16],
            size: 1_100_227,
            channel_id: 1_100_000_000_000_000_001,
            message_id: 1_200_000_000_000_000_123,
            attachment_id: 1_300_000_000_000_000_456,
            attachment_name: "x.bin".into(),
            uploaded_at: OffsetDateTime::UNIX_EPOCH,
            webhook_id: None,
            chunks: vec![
                PackChunk {
                    entry: PackEntry {
                        id: [1; 32],
                        offset: 0,
                        sealed_len: 400_040,
                        plain_len: 1_000_000,
                        flags: 1,
                    },
                    file_offset: Some(0),
                },
                PackChunk {
                    entry: PackEntry {
                        id: [2; 32],
                        offset: 400_040,
                        sealed_len: 700_040,
                        plain_len: 700_000,
                        flags: 0,
                    },
                    file_offset: None,
                },
            ],
        };
        let json = serde_json::to_string(&rec).unwrap();
        assert!(
            json.contains("\"channel_id\":\"1100000000000000001\""),
            "{json}"
        );
        assert!(json.contains(",0,null]"), "{json}");
        assert!(!json.contains("webhook_id"), "absent for the bot's: {json}");
        assert_eq!(serde_json::from_str::<PackRecord>(&json).unwrap(), rec);
        let by_hook = PackRecord {
            webhook_id: Some(1_400_000_000_000_000_789),
            ..rec
        };
        let json = serde_json::to_string(&by_hook).unwrap();
        assert!(
            json.contains("\"webhook_id\":\"1400000000000000789\""),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<PackRecord>(&json).unwrap(), by_hook);
    }
}
