//! Log output: tracing to stderr (printed above any progress bar) and to `<data-dir>/dstore.log`,
//! with serenity held at `warn` (its request spans would Debug-print whole attachments,
//! discord-api.md §5.4).

use std::fs::{File, OpenOptions, Permissions};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::progress::bars;

/// The log file is set aside (one generation kept) when it grows past this at start-up.
const LOG_ROTATE_BYTES: u64 = 10 << 20;

/// Buffers one log event and prints it with the bars suspended.
#[derive(Default)]
pub struct AboveBars(Vec<u8>);

impl Write for AboveBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for AboveBars {
    fn drop(&mut self) {
        let text = std::mem::take(&mut self.0);
        bars().suspend(|| {
            let _ = std::io::stderr().write_all(&text);
        });
    }
}

/// `verbose` 0: warnings on stderr; 1: dstore's debug lines. `RUST_LOG` replaces the stderr
/// filter. The log file in `data_dir` (when it can be opened) always gets info and above.
pub fn init(verbose: u8, data_dir: Option<&Path>) {
    let default = if verbose > 0 {
        "warn,dstore=debug"
    } else {
        "warn"
    };
    let wanted = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_string());
    let stderr = fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose > 0)
        .without_time()
        .with_writer(AboveBars::default)
        .with_filter(EnvFilter::new(format!("{wanted},serenity=warn")));
    let file = data_dir.and_then(open_log).map(|f| {
        fmt::layer()
            .with_ansi(false)
            .with_writer(Mutex::new(f))
            .with_filter(EnvFilter::new(
                "info,serenity=warn,hyper=warn,reqwest=warn,rustyline=warn",
            ))
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
}

/// Opens `<dir>/dstore.log`, readable by the user only: the data dir is created 0700 and the
/// log 0600, and a log an earlier version left readable by others is made private (it names
/// files, paths and IDs; only dstore writes it, so tightening it surprises no one).
fn open_log(dir: &Path) -> Option<File> {
    crate::catalog::create_private_dir(dir).ok()?;
    let path = dir.join("dstore.log");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(&path, dir.join("dstore.log.1"));
    }
    if let Ok(old) = File::open(dir.join("dstore.log.1")) {
        make_private(&old);
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .ok()?;
    make_private(&file);
    Some(file)
}

/// Takes group and other access away from a file dstore owns; a failure only leaves it as it was.
fn make_private(file: &File) {
    let loose = file
        .metadata()
        .is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
    if loose {
        let _ = file.set_permissions(Permissions::from_mode(0o600));
    }
}
