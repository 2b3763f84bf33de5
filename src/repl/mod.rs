//! The interactive prompt: rustyline with history and completion on a terminal, plain lines
//! when stdin is not one; Ctrl-C cancels a transfer, never the prompt; Ctrl-D or `exit` leaves.

mod background;
mod expand;
mod helper;

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use clap::Parser;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config as EditorConfig, Editor};

use crate::cli::{Command, ReplCommand, ReplLine};
use crate::commands::{help_text, Session};
use crate::execute;

/// What to do after a line.
enum Flow {
    Continue(bool),
    Exit,
}

/// Runs the prompt until `exit` or end of input; non-zero when a command failed in piped mode.
pub fn run(rt: &tokio::runtime::Runtime, session: &Session, banner: &str) -> Result<ExitCode> {
    if std::io::stdin().is_terminal() {
        interactive(rt, session, banner)
    } else {
        piped(rt, session)
    }
}

/// Keeps lines typed ahead when Ctrl-C cancels a command (the terminal's NOFLSH: without it,
/// the interrupt also discards what was typed); the terminal's own setting comes back on drop.
struct KeepTypeAhead(Option<nix::sys::termios::Termios>);

impl KeepTypeAhead {
    fn set() -> Self {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = std::io::stdin();
        let Ok(original) = tcgetattr(&stdin) else {
            return Self(None);
        };
        let mut keep = original.clone();
        keep.local_flags.insert(LocalFlags::NOFLSH);
        match tcsetattr(&stdin, SetArg::TCSANOW, &keep) {
            Ok(()) => Self(Some(original)),
            Err(_) => Self(None),
        }
    }
}

impl Drop for KeepTypeAhead {
    fn drop(&mut self) {
        if let Some(original) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                original,
            );
        }
    }
}

fn interactive(rt: &tokio::runtime::Runtime, session: &Session, banner: &str) -> Result<ExitCode> {
    let _keep = KeepTypeAhead::set();
    let config = EditorConfig::builder().auto_add_history(true).build();
    let mut editor: Editor<helper::DstoreHelper, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(helper::DstoreHelper::new(
        session.catalog.clone(),
        crate::sync::Folders::new(&session.config.data_dir),
    )));
    let history = session.config.data_dir.join("history.txt");
    let _ = editor.load_history(&history);
    let mut history_warned = false;
    // Background syncs print above the line being typed.
    let printer: background::Printer = match editor.create_external_printer() {
        Ok(mut p) => Arc::new(Mutex::new(Box::new(move |line: String| {
            use rustyline::ExternalPrinter;
            let _ = p.print(format!("{line}\n"));
        }))),
        Err(_) => plain_printer(),
    };
    let mut bg = background::Background::new(printer);
    println!("{banner}");
    let mut web = None;
    loop {
        match editor.readline("dstore> ") {
            Ok(line) => {
                // Saved before the command runs, so a session killed during it keeps the line.
                if !line.trim().is_empty() {
                    if let Err(e) = editor.append_history(&history) {
                        if !history_warned {
                            eprintln!(
                                "warning: could not save the history to {}: {e}",
                                history.display()
                            );
                            history_warned = true;
                        }
                    }
                }
                if let Flow::Exit = handle(rt, session, &mut bg, &line, &mut web) {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {
                println!("(Ctrl-C cancels a transfer; type `exit` or press Ctrl-D to leave)")
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                bg.stop_all(rt);
                return Err(e.into());
            }
        }
    }
    bg.stop_all(rt);
    Ok(ExitCode::SUCCESS)
}

/// Lines straight to stdout (no prompt to keep intact).
fn plain_printer() -> background::Printer {
    Arc::new(Mutex::new(Box::new(|line: String| println!("{line}"))))
}

fn piped(rt: &tokio::runtime::Runtime, session: &Session) -> Result<ExitCode> {
    let mut failed = false;
    let mut bg = background::Background::new(plain_printer());
    let mut web = None;
    for line in std::io::stdin().lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                bg.stop_all(rt);
                return Err(e.into());
            }
        };
        match handle(rt, session, &mut bg, &line, &mut web) {
            Flow::Exit => break,
            Flow::Continue(ok) => failed |= !ok,
        }
    }
    bg.stop_all(rt);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `web` at the prompt: the dashboard runs in the background until `web stop` or the end of
/// the prompt (`web` again shows its address).
fn web(
    rt: &tokio::runtime::Runtime,
    session: &Session,
    args: &crate::cli::WebArgs,
    running: &mut Option<crate::web::Running>,
) -> Flow {
    const STOP: &str = "`web stop` stops it.";
    match (args.action, running.take()) {
        (Some(crate::cli::WebAction::Stop), Some(r)) => {
            rt.block_on(r.stop());
            println!("Dashboard stopped.");
            Flow::Continue(true)
        }
        (Some(crate::cli::WebAction::Stop), None) => {
            eprintln!("error: no dashboard is running; `web` starts one");
            Flow::Continue(false)
        }
        (None, Some(r)) => {
            println!("The dashboard is running already. {}", r.banner(STOP));
            *running = Some(r);
            Flow::Continue(true)
        }
        (None, None) => match rt.block_on(crate::commands::web::start(session, args.port)) {
            Ok(r) => {
                println!("{}", r.banner(STOP));
                *running = Some(r);
                Flow::Continue(true)
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                Flow::Continue(false)
            }
        },
    }
}

/// Parses and runs one line; errors are printed and the prompt goes on.
fn handle(
    rt: &tokio::runtime::Runtime,
    session: &Session,
    bg: &mut background::Background,
    line: &str,
    running: &mut Option<crate::web::Running>,
) -> Flow {
    let Some(words) = shlex::split(line) else {
        eprintln!("error: unbalanced quotes; close the quote or escape it with a backslash");
        return Flow::Continue(false);
    };
    if words.is_empty() {
        return Flow::Continue(true);
    }
    let parsed = match ReplLine::try_parse_from(&words) {
        Ok(p) => p,
        Err(e) => {
            if crate::cli::command_names().contains(&words[0]) {
                eprint!("{}", e.render());
            } else {
                eprintln!("error: {}", crate::commands::unknown_command(&words[0]));
            }
            return Flow::Continue(false);
        }
    };
    match parsed.command {
        ReplCommand::Exit => Flow::Exit,
        ReplCommand::Help { command } => match help_text(command.as_deref()) {
            Ok(t) => {
                println!("{t}");
                Flow::Continue(true)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Flow::Continue(false)
            }
        },
        // `sync <dir>` at the prompt runs in the background (`--once` in the foreground).
        ReplCommand::Run(Command::Sync {
            dir,
            more,
            once: false,
            rescan,
            json: _,
        }) => {
            let home = dirs::home_dir();
            let result = expand::tilde(&dir, home.as_deref()).and_then(|dir| {
                bg.command(
                    rt,
                    session,
                    &dir,
                    more.as_deref(),
                    std::time::Duration::from_secs(rescan.max(1)),
                )
            });
            match result {
                Ok(()) => Flow::Continue(true),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    Flow::Continue(false)
                }
            }
        }
        ReplCommand::Run(crate::cli::Command::Web(args)) => web(rt, session, &args, running),
        ReplCommand::Run(cmd) => match expand::command(cmd, dirs::home_dir().as_deref())
            .and_then(|cmd| rt.block_on(execute(session, cmd)))
        {
            Ok(()) => Flow::Continue(true),
            Err(e) => {
                eprintln!("error: {e:#}");
                Flow::Continue(false)
            }
        },
    }
}
