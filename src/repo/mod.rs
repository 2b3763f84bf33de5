//! Format 2, the repository on Discord (docs/format.md): keys and sealing, content-defined
//! chunks, packs of chunks, and the sealed catalogue.

pub mod catalogue;
pub mod chunker;
pub mod compress;
pub mod crypto;
pub mod download;
pub mod entry;
pub mod index;
pub mod keys;
pub mod pack;
pub mod passphrase;
pub mod repository;
pub mod snapshot;
pub mod upload;
mod xchacha;
