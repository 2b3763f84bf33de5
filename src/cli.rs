//! The command language, one clap definition for both one-shot mode (`dstore upload PATH`) and
//! the REPL (`upload PATH`), so help, usage and behaviour are the same in both.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{parse_channel_id, parse_concurrency, FlagOverrides, PartSize};

#[derive(Debug, Parser)]
#[command(
    name = "dstore",
    version,
    about = "Store files on Discord: encrypted, deduplicated, resumable, verified uploads through a bot.",
    long_about = "Store files on Discord: encrypted, deduplicated, resumable, verified uploads through a bot.\n\n\
        With no command, dstore starts an interactive prompt. `dstore --emulator` runs against a \
        local Discord emulator, no Discord account needed."
)]
pub struct Cli {
    #[command(flatten)]
    pub launch: LaunchFlags,
    #[command(subcommand)]
    pub command: Option<TopCommand>,
}

/// What `dstore` runs from the shell: the prompt's commands, and two that only make sense
/// there.
#[derive(Debug, Clone, Subcommand)]
pub enum TopCommand {
    #[command(flatten)]
    Run(Command),
    /// Show where the config file is, or write a commented one.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print a shell completion script (e.g. `dstore completions bash > ~/.local/share/bash-completion/completions/dstore`).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum ConfigAction {
    /// Print the config file's path (it may not exist yet).
    Path,
    /// Write a commented config file there, readable by you only; never replaces one.
    Init,
}

