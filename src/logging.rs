//! Log output: tracing to stderr (printed above any progress bar) and to `<data-dir>/dstore.log`,
//! with serenity held at `warn` (its request spans would Debug-print whole attachments,
//! discord-api.md §5.4).

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
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

fn open_log(dir: &Path) -> Option<File> {
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join("dstore.log");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(&path, dir.join("dstore.log.1"));
    }
    OpenOptions::new().create(true).append(true).open(path).ok()
}
