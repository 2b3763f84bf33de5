//! Transfer progress: one line redrawn in place on a terminal (at most 80 columns, never
//! wrapped), at most one plain line a second when stderr is not a terminal, nothing when hidden
//! (tests, `--json`). The rate counts only bytes moved in this run, and a rate-limit wait is
//! shown as such instead of a falling rate.
//!
//! The line is drawn here rather than by indicatif: indicatif 0.17 pads its last line with
//! spaces to the terminal's full width (to push later writes onto the next line), so the `^C`
//! a terminal echoes on Ctrl-C wraps, and erasing the bar then leaves its line on the screen.
//! One line, `\r` and `ESC[2K`, is all this needs.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::render::human_bytes;

/// The widest the progress line gets, whatever the terminal's width.
pub const MAX_WIDTH: usize = 80;

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

/// The progress line on the terminal, drawn in place: log lines are printed above it through
/// [`Bars::suspend`] without tearing it.
pub struct Bars {
    /// The line shown now, if any.
    line: Mutex<Option<String>>,
}

/// Back to the start of the line, and clear it.
const CLEAR_LINE: &str = "\r\x1b[2K";

impl Bars {
    /// Runs `f` (which prints) with the progress line taken off the screen, then draws it again.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        let shown = self.line.lock().unwrap_or_else(|e| e.into_inner());
        if shown.is_some() {
            let _ = std::io::stderr().write_all(CLEAR_LINE.as_bytes());
        }
        let r = f();
        if let Some(line) = shown.as_ref() {
            let mut err = std::io::stderr();
            let _ = write!(err, "{CLEAR_LINE}{line}");
            let _ = err.flush();
        }
        r
    }

    /// Shows `line` in place of the one shown. The cursor stays after it, at least three
    /// columns from the right edge, so an echoed `^C` never wraps to a line that erasing would
    /// miss.
    fn draw(&self, line: String) {
        let mut shown = self.line.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr();
        let _ = write!(err, "{CLEAR_LINE}{line}");
        let _ = err.flush();
        *shown = Some(line);
    }

    /// Erases the line shown, if any.
    fn clear(&self) {
        let mut shown = self.line.lock().unwrap_or_else(|e| e.into_inner());
        if shown.take().is_some() {
            let mut err = std::io::stderr();
            let _ = err.write_all(CLEAR_LINE.as_bytes());
            let _ = err.flush();
        }
    }
}

/// The one progress line of this process.
pub fn bars() -> &'static Bars {
    static BARS: Bars = Bars {
        line: Mutex::new(None),
    };
    &BARS
}

/// The numbers one progress line is drawn from.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot<'a> {
    pub label: &'a str,
    /// Bytes done, including those done before this run.
    pub done: u64,
    pub total: u64,
    /// Bytes moved in this run, over `elapsed`: the rate.
    pub sent: u64,
    pub elapsed: Duration,
    pub parts_done: u64,
    pub parts_total: u64,
    /// A rate-limit wait under way, and how long it still lasts.
    pub waiting: Option<Duration>,
    /// What the transfer's scheduler foresees, when it does.
    pub forecast: Option<Forecast>,
}

/// The rate a transfer's scheduler foresees from when each remaining pack can go (docs/lanes.md
/// 3): the rate Discord's limits allow over its lanes, and whether that limit (rather than the
/// link or the machine) is what the packs wait for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forecast {
    /// Bytes per second the lanes' rate limits allow.
    pub rate: f64,
    /// Packs are waiting for a lane's rate limit: the rate is Discord's, not the link's.
    pub discord: bool,
}

