//! Log output: tracing to stderr, printed above any progress bar, with serenity held at `warn`
//! (its request spans would Debug-print whole attachments, discord-api.md §5.4).

use std::io::Write;

use tracing_subscriber::EnvFilter;

use crate::progress::bars;

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

/// `verbose` 0: warnings; 1: dstore's debug lines. `RUST_LOG` replaces the default.
pub fn init(verbose: u8) {
    let default = if verbose > 0 {
        "warn,dstore=debug"
    } else {
        "warn"
    };
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_string());
    let filter = EnvFilter::new(format!("{filter},serenity=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(verbose > 0)
        .without_time()
        .with_writer(AboveBars::default)
        .try_init();
}
