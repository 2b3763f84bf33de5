//! dstore: store files on Discord as message attachments, with streamed, resumable, verified
//! transfers. The binary's REPL and one-shot commands sit on these modules.

pub mod catalog;
pub mod config;
pub mod store;
