//! Progress of long commands (`orgd generate`, `orgd audit export|verify`,
//! `orgd migrate`): a bar with rate and ETA on a terminal; otherwise a plain
//! line every few seconds (and one at the end), so logs of unattended runs
//! say how far they got.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// What a long task tells about its progress.
pub trait Reporter: Sync {
    /// A new phase of `total` units (0 when unknown).
    fn phase(&self, name: &str, total: u64);
    /// `n` more units of the current phase are done.
    fn advance(&self, _n: u64) {}
}

/// Phase names alone (e.g. `|phase| eprintln!("{phase}")`).
impl<F: Fn(&str) + Sync> Reporter for F {
    fn phase(&self, name: &str, _total: u64) {
        self(name)
    }
}

/// How often plain lines are written.
const EVERY: Duration = Duration::from_secs(5);

struct Phase {
    name: String,
    total: u64,
    started: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

/// Progress on stderr: a bar on a terminal, periodic lines otherwise.
pub struct Progress {
    terminal: bool,
    done: AtomicU64,
    phase: Mutex<Option<Phase>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            done: AtomicU64::new(0),
            phase: Mutex::new(None),
        }
    }

    /// Ends the current phase with a last line (or a finished bar).
    pub fn finish(&self) {
        let Ok(mut phase) = self.phase.lock() else { return };
        if let Some(p) = phase.take() {
            let done = self.done.load(Ordering::Relaxed);
            // A finished bar gives way to the same summary line as without
            // a terminal.
            if let Some(bar) = &p.bar {
                bar.finish_and_clear();
            }
            eprintln!("{}", line(&p, done, true));
        }
    }
}

fn line(p: &Phase, done: u64, last: bool) -> String {
    let secs = p.started.elapsed().as_secs_f64().max(1e-9);
    let rate = done as f64 / secs;
    if p.total == 0 && done == 0 {
        // A phase without units (e.g. refreshing statistics): its time only.
        return format!(
            "[{secs:>6.1}s] {}: {}",
            p.name,
            if last { "done" } else { "running" }
        );
    }
    let mut text = format!("[{:>6.1}s] {}: {done}", secs, p.name);
    if p.total > 0 {
        text.push_str(&format!(
            "/{} ({:.0}%)",
            p.total,
            100.0 * done as f64 / p.total as f64
        ));
    }
    text.push_str(&format!(", {rate:.0}/s"));
    if !last && p.total > done && rate > 0.0 {
        text.push_str(&format!(", ETA {:.0}s", (p.total - done) as f64 / rate));
    }
    if last {
        text.push_str(", done");
    }
    text
}

impl Reporter for Progress {
    fn phase(&self, name: &str, total: u64) {
        self.finish();
        self.done.store(0, Ordering::Relaxed);
        let bar = self.terminal.then(|| {
            let (bar, template) = if total > 0 {
                (
                    ProgressBar::new(total),
                    "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} {rate} ETA {eta}",
                )
            } else {
                (
                    ProgressBar::new_spinner(),
                    "{msg} [{elapsed_precise}] {spinner} {pos} {rate}",
                )
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}/s", state.per_sec());
                    },
                ));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar.set_message(name.to_owned());
            bar
        });
        let now = Instant::now();
        if bar.is_none() {
            eprintln!(
                "{name}: starting{}",
                if total > 0 {
                    format!(" ({total})")
                } else {
                    String::new()
                }
            );
        }
        if let Ok(mut phase) = self.phase.lock() {
            *phase = Some(Phase {
                name: name.to_owned(),
                total,
                started: now,
                last_line: now,
                bar,
            });
        }
    }

    fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let Ok(mut phase) = self.phase.lock() else { return };
        let Some(p) = phase.as_mut() else { return };
        match &p.bar {
            Some(bar) => bar.set_position(done),
            None if p.last_line.elapsed() >= EVERY => {
                p.last_line = Instant::now();
                eprintln!("{}", line(p, done, false));
            }
            None => {}
        }
    }
}

/// A reader that reports the bytes read through it.
pub struct Reading<'a, R> {
    inner: R,
    progress: &'a dyn Reporter,
}

impl<'a, R> Reading<'a, R> {
    pub fn new(inner: R, progress: &'a dyn Reporter) -> Self {
        Self { inner, progress }
    }
}

impl<R: std::io::Read> std::io::Read for Reading<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_give_counts_rate_and_eta() {
        let p = Phase {
            name: "products".into(),
            total: 1_000,
            started: Instant::now() - Duration::from_secs(10),
            last_line: Instant::now(),
            bar: None,
        };
        let text = line(&p, 250, false);
        assert!(text.contains("products: 250/1000 (25%)"), "{text}");
        assert!(text.contains("/s") && text.contains("ETA 3"), "{text}");
        assert!(line(&p, 1_000, true).ends_with("done"));
    }

    #[derive(Default)]
    struct Counted(AtomicU64);
    impl Reporter for Counted {
        fn phase(&self, _: &str, _: u64) {}
        fn advance(&self, n: u64) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[test]
    fn reading_reports_every_byte() {
        use std::io::Read;
        let counted = Counted::default();
        let mut out = String::new();
        Reading::new(&b"line one\nline two\n"[..], &counted)
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out.len(), 18);
        assert_eq!(counted.0.load(Ordering::Relaxed), 18);
    }
}
