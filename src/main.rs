//! The `dstore` binary: parses launch flags, starts logging (and the emulator with
//! `--emulator`), then runs one command or the prompt; failures exit non-zero.

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches};
use dstore::cli::{Cli, ConfigAction, TopCommand};
use dstore::commands::Session;
use dstore::config::{config_path, Config, ConfigPath, PathFrom};
use dstore::progress::ProgressMode;
use dstore::{emulated, execute, logging, repl};

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Where the config file is, for `--help` and the banner.
fn config_note(path: Option<&ConfigPath>) -> String {
    match path {
        None => "Config file: none (no config folder on this system; use --config PATH)".into(),
        Some(p) if p.path.exists() => format!("Config file: {}", p.path.display()),
        Some(p) => format!(
            "Config file: {} (not there yet; `dstore config init` writes one)",
            p.path.display()
        ),
    }
}

fn main() -> ExitCode {
    let help_path = config_path(None, &env);
    let matches = Cli::command()
        .after_help(format!(
            "{}\nIt is read from --config PATH, else DSTORE_CONFIG, else that default.\n",
            config_note(help_path.as_ref())
        ))
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
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
    let path = config_path(cli.launch.config.as_deref(), &env);
    let command = match cli.command {
        Some(TopCommand::Config { action }) => return config_command(action, path),
        Some(TopCommand::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "dstore", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        Some(TopCommand::Run(cmd)) => Some(cmd),
        None => None,
    };
    let loaded = Config::load(&cli.launch.overrides(), &env);
    let mut config = match loaded {
        Ok(c) => c,
        Err(e) => {
            logging::init(cli.launch.verbose, None);
            return Err(e);
        }
    };
    let mut banner = format!(
        "dstore {}: type `help` for the commands, `exit` or Ctrl-D to leave.\n{}",
        env!("CARGO_PKG_VERSION"),
        config_note(path.as_ref())
    );
    let _emulator = if cli.launch.emulator {
        let given = cli.launch.data_dir.is_some() || std::env::var_os("DSTORE_DATA_DIR").is_some();
        let emu = rt.block_on(emulated::start(&mut config, given))?;
        banner = format!(
            "{banner}\nDiscord emulator at {} (channel {}); files and state in {}; the demo \
             repository's passphrase is kept in {}.",
            emu.base_url(),
            emu.channel_id(),
            config.data_dir.display(),
            emu.passphrase_file.display()
        );
        if command.is_some() {
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
    match command {
        Some(cmd) => rt
            .block_on(execute(&session, cmd))
            .map(|()| ExitCode::SUCCESS),
        None => repl::run(rt, &session, &banner),
    }
}

/// `dstore config path` and `dstore config init`.
fn config_command(action: ConfigAction, path: Option<ConfigPath>) -> Result<ExitCode> {
    let Some(p) = path else {
        anyhow::bail!("this system has no config folder; pass --config PATH or set DSTORE_CONFIG");
    };
    match action {
        ConfigAction::Path => {
            println!("{}", p.path.display());
            if !p.path.exists() {
                eprintln!("(not there yet; `dstore config init` writes a commented one)");
            }
            if p.from != PathFrom::Default {
                eprintln!("(from {})", p.from.as_str());
            }
        }
        ConfigAction::Init => {
            dstore::config::init_file(&p.path)?;
            println!(
                "Wrote {}: set `token` and `channels` in it (or try `dstore --emulator` first).",
                p.path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
