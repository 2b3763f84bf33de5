//! Integration tests: dstore against its Discord emulator on 127.0.0.1:0, through the library
//! and through the real binary (one-shot, piped stdin, and a pseudo-terminal).

mod batch2;
mod catalogue;
mod cli;
mod common;
mod delete;
mod disk;
mod download;
mod download2;
mod faults;
mod format2;
mod formats;
mod hardening2;
mod hardening_upload;
mod info;
mod keys;
mod lanes;
mod network;
mod prompt;
mod prune;
mod pty;
mod recover;
mod repl;
mod resume;
mod story2;
mod sync;
mod sync_cli;
mod upload;
mod upload2;
mod web;
mod web_browser;
