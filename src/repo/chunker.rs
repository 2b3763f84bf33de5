//! Content-defined chunking and the per-chunk compression decision (docs/format.md, "Chunks").
