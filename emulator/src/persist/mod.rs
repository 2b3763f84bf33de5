//! On-disk state: the small `meta.json`, the append-only message journal, and attachment blobs.

pub mod journal;
pub mod meta;
