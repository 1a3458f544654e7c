//! What `trove` prints: progress bars on a terminal (bytes, rate, ETA, per
//! file and in total), plain lines otherwise, nothing with `--quiet`, JSON
//! with `--json`; and the human formats of sizes and times.

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use trove_client::ProgressFn;

/// How results and progress are shown.
pub struct Ui {
    pub quiet: bool,
    pub json: bool,
    /// Progress bars (stderr is a terminal, and neither quiet nor JSON).
    bars: Option<MultiProgress>,
}

impl Ui {
    pub fn new(quiet: bool, json: bool) -> Ui {
        let bars = (!quiet && !json && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Ui { quiet, json, bars }
    }

    /// A status line on stderr (above the bars), unless quiet or JSON.
    pub fn note(&self, line: &str) {
        if self.quiet || self.json {
            return;
        }
        match &self.bars {
            Some(m) => {
                let _ = m.println(line);
            }
            None => tell(line),
        }
    }

    /// A result on stdout (not for JSON mode, which prints documents).
    pub fn out(&self, line: &str) {
        if !self.quiet && !self.json {
            trove_common::process::say(format_args!("{line}"));
        }
    }

    /// Prints a JSON document on stdout in `--json` mode.
    pub fn json(&self, value: &impl serde::Serialize) {
        if self.json {
            let document = serde_json::to_string(value).expect("serializable");
            trove_common::process::say(format_args!("{document}"));
        }
    }

    /// Prints a JSON document on stderr in `--json` mode: the report of a
    /// command whose stdout carries a value (`get` to stdout), which the
    /// report must not be mixed into.
    pub fn json_to_stderr(&self, value: &impl serde::Serialize) {
        if self.json {
            tell(&serde_json::to_string(value).expect("serializable"));
        }
    }

    /// A bar for one transfer of `len` bytes (unknown: a spinner), or
    /// nothing when not on a terminal.
    pub fn transfer(&self, name: &str, len: Option<u64>) -> Option<ProgressBar> {
        let m = self.bars.as_ref()?;
        let bar = match len {
            Some(len) => ProgressBar::new(len).with_style(
                ProgressStyle::with_template(
                    "{msg:30!} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta:>4} [{wide_bar}]",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg:30!} {bytes:>10} {binary_bytes_per_sec:>12}")
                    .expect("valid template"),
            ),
        };
        bar.set_message(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(m.add(bar))
    }

    /// The total bar of a bulk copy: files and bytes.
    pub fn total(&self, files: u64, bytes: u64) -> Option<ProgressBar> {
        let m = self.bars.as_ref()?;
        let bar = ProgressBar::new(bytes).with_style(
            ProgressStyle::with_template(
                "total {msg} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta:>4} [{wide_bar}]",
            )
            .expect("valid template")
            .progress_chars("#> "),
        );
        bar.set_message(format!("0/{files} files"));
        Some(m.insert(0, bar))
    }

    /// Runs one transfer of `len` bytes with its own bar, also moving
    /// `total` (a bulk copy's), and clears the bar at the end. `run` gets
    /// the progress callback to hand to the client.
    pub async fn with_bar<T, F, Fut>(
        &self,
        name: &str,
        len: Option<u64>,
        total: &Option<ProgressBar>,
        run: F,
    ) -> T
    where
        F: FnOnce(Option<ProgressFn>) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let bar = self.transfer(name, len);
        let out = run(progress(&bar, total)).await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        out
    }
}

/// A line on stderr. A reader that has gone away (`trove … 2>&1 | head
/// -1`) ends the process quietly with the status a shell gives a command
/// `SIGPIPE` ended (141), as [`trove_common::process::say`] does for
/// stdout, where `eprintln!` would panic (exit 101). Every line `trove`
/// writes to stderr goes through here.
pub fn tell(line: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    if let Err(e) = err.write_all(line.as_bytes()).and_then(|()| err.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        // Nowhere left to say it; failing the command over it would hide
        // its real outcome.
    }
}

/// `text` with its control characters escaped (`\n`, `\r`, `\t`,
/// `\x1b`, `\u{85}`…) and nothing else changed: a key printed for a person
/// can neither look like two lines nor drive the terminal (a key may hold
/// any UTF-8 text, escapes and NUL included). `--json` prints keys
/// exactly.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A progress callback feeding one file's bar and the total (nothing when
/// there are no bars).
fn progress(file: &Option<ProgressBar>, total: &Option<ProgressBar>) -> Option<ProgressFn> {
    if file.is_none() && total.is_none() {
        return None;
    }
    let (file, total) = (file.clone(), total.clone());
    let last = AtomicU64::new(0);
    Some(Arc::new(move |n| {
        if let Some(b) = &file {
            b.set_position(n);
        }
        if let Some(t) = &total {
            // A retry starts again from 0: take back what it had counted.
            let prev = last.swap(n, Ordering::Relaxed);
            if n >= prev {
                t.inc(n - prev);
            } else {
                t.set_position(t.position().saturating_sub(prev - n));
            }
        }
    }))
}

/// An error and its causes, joined by `: ` as anyhow's `{:#}` does, but
/// without a cause whose text is already said: many errors, ours among
/// them (`trove_client::Error::Io`, `InvalidKey`), print their source in
/// their own message *and* return it from `source()`, so `{:#}` would say
/// it twice ("…rename it: …rename it"). Every error `trove` prints goes
/// through here, and comes out [`printable`]: errors name keys, and a
/// key's control characters must not reach the terminal.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        let said = said.trim_end();
        if text.contains(said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(said);
    }
    printable(&text).into_owned()
}