/// The progress line for `s`, at most `width` characters; with `bar`, a bar fills what room
/// is left. What does not fit is left out, least useful first: the bar, the part count, the
/// byte counts, then the end of the label.
pub fn render_line(s: &Snapshot<'_>, width: usize, bar: bool) -> String {
    let pct = if s.total == 0 {
        100
    } else {
        (u128::from(s.done.min(s.total)) * 100 / u128::from(s.total)) as u64
    };
    let pct = format!("{pct:>3}%");
    let bytes = byte_counts(s.done, s.total);
    let status = match s.waiting {
        Some(d) => format!(
            "waiting for Discord's rate limit ({:.1} s)",
            d.as_secs_f64()
        ),
        None if s
            .forecast
            .is_some_and(|f| f.rate > 0.0 && (f.discord || s.sent == 0)) =>
        {
            // Packs wait for Discord's limit (or nothing moved yet): the lanes' rate is the rate.
            let f = s.forecast.unwrap_or(Forecast {
                rate: 1.0,
                discord: false,
            });
            let left = s.total.saturating_sub(s.done) as f64;
            format!(
                "{}/s ETA {}{}",
                human_bytes(f.rate as u64),
                eta(Duration::from_secs_f64((left / f.rate).min(1e9))),
                if f.discord { " (Discord's limit)" } else { "" }
            )
        }
        None => {
            let secs = s.elapsed.as_secs_f64();
            if s.sent == 0 || secs < 0.5 {
                "-- B/s ETA --".to_string()
            } else {
                let rate = s.sent as f64 / secs;
                let left = s.total.saturating_sub(s.done) as f64;
                format!(
                    "{}/s ETA {}",
                    human_bytes(rate as u64),
                    eta(Duration::from_secs_f64((left / rate).min(1e9)))
                )
            }
        }
    };
    let parts = format!(
        "{}/{} {}",
        s.parts_done,
        s.parts_total,
        if s.parts_total == 1 { "part" } else { "parts" }
    );
    let mut optional: Vec<Option<String>> = vec![Some(bytes), Some(parts)];
    let fixed = |optional: &[Option<String>]| {
        // The label, then pct, status and what is kept, each after a space.
        [pct.as_str(), status.as_str()]
            .iter()
            .map(|t| t.chars().count() + 1)
            .sum::<usize>()
            + optional
                .iter()
                .flatten()
                .map(|t| t.chars().count() + 1)
                .sum::<usize>()
    };
    let label_len = s.label.chars().count();
    let mut bar_width = 0;
    if bar {
        // "[" bar "] " after the label and its space.
        let room = width.saturating_sub(label_len + fixed(&optional) + 3);
        if room >= 8 {
            bar_width = room.min(30);
        }
    }
    for drop in [1, 0] {
        if label_len + fixed(&optional) > width && bar_width == 0 {
            optional[drop] = None;
        }
    }
    let label = truncate(s.label, width.saturating_sub(fixed(&optional)));
    let mut line = label;
    if bar_width > 0 {
        let filled = if s.total == 0 {
            bar_width
        } else {
            (u128::from(s.done.min(s.total)) * bar_width as u128 / u128::from(s.total)) as usize
        };
        let mut b = "=".repeat(filled);
        if filled < bar_width {
            b.push('>');
            b.push_str(&" ".repeat(bar_width - filled - 1));
        }
        line.push_str(&format!(" [{b}]"));
    }
    line.push(' ');
    line.push_str(&pct);
    let [bytes, parts] = [&optional[0], &optional[1]];
    if let Some(b) = bytes {
        line.push(' ');
        line.push_str(b);
    }
    line.push(' ');
    line.push_str(&status);
    if let Some(p) = parts {
        line.push(' ');
        line.push_str(p);
    }
    truncate(&line, width)
}

/// `12.0/48.0 MiB`, or `512.0 KiB/1.2 GiB` when the units differ.
fn byte_counts(done: u64, total: u64) -> String {
    let (d, t) = (human_bytes(done), human_bytes(total));
    match (d.rsplit_once(' '), t.rsplit_once(' ')) {
        (Some((dn, du)), Some((tn, tu))) if du == tu => format!("{dn}/{tn} {tu}"),
        _ => format!("{d}/{t}"),
    }
}

/// `75 s` → `1m15s`.
fn eta(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `s` cut to `width` characters, ending in `…` when cut.
fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut t: String = s.chars().take(width - 1).collect();
    t.push('…');
    t
}

/// The width to draw in: the terminal's less three columns (room for an echoed `^C` after the
/// cursor), at most [`MAX_WIDTH`].
fn draw_width() -> usize {
    let cols = console::Term::stderr()
        .size_checked()
        .map_or(MAX_WIDTH, |(_, c)| usize::from(c));
    cols.saturating_sub(3).clamp(20, MAX_WIDTH)
}

struct State {
    label: String,
    started: Instant,
    bytes: AtomicU64,
    sent: AtomicU64,
    parts: AtomicU64,
    total_bytes: u64,
    total_parts: AtomicU64,
    /// When the last plain line was printed.
    last_plain: Mutex<Option<Instant>>,
    forecast: Mutex<Option<Forecast>>,
}

impl State {
    fn line(&self, width: usize, bar: bool) -> String {
        render_line(
            &Snapshot {
                label: &self.label,
                done: self.bytes.load(Ordering::Relaxed),
                total: self.total_bytes,
                sent: self.sent.load(Ordering::Relaxed),
                elapsed: self.started.elapsed(),
                parts_done: self.parts.load(Ordering::Relaxed),
                parts_total: self.total_parts.load(Ordering::Relaxed),
                waiting: crate::store::rate_limit_wait(),
                forecast: *self.forecast.lock().unwrap_or_else(|e| e.into_inner()),
            },
            width,
            bar,
        )
    }
}