#[derive(Debug, Clone, Args)]
pub struct LaunchFlags {
    /// Config file (default: $DSTORE_CONFIG, else the platform config dir's dstore/config.toml).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Where manifests, history and logs live (overrides DSTORE_DATA_DIR and `data_dir`).
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Discord API origin (overrides DSTORE_API_BASE and `api_base`).
    #[arg(long, value_name = "URL", global = true)]
    pub api_base: Option<String>,
    /// Storage channel ID; repeat for several (overrides DSTORE_CHANNELS and `channels`).
    #[arg(long = "channel", value_name = "ID", value_parser = parse_channel_id, global = true)]
    pub channels: Vec<u64>,
    /// Part (format 2: pack) size: `auto` (the channel's largest) or a size such as 8MiB.
    #[arg(long, value_name = "SIZE", value_parser = PartSize::parse, global = true)]
    pub part_size: Option<PartSize>,
    /// Parts in flight at once (1-32).
    #[arg(long, value_name = "N", value_parser = parse_concurrency, global = true)]
    pub concurrency: Option<usize>,
    /// Run against a Discord emulator started in this process (no Discord account needed).
    #[arg(long, global = true)]
    pub emulator: bool,
    /// More log output (-v: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

impl LaunchFlags {
    pub fn overrides(&self) -> FlagOverrides {
        FlagOverrides {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            api_base: self.api_base.clone(),
            channels: self.channels.clone(),
            part_size: self.part_size,
            concurrency: self.concurrency,
        }
    }
}

/// The commands of both modes.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Upload files; prints each one's ID, which `resume` takes if its upload is interrupted.
    Upload {
        /// The files to upload, one after the other (quote paths with spaces; at the prompt,
        /// `~` is the home folder and `*`, `?`, `[...]` match files as in a shell).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Upload even a file already stored whole (same size and SHA-256).
        #[arg(long)]
        force: bool,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Continue an interrupted upload; nothing Discord already holds is sent again.
    Resume {
        /// The file ID printed by `upload` (see `list`).
        id: String,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show every file: ID, name, size, parts, status and age, newest first; then synced folders' files.
    List {
        /// Also show files hidden by `delete --keep-remote`.
        #[arg(long)]
        all: bool,
        /// Draw each synced folder's latest snapshot as a tree.
        #[arg(long)]
        tree: bool,
        /// Print the list as JSON on stdout (uploaded files; synced folders are in their snapshots).
        #[arg(long)]
        json: bool,
    },
    /// Get a file back, verified byte for byte; run it again to resume an interrupted download.
    Download {
        /// The file ID (see `list`), or a synced path (`<folder>/<path>`).
        id: String,
        /// A directory (the original name is used) or a file path; default: the current directory.
        dest: Option<PathBuf>,
        /// Replace an existing file at the destination.
        #[arg(long)]
        force: bool,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Check that every part is still on Discord with its recorded size (--full: and its hash).
    Verify {
        /// The file ID (see `list`).
        id: String,
        /// Also download and hash every part (writes nothing).
        #[arg(long)]
        full: bool,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show a file's details, its parts and the command to use next.
    Info {
        /// The file ID (see `list`), or a synced path (`<folder>/<path>`).
        id: String,
        /// Print the details as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Delete a file from Discord and from the catalogue.
    Delete {
        /// The file ID (see `list`).
        id: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
        /// Only hide the file from `list`; keep its parts on Discord (`undelete` brings it back).
        #[arg(long)]
        keep_remote: bool,
    },
    /// Bring back a file hidden by `delete --keep-remote`.
    Undelete {
        /// The file ID (see `list --all`).
        id: String,
    },
    /// Rebuild the local catalogue from the catalogue entries posted to Discord.
    Recover {
        /// Print the recovered files as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Create the storage-format-2 repository on Discord, its master key sealed under your passphrase.
    #[command(
        long_about = "Create the storage-format-2 repository on Discord: a random repository ID and master key, \
            the key sealed under your passphrase (asked twice on a terminal; in a script from \
            DSTORE_PASSPHRASE, DSTORE_PASSPHRASE_FILE or DSTORE_PASSPHRASE_COMMAND). The passphrase \
            cannot be recovered: without it nothing stored can be read."
    )]
    Init {
        /// Make an unencrypted repository: no passphrase, and Discord holds readable bytes.
        #[arg(long)]
        no_encryption: bool,
    },
    /// Free space on Discord: delete packs no file uses, repack mostly unused ones (format 2).
    #[command(
        long_about = "Free space on Discord (format 2): delete the packs no file uses, and copy the live chunks \
            of packs mostly unused into new packs, post new catalogue entries for the files that used them, and \
            only then delete the old packs. A prune stopped at any point loses nothing; run it again to finish. \
            Packs younger than the grace period are left alone, since an upload in progress may be about to use them."
    )]
    Prune {
        /// Only say what would be deleted and repacked.
        #[arg(long)]
        dry_run: bool,
        /// Leave packs younger than this many hours alone.
        #[arg(long, value_name = "HOURS", default_value_t = 24.0, value_parser = parse_hours)]
        grace_hours: f64,
    },
    /// Bring this machine's format-2 records in line with Discord (after a prune or delete elsewhere).
    #[command(
        long_about = "Bring this machine's format-2 records in line with Discord: every catalogue entry that counts \
            rewrites its file's record when it is newer or names other places (after a `prune` or a `delete` \
            on another machine), files whose entry is gone are named, and packs no file uses are counted \
            from their headers for `prune`. The chunk index deduplication uses is built from these records."
    )]
    RebuildIndex,
    /// Show the files, bytes, deduplication and compression of the repository, and what `prune` frees.
    Stats {
        /// Print the figures as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Keep a folder stored: upload what changed, one snapshot per round (docs/sync.md); --once for cron.
    #[command(
        long_about = "Keep a folder stored (format 2): each round uploads only the chunks of what changed, packed \
            together for all files, and posts one snapshot of the whole tree. `sync DIR` syncs now and then \
            watches the folder until Ctrl-C (at the prompt: in the background; `sync status`, `sync stop [DIR]`). \
            `--once` syncs and exits, for cron. A `.dstoreignore` (gitignore syntax) leaves files out; \
            swap, temporary and partial files are always left out."
    )]
    Sync {
        /// The folder to sync (at the prompt also `status` or `stop`).
        dir: PathBuf,
        /// At the prompt, with `stop`: the folder to stop (default: all).
        #[arg(hide = true)]
        more: Option<PathBuf>,
        /// One round, then exit.
        #[arg(long)]
        once: bool,
        /// Seconds between full rescans while watching (a safety net for missed events).
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        rescan: u64,
        /// With --once: print the round's report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write a synced folder (or one file or subfolder of it) as it was at a time, every file verified.
    Restore {
        /// The folder (its path, ID or name), or `<folder>/<path>` for a file or subfolder.
        what: String,
        /// Where to write it (default: ./<name>).
        dest: Option<PathBuf>,
        /// The time to restore (RFC 3339, a date, or an age like 2h or 3d; default: the latest).
        #[arg(long, value_name = "TIME", value_parser = crate::commands::sync::parse_time)]
        at: Option<time::OffsetDateTime>,
        /// Replace files that exist at the destination.
        #[arg(long)]
        force: bool,
    },
    /// Show every version of a synced file: the snapshots where it changed, and where it was deleted.
    Versions {
        /// The synced path: `<folder>/<path>` (folder by name or ID) or a local path inside a synced folder.
        path: String,
        /// Print the versions as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Delete a synced folder's snapshots that the policy does not keep (then `prune` frees space).
    #[command(
        long_about = "Delete the snapshots of a synced folder that the policy does not keep (restic's rules, in UTC): \
            the N newest (--keep-last), and the newest of each of the N latest hours, days, ISO weeks, months and \
            years that have one. The newest snapshot always stays. No pack is touched: `prune` then removes the \
            packs no snapshot and no file still needs."
    )]
    Forget {
        /// The folder (its path, ID or name).
        folder: String,
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_last: usize,
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_hourly: usize,
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_daily: usize,
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_weekly: usize,
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_monthly: usize,
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_yearly: usize,
        /// Only say which snapshots would be forgotten.
        #[arg(long)]
        dry_run: bool,
    },
    /// Serve the dashboard on http://127.0.0.1:5000 (loopback only); at the prompt it runs in the background.
    #[command(
        long_about = "Serve the web dashboard on http://127.0.0.1 (loopback only; port 5000 unless --port): the files \
            as a tree, the storage statistics, upload by drag-and-drop, download, delete, all updated live. It \
            prints the address to open, which holds a fresh access token; nothing is served without it. At the \
            prompt it runs in the background (`web stop` stops it); `dstore web` serves until Ctrl-C.",
        args_conflicts_with_subcommands = true
    )]
    Web(WebArgs),
    /// List, add or remove the repository's passphrases (its key files); `key passwd` changes yours.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
}

