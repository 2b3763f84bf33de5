//! Where a repository passphrase comes from: `DSTORE_PASSPHRASE`, else `DSTORE_PASSPHRASE_FILE`
//! (its first line), else `DSTORE_PASSPHRASE_COMMAND` (the first line of its output, run with
//! `sh -c`), else a passphrase file the configuration names (the `--emulator` demo's), else a
//! prompt without echo when stdin is a terminal. Never from a command-line
//! argument; the passphrase never reaches a log, an error or a Debug print.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A passphrase. Debug and Display redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(String);

impl Passphrase {
    /// Wraps a passphrase.
    pub fn new(value: impl Into<String>) -> Passphrase {
        Passphrase(value.into())
    }

    /// The passphrase itself, for the key derivation only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl fmt::Display for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the passphrase is for: opening keys (asked once) or making a new key (asked twice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Opening an existing repository's key files.
    Open,
    /// Making a key file: `dstore init`, the first upload into an empty repository, `key add`,
    /// `key passwd`.
    Create,
}

/// Where a passphrase was found, to say so (for example when an upload initialises a repository).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `DSTORE_PASSPHRASE`.
    Env,
    /// `DSTORE_PASSPHRASE_FILE`.
    File,
    /// `DSTORE_PASSPHRASE_COMMAND`.
    Command,
    /// The passphrase file the configuration names (`Config::passphrase_file`, set by the
    /// `--emulator` demo).
    ConfigFile,
    /// Typed at the terminal.
    Terminal,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Env => "DSTORE_PASSPHRASE",
            Source::File => "DSTORE_PASSPHRASE_FILE",
            Source::Command => "DSTORE_PASSPHRASE_COMMAND",
            Source::ConfigFile => "the configured passphrase file",
            Source::Terminal => "the terminal",
        })
    }
}

/// Why no passphrase could be had. None of these carries the passphrase.
#[derive(Debug, thiserror::Error)]
pub enum PassphraseError {
    /// No source is set and stdin is not a terminal, when creating a key.
    #[error("no passphrase to create the repository key with: run `dstore init` on a terminal, or set DSTORE_PASSPHRASE (or DSTORE_PASSPHRASE_FILE, DSTORE_PASSPHRASE_COMMAND)")]
    NoneToCreate,
    /// No source is set and stdin is not a terminal, when opening keys.
    #[error("this repository is encrypted and no passphrase was given: set DSTORE_PASSPHRASE (or DSTORE_PASSPHRASE_FILE, DSTORE_PASSPHRASE_COMMAND), or run on a terminal to be asked")]
    NoneToOpen,
    /// The source gave an empty passphrase.
    #[error("the passphrase from {0} is empty; give a non-empty passphrase")]
    Empty(Source),
    /// `DSTORE_PASSPHRASE_FILE` (or the configured passphrase file) cannot be read.
    #[error("cannot read the passphrase file {} (from {from}): {source}", path.display())]
    File {
        path: PathBuf,
        from: Source,
        source: io::Error,
    },
    /// `DSTORE_PASSPHRASE_COMMAND` could not be started.
    #[error("cannot run DSTORE_PASSPHRASE_COMMAND with `sh -c`: {0}")]
    CommandStart(io::Error),
    /// `DSTORE_PASSPHRASE_COMMAND` exited unsuccessfully.
    #[error("DSTORE_PASSPHRASE_COMMAND failed ({0}); run it by hand to see why")]
    CommandFailed(String),
    /// The file or command output is not UTF-8.
    #[error("the passphrase from {0} is not UTF-8 text")]
    NotText(Source),
    /// The two passphrases typed when creating a key differ.
    #[error("the two passphrases typed differ; nothing was changed, try again")]
    Mismatch,
    /// Ctrl-C or Ctrl-D at the prompt.
    #[error("no passphrase typed (cancelled); nothing was changed")]
    Cancelled,
    /// The terminal could not be read.
    #[error("cannot read the passphrase from the terminal: {0}")]
    Terminal(io::Error),
}

/// A way to ask for a passphrase: the terminal, or a script in tests.
pub trait Prompt {
    /// Whether asking is possible at all (stdin is a terminal).
    fn available(&self) -> bool;
    /// Shows `prompt` and reads one line without echo; `None` when the user cancels.
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>>;
}

/// The passphrase for `purpose`, from the environment (read through `env`) or the terminal.
pub fn obtain(
    purpose: Purpose,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Passphrase, Source), PassphraseError> {
    obtain_with(purpose, env, &mut Terminal)
}

/// [`obtain`] with a given prompt.
pub fn obtain_with(
    purpose: Purpose,
    env: &dyn Fn(&str) -> Option<String>,
    prompt: &mut dyn Prompt,
) -> Result<(Passphrase, Source), PassphraseError> {
    obtain_with_file(purpose, env, None, prompt)
}

/// [`obtain_with`], trying the passphrase file `file` (the configuration's) after the three
/// environment variables and before the prompt.
pub fn obtain_with_file(
    purpose: Purpose,
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<&Path>,
    prompt: &mut dyn Prompt,
) -> Result<(Passphrase, Source), PassphraseError> {
    let (value, source) = if let Some(v) = env("DSTORE_PASSPHRASE") {
        (v, Source::Env)
    } else if let Some(path) = env("DSTORE_PASSPHRASE_FILE").filter(|p| !p.is_empty()) {
        (from_file(PathBuf::from(path), Source::File)?, Source::File)
    } else if let Some(cmd) = env("DSTORE_PASSPHRASE_COMMAND").filter(|c| !c.is_empty()) {
        (from_command(&cmd)?, Source::Command)
    } else if let Some(path) = file {
        (
            from_file(path.to_path_buf(), Source::ConfigFile)?,
            Source::ConfigFile,
        )
    } else if prompt.available() {
        (from_prompt(purpose, prompt)?, Source::Terminal)
    } else {
        return Err(match purpose {
            Purpose::Create => PassphraseError::NoneToCreate,
            Purpose::Open => PassphraseError::NoneToOpen,
        });
    };
    if value.is_empty() {
        return Err(PassphraseError::Empty(source));
    }
    Ok((Passphrase(value), source))
}