/// `1.5 MiB`
pub fn bytes(n: u64) -> String {
    HumanBytes(n).to_string()
}

/// Unix ms as `2026-11-22T08:52:09Z` (UTC).
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `12.3 ms`
pub fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A retry's wait: `37 ms` under a second (a jittered backoff is often
/// that short; `0.0s` read as no wait at all), `2.4 s` above.
pub fn wait(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_says_each_cause_once() {
        let not_a_dir = || std::io::Error::from_raw_os_error(20);
        let io = trove_client::Error::Io {
            context: "cannot rename into dl/a/".into(),
            source: not_a_dir(),
        };
        assert_eq!(
            error_text(&anyhow::Error::new(io)),
            format!("cannot rename into dl/a/: {}", not_a_dir())
        );
        let key = trove_client::Error::InvalidKey {
            key: "/odd/a/../b".into(),
            source: trove_common::key::KeyError::DotSegment,
        };
        let text = error_text(&anyhow::Error::new(key).context("cannot upload v1"));
        assert_eq!(text.matches("rename it").count(), 1, "{text}");
        assert!(
            text.starts_with("cannot upload v1: `/odd/a/../b` is not a valid key"),
            "{text}"
        );
        // Causes their parents do not repeat are all kept.
        let chain = anyhow::anyhow!("disk full")
            .context("cannot write x")
            .context("cp failed");
        assert_eq!(error_text(&chain), "cp failed: cannot write x: disk full");
    }

    #[test]
    fn control_characters_are_escaped_for_people() {
        assert_eq!(printable("/photos/a b/ü.jpg"), "/photos/a b/ü.jpg");
        assert_eq!(printable("/k2/nl\nx"), "/k2/nl\\nx");
        assert_eq!(printable("/esc/\x1b[31mRED\x1b[0m"), "/esc/\\x1b[31mRED\\x1b[0m");
        assert_eq!(printable("a\tb\rc\x00\x7f\u{85}"), "a\\tb\\rc\\x00\\x7f\\u{85}");
        assert_eq!(printable("back\\slash"), "back\\slash", "only control characters");
    }

    #[test]
    fn formats_times() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(time(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