/// `web [--port N]`, `web stop`.
#[derive(Debug, Clone, Args)]
pub struct WebArgs {
    /// The port on 127.0.0.1 to serve on (0: any free one).
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub port: u16,
    #[command(subcommand)]
    pub action: Option<WebAction>,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum WebAction {
    /// Stop the dashboard started at this prompt.
    Stop,
}

/// What `key` does. None re-encrypts any data: only key files change.
#[derive(Debug, Clone, Subcommand)]
pub enum KeyAction {
    /// Show each key file: its ID, Argon2 costs, when it was posted, and which one your passphrase opens.
    List,
    /// Add a passphrase (DSTORE_NEW_PASSPHRASE in a script): a new key file wrapping the same key.
    Add,
    /// Remove a key file; never the last one, nor the one your passphrase opens (use `key passwd`).
    Remove {
        /// The key ID (see `key list`).
        id: String,
    },
    /// Change your passphrase: a key file for the new one, then the old one's removed.
    Passwd,
}

/// A number of hours, 0 or more.
fn parse_hours(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(h) if h.is_finite() && (0.0..=24.0 * 365.0).contains(&h) => Ok(h),
        _ => Err(format!("{text:?} is not a number of hours from 0 to 8760")),
    }
}

/// A line typed at the prompt.
#[derive(Debug, Parser)]
#[command(
    multicall = true,
    disable_help_subcommand = true,
    disable_help_flag = true
)]
pub struct ReplLine {
    #[command(subcommand)]
    pub command: ReplCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReplCommand {
    #[command(flatten)]
    Run(Command),
    /// Show the commands, or one command's usage.
    Help { command: Option<String> },
    /// Leave dstore (also `quit` or Ctrl-D).
    #[command(alias = "quit")]
    Exit,
}

/// Every command name the prompt knows, for completion and suggestions.
pub fn command_names() -> Vec<String> {
    use clap::CommandFactory;
    let mut names: Vec<String> = ReplLine::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    names.push("quit".into());
    names
}
