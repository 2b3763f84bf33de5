//! Sealing and opening with the repository keys (docs/format.md, "Keys" and "Chunks").
