//! Packs: sealed chunks in one attachment, with a sealed header listing them (docs/format.md, "Packs").
