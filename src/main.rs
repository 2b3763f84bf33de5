//! The `dstore` binary: parses launch flags, starts logging (and the emulator with
//! `--emulator`), then runs one command or the prompt; failures exit non-zero.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use dstore::cli::Cli;
use dstore::commands::Session;
use dstore::config::Config;
use dstore::progress::ProgressMode;
use dstore::{emulated, execute, logging, repl};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match run(&rt, cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Transfers cancelled by Ctrl-C may leave requests to drop; do not wait for them.
    rt.shutdown_background();
    code
}

fn run(rt: &tokio::runtime::Runtime, cli: Cli) -> Result<ExitCode> {
    let loaded = Config::load(&cli.launch.overrides(), &|k| std::env::var(k).ok());
    let mut config = match loaded {
        Ok(c) => c,
        Err(e) => {
            logging::init(cli.launch.verbose, None);
            return Err(e);
        }
    };
    let mut banner = format!(
        "dstore {}: type `help` for the commands, `exit` or Ctrl-D to leave.",
        env!("CARGO_PKG_VERSION")
    );
    let _emulator = if cli.launch.emulator {
        let given = cli.launch.data_dir.is_some() || std::env::var_os("DSTORE_DATA_DIR").is_some();
        let emu = rt.block_on(emulated::start(&mut config, given))?;
        banner = format!(
            "{banner}\nDiscord emulator at {} (channel {}); files and state in {}.",
            emu.base_url(),
            emu.channel_id(),
            config.data_dir.display()
        );
        if cli.command.is_some() {
            eprintln!("{}", banner.lines().last().unwrap_or_default());
        }
        Some(emu)
    } else {
        None
    };
    logging::init(cli.launch.verbose, Some(&config.data_dir));
    tracing::debug!(
        config = %config
            .source
            .as_deref()
            .map_or_else(|| "none".into(), |p| p.display().to_string()),
        data_dir = %config.data_dir.display(),
        api_base = %config.api_base,
        channels = config.channels.len(),
        concurrency = config.concurrency,
        "configuration loaded"
    );
    let session = Session::new(config, ProgressMode::detect())?;
    match cli.command {
        Some(cmd) => rt
            .block_on(execute(&session, cmd))
            .map(|()| ExitCode::SUCCESS),
        None => repl::run(rt, &session, &banner),
    }
}
