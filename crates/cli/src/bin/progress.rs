//! The progress bar of `smartsock send`: drawn on stderr only when stderr is
//! a terminal, so scripts and pipes see nothing new.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanCount, ProgressBar, ProgressState, ProgressStyle};

const MESSAGES: &str = "{wide_bar} {human_pos}/{human_len} messages ({rate}, {eta} left)";
const BYTES: &str = "{wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)";
const SPINNER: &str = "{spinner} {human_pos} messages ({rate})";

/// How far a send has got: a bar when the total is known, a spinner with a
/// count when it is not, nothing when stderr is not a terminal.
pub(crate) struct Progress {
    /// `None` when nothing is drawn, so that counting costs nothing then.
    bar: Option<ProgressBar>,
    /// Whether the bar counts bytes of input (a file on stdin) rather than messages.
    counts_bytes: bool,
}

impl Progress {
    /// For `total` messages known in advance (the arguments, `--count` times).
    /// Nothing is drawn unless `wanted` (`--verbose` notes would tear the bar).
    pub(crate) fn messages(total: u64, wanted: bool) -> Self {
        Self::draw(wanted, || ProgressBar::new(total), MESSAGES, false)
    }

    /// For the lines of standard input: a bar over its bytes when it is a
    /// file (`< lines.txt`), whose size is known; otherwise a spinner.
    pub(crate) fn stdin(wanted: bool) -> Self {
        match stdin_file_size() {
            Some(size) => Self::draw(wanted, || ProgressBar::new(size), BYTES, true),
            None => Self::draw(wanted, ProgressBar::new_spinner, SPINNER, false),
        }
    }

    fn draw(wanted: bool, make: impl FnOnce() -> ProgressBar, template: &str, counts_bytes: bool) -> Self {
        if !wanted || !std::io::stderr().is_terminal() {
            return Self { bar: None, counts_bytes };
        }
        // The templates are constants, checked by a test below.
        let style = ProgressStyle::with_template(template)
            .expect("a valid template")
            .with_key("rate", rate)
            .progress_chars("=> ");
        let bar = make().with_style(style);
        // Redraws while a send waits for a peer, so the spinner shows life.
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar: Some(bar), counts_bytes }
    }

    /// One message sent, which was `bytes` bytes of input.
    pub(crate) fn sent(&self, bytes: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(if self.counts_bytes { bytes as u64 } else { 1 });
        }
    }

    /// Leaves the final count on screen (or clears it, after a failure, so
    /// that the error message stands alone).
    pub(crate) fn finish(&self, succeeded: bool) {
        match &self.bar {
            Some(bar) if succeeded => bar.finish(),
            Some(bar) => bar.finish_and_clear(),
            None => {}
        }
    }
}

/// Messages per second as a whole number (indicatif's `per_sec` shows four
/// decimals, noise at these rates).
fn rate(state: &ProgressState, out: &mut dyn std::fmt::Write) {
    // A write into the bar's own line buffer cannot fail.
    let _ = write!(out, "{}/s", HumanCount(state.per_sec() as u64));
}

/// The size of standard input when it is a regular file.
#[cfg(unix)]
fn stdin_file_size() -> Option<u64> {
    use std::os::fd::AsFd;
    let file = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned().ok()?);
    let metadata = file.metadata().ok()?;
    metadata.is_file().then_some(metadata.len())
}

#[cfg(not(unix))]
fn stdin_file_size() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_parse() {
        for template in [MESSAGES, BYTES, SPINNER] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn nothing_is_drawn_when_stderr_is_not_a_terminal() {
        // Under the test harness stderr is captured, not a terminal.
        if !std::io::stderr().is_terminal() {
            assert!(Progress::messages(10, true).bar.is_none());
        }
        assert!(Progress::messages(10, false).bar.is_none());
    }
}