/// Told the bytes done and the total as a transfer moves (the web dashboard's progress
/// events); set around a transfer with [`watched`].
pub type Watch = Arc<dyn Fn(u64, u64) + Send + Sync>;

tokio::task_local! {
    static WATCH: Watch;
}

/// Runs `f` with every [`Progress`] it creates also reporting to `watch`.
pub async fn watched<F: std::future::Future>(watch: Watch, f: F) -> F::Output {
    WATCH.scope(watch, f).await
}

pub struct Progress {
    mode: ProgressMode,
    state: Arc<State>,
    watch: Option<Watch>,
    /// True once the bar is erased; held while the bar is drawn, so nothing draws it again
    /// after it is erased (the thread redrawing it as the rate and a wait's countdown change
    /// stops then).
    finished: Arc<Mutex<bool>>,
}

impl Progress {
    pub fn new(mode: ProgressMode, label: &str, total_bytes: u64) -> Self {
        let state = Arc::new(State {
            label: label.to_string(),
            started: Instant::now(),
            bytes: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            parts: AtomicU64::new(0),
            total_bytes,
            total_parts: AtomicU64::new(0),
            last_plain: Mutex::new(None),
            forecast: Mutex::new(None),
        });
        let finished = Arc::new(Mutex::new(false));
        if mode == ProgressMode::Bar {
            bars().draw(state.line(draw_width(), true));
            let (state2, finished2) = (state.clone(), finished.clone());
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_millis(200));
                let done = finished2.lock().unwrap_or_else(|e| e.into_inner());
                if *done {
                    break;
                }
                bars().draw(state2.line(draw_width(), true));
            });
        }
        Self {
            mode,
            state,
            watch: WATCH.try_with(Arc::clone).ok(),
            finished,
        }
    }

    pub fn set_parts(&self, done: u64, total: u64) {
        self.state.parts.store(done, Ordering::Relaxed);
        self.state.total_parts.store(total, Ordering::Relaxed);
        self.redraw(false);
    }

    /// Sets how many bytes are done, such as those done before this run (skipped parts); they
    /// do not count towards the rate.
    pub fn set_position(&self, bytes: u64) {
        self.state.bytes.store(bytes, Ordering::Relaxed);
        self.redraw(false);
    }

    /// What the scheduler foresees now (`None` to go back to the measured rate).
    pub fn set_forecast(&self, forecast: Option<Forecast>) {
        let mut f = self
            .state
            .forecast
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let changed = *f != forecast;
        *f = forecast;
        drop(f);
        if changed {
            self.redraw(false);
        }
    }

    /// One more part of `bytes` is done in this run.
    pub fn part_done(&self, bytes: u64) {
        self.state.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.state.sent.fetch_add(bytes, Ordering::Relaxed);
        self.state.parts.fetch_add(1, Ordering::Relaxed);
        self.redraw(false);
    }

    /// Erases the bar (or prints the last plain line); later calls do nothing.
    pub fn finish(&self) {
        if self.erase() {
            self.redraw(true);
        }
    }

    /// Erases the bar for good; false if it was already.
    fn erase(&self) -> bool {
        let mut done = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        if *done {
            return false;
        }
        *done = true;
        if self.mode == ProgressMode::Bar {
            bars().clear();
        }
        true
    }

    fn redraw(&self, force: bool) {
        if let Some(watch) = &self.watch {
            watch(
                self.state.bytes.load(Ordering::Relaxed),
                self.state.total_bytes,
            );
        }
        if self.mode == ProgressMode::Bar {
            let done = self.finished.lock().unwrap_or_else(|e| e.into_inner());
            if !*done {
                bars().draw(self.state.line(draw_width(), true));
            }
            return;
        }
        if self.mode != ProgressMode::Plain {
            return;
        }
        let mut last = self
            .state
            .last_plain
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if !force && last.is_some_and(|l| now.duration_since(l) < Duration::from_secs(1)) {
            return;
        }
        *last = Some(now);
        let _ = writeln!(std::io::stderr(), "{}", self.state.line(usize::MAX, false));
    }
}

impl Drop for Progress {
    /// A transfer that ends by an error or a cancel leaves no bar behind.
    fn drop(&mut self) {
        self.erase();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(label: &str) -> Snapshot<'_> {
        Snapshot {
            label,
            done: 0,
            total: 0,
            sent: 0,
            elapsed: Duration::ZERO,
            parts_done: 0,
            parts_total: 0,
            waiting: None,
            forecast: None,
        }
    }