/// The first line of `text`, without its line ending.
fn first_line(text: &str) -> String {
    let line = text.split('\n').next().unwrap_or_default();
    line.strip_suffix('\r').unwrap_or(line).to_string()
}

fn from_file(path: PathBuf, from: Source) -> Result<String, PassphraseError> {
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(source) => return Err(PassphraseError::File { path, from, source }),
    };
    let text = String::from_utf8(bytes).map_err(|_| PassphraseError::NotText(from))?;
    Ok(first_line(&text))
}

fn from_command(cmd: &str) -> Result<String, PassphraseError> {
    // stdin is not passed on: it may be the data being uploaded. stderr is, so the command's own
    // complaints reach the user.
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(PassphraseError::CommandStart)?;
    if !out.status.success() {
        return Err(PassphraseError::CommandFailed(out.status.to_string()));
    }
    let text =
        String::from_utf8(out.stdout).map_err(|_| PassphraseError::NotText(Source::Command))?;
    Ok(first_line(&text))
}

fn from_prompt(purpose: Purpose, prompt: &mut dyn Prompt) -> Result<String, PassphraseError> {
    let ask = |prompt: &mut dyn Prompt, text: &str| match prompt.ask(text) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(PassphraseError::Cancelled),
        Err(e) => Err(PassphraseError::Terminal(e)),
    };
    match purpose {
        Purpose::Open => ask(prompt, "Passphrase: "),
        Purpose::Create => {
            let first = ask(prompt, "New passphrase: ")?;
            if first.is_empty() {
                return Err(PassphraseError::Empty(Source::Terminal));
            }
            let second = ask(prompt, "Repeat the passphrase: ")?;
            if first != second {
                return Err(PassphraseError::Mismatch);
            }
            Ok(first)
        }
    }
}

/// The terminal on stdin: the prompt goes to stderr, the line is read with echo off.
pub struct Terminal;

impl Prompt for Terminal {
    fn available(&self) -> bool {
        use std::io::IsTerminal;
        io::stdin().is_terminal()
    }

    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>> {
        // An unbuffered handle on fd 0, so nothing typed after the line is swallowed.
        let input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        ask_on(&input, &mut io::stderr(), prompt)
    }
}

/// Writes `prompt` to `out`, reads a line from the terminal `input` with echo off, then ends the
/// prompt's line (the Enter typed was not echoed).
fn ask_on(input: &File, out: &mut dyn Write, prompt: &str) -> io::Result<Option<String>> {
    out.write_all(prompt.as_bytes())?;
    out.flush()?;
    let line = {
        let _raw = NoEcho::set(input)?;
        read_hidden_line(&mut &*input)
    };
    out.write_all(b"\n")?;
    out.flush()?;
    line
}

/// The terminal without echo, line editing or signals (so Ctrl-C is read as a key and the
/// terminal's settings always come back); restored on drop. Set and restored at once (TCSANOW),
/// not flushing: a passphrase typed ahead of the prompt is read, not lost.
struct NoEcho<'a>(&'a File, nix::sys::termios::Termios);

impl<'a> NoEcho<'a> {
    fn set(fd: &'a File) -> io::Result<NoEcho<'a>> {
        use nix::sys::termios::{
            tcgetattr, tcsetattr, LocalFlags, SetArg, SpecialCharacterIndices,
        };
        let original = tcgetattr(fd).map_err(io::Error::from)?;
        let mut raw = original.clone();
        raw.local_flags
            .remove(LocalFlags::ECHO | LocalFlags::ICANON | LocalFlags::ISIG);
        raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        tcsetattr(fd, SetArg::TCSANOW, &raw).map_err(io::Error::from)?;
        Ok(NoEcho(fd, original))
    }
}

impl Drop for NoEcho<'_> {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(self.0, nix::sys::termios::SetArg::TCSANOW, &self.1);
    }
}

/// Reads one line typed with the terminal in non-canonical mode: Enter ends it, Backspace removes
/// a character, Ctrl-U clears the line, Ctrl-C (or Ctrl-D on an empty line, or end of input)
/// cancels. `None` when cancelled.
pub fn read_hidden_line(input: &mut dyn Read) -> io::Result<Option<String>> {
    let mut line: Vec<u8> = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if input.read(&mut byte)? == 0 {
            return Ok(None);
        }
        match byte[0] {
            b'\r' | b'\n' => break,
            0x03 => return Ok(None),
            0x04 if line.is_empty() => return Ok(None),
            0x04 => {}
            0x15 => line.clear(),
            0x7f | 0x08 => {
                // Remove one UTF-8 character: its continuation bytes, then its first byte.
                while line.pop().is_some_and(|b| b & 0xC0 == 0x80) {}
            }
            b => line.push(b),
        }
    }
    String::from_utf8(line).map(Some).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the passphrase typed is not UTF-8",
        )
    })
}

#[cfg(test)]
#[path = "passphrase_tests.rs"]
mod tests;
