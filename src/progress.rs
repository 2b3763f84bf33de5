//! Transfer progress: an indicatif bar on a terminal, at most one plain line a second when
//! stderr is not a terminal, nothing when hidden (tests, `--json`).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::render::human_bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    Bar,
    Plain,
    Hidden,
}

impl ProgressMode {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Plain
        }
    }
}

/// Every bar lives here, so log lines can be printed above them without tearing them.
pub fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

pub struct Progress {
    bar: Option<ProgressBar>,
    plain: Option<Mutex<Plain>>,
    bytes: AtomicU64,
    parts: AtomicU64,
    total_bytes: u64,
    total_parts: AtomicU64,
}

struct Plain {
    label: String,
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    pub fn new(mode: ProgressMode, label: &str, total_bytes: u64) -> Self {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = bars().add(ProgressBar::with_draw_target(
                Some(total_bytes),
                ProgressDrawTarget::hidden(),
            ));
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} parts {prefix}",
                )
                .expect("template is valid")
                .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let plain = (mode == ProgressMode::Plain).then(|| {
            Mutex::new(Plain {
                label: label.to_string(),
                started: Instant::now(),
                last: None,
            })
        });
        Self {
            bar,
            plain,
            bytes: AtomicU64::new(0),
            parts: AtomicU64::new(0),
            total_bytes,
            total_parts: AtomicU64::new(0),
        }
    }

    pub fn set_parts(&self, done: u64, total: u64) {
        self.parts.store(done, Ordering::Relaxed);
        self.total_parts.store(total, Ordering::Relaxed);
        self.redraw(false);
    }

    /// Records bytes already done before this run (skipped parts).
    pub fn set_position(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
            bar.reset_eta();
        }
        self.redraw(false);
    }

    /// One more part of `bytes` is done.
    pub fn part_done(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.parts.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
        self.redraw(false);
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.redraw(true);
    }

    fn redraw(&self, force: bool) {
        let (done, total) = (
            self.parts.load(Ordering::Relaxed),
            self.total_parts.load(Ordering::Relaxed),
        );
        if let Some(bar) = &self.bar {
            bar.set_prefix(format!("{done}/{total}"));
        }
        let Some(plain) = &self.plain else { return };
        let mut p = plain.lock().unwrap();
        let now = Instant::now();
        if !force
            && p.last
                .is_some_and(|l| now.duration_since(l) < Duration::from_secs(1))
        {
            return;
        }
        p.last = Some(now);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let secs = now.duration_since(p.started).as_secs_f64().max(0.001);
        let pct = (bytes * 100).checked_div(self.total_bytes).unwrap_or(100);
        let _ = writeln!(
            std::io::stderr(),
            "{}: {} / {} ({pct}%), parts {done}/{total}, {}/s",
            p.label,
            human_bytes(bytes),
            human_bytes(self.total_bytes),
            human_bytes((bytes as f64 / secs) as u64),
        );
    }
}