    #[test]
    fn the_line_fits_in_80_columns_whatever_the_numbers() {
        let long = "download ".to_string() + &"a-very-long-file-name".repeat(10);
        for label in ["upload abcdefghjk", long.as_str(), ""] {
            for (done, total, parts) in [
                (0, 0, 0),
                (5, 10, 1),
                (u64::MAX / 3, u64::MAX, 99_999_999),
                (123 << 30, 999 << 40, 12_345),
            ] {
                let forecast = Some(Forecast {
                    rate: 1234.5,
                    discord: true,
                });
                for (waiting, forecast) in [
                    (None, None),
                    (Some(Duration::from_secs_f64(4.25)), None),
                    (None, forecast),
                ] {
                    let s = Snapshot {
                        done,
                        total,
                        sent: done,
                        elapsed: Duration::from_secs(3),
                        parts_done: parts / 2,
                        parts_total: parts,
                        waiting,
                        forecast,
                        ..snap(label)
                    };
                    for bar in [true, false] {
                        for width in [80, 79, 40] {
                            let line = render_line(&s, width, bar);
                            assert!(line.chars().count() <= width, "{width}: {line:?}");
                            assert!(!line.contains('\n'));
                        }
                    }
                }
            }
        }
        let typical = Snapshot {
            done: 12 << 20,
            total: 48 << 20,
            sent: 12 << 20,
            elapsed: Duration::from_secs(6),
            parts_done: 3,
            parts_total: 12,
            ..snap("upload abcdefghjk")
        };
        let line = render_line(&typical, 79, true);
        assert!(line.starts_with("upload abcdefghjk ["), "{line}");
        assert!(
            line.contains("]  25% 12.0/48.0 MiB 2.0 MiB/s ETA 18s"),
            "{line}"
        );
        assert!(line.ends_with("3/12 parts"), "{line}");
    }

    #[test]
    fn the_rate_counts_only_bytes_sent_in_this_run() {
        // A resume: 90 MiB were on Discord already, 2 MiB sent in the 2 s of this run.
        let s = Snapshot {
            done: 92 << 20,
            total: 100 << 20,
            sent: 2 << 20,
            elapsed: Duration::from_secs(2),
            parts_done: 46,
            parts_total: 50,
            ..snap("upload abcdefghjk")
        };
        let line = render_line(&s, 80, false);
        assert!(line.contains("1.0 MiB/s ETA 8s"), "{line}");
        let before_any_byte = Snapshot {
            sent: 0,
            ..s.clone()
        };
        assert!(render_line(&before_any_byte, 80, false).contains("-- B/s ETA --"));
    }

    #[test]
    fn a_rate_limit_wait_is_shown_instead_of_the_rate() {
        let s = Snapshot {
            done: 10 << 20,
            total: 100 << 20,
            sent: 1 << 20,
            elapsed: Duration::from_secs(100),
            parts_done: 1,
            parts_total: 10,
            waiting: Some(Duration::from_millis(4_200)),
            ..snap("upload abcdefghjk")
        };
        for bar in [true, false] {
            let line = render_line(&s, 80, bar);
            assert!(
                line.contains("waiting for Discord's rate limit (4.2 s)"),
                "{line}"
            );
            assert!(!line.contains("ETA") && !line.contains("/s"), "{line}");
        }
        let one = Snapshot {
            parts_done: 0,
            parts_total: 1,
            waiting: None,
            ..s
        };
        assert!(render_line(&one, 80, false).ends_with("0/1 part"));
    }

    #[test]
    fn a_forecast_gives_the_rate_and_eta_from_the_first_second_and_names_discords_limit() {
        let s = Snapshot {
            done: 0,
            total: 100 << 20,
            parts_total: 10,
            forecast: Some(Forecast {
                rate: (1 << 20) as f64,
                discord: true,
            }),
            ..snap("upload abcdefghjk")
        };
        for bar in [true, false] {
            let line = render_line(&s, 80, bar);
            assert!(
                line.contains("1.0 MiB/s ETA 1m40s (Discord's limit)"),
                "{line}"
            );
            assert!(line.chars().count() <= 80, "{line}");
        }
        // Not Discord's limit once bytes move: the measured rate.
        let moving = Snapshot {
            done: 50 << 20,
            sent: 50 << 20,
            elapsed: Duration::from_secs(10),
            forecast: Some(Forecast {
                rate: (1 << 20) as f64,
                discord: false,
            }),
            ..s
        };
        let line = render_line(&moving, 80, false);
        assert!(
            line.contains("5.0 MiB/s ETA 10s") && !line.contains("Discord"),
            "{line}"
        );
    }
}
