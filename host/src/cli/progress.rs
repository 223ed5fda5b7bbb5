//! A progress bar on stderr for replays long enough to wait for.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A replay shorter than this finishes before a bar would help.
const SHOW_AFTER: Duration = Duration::from_secs(2);

/// Counts ticks; draws only on a terminal, only when wanted, and only once the
/// replay has run for [`SHOW_AFTER`], so quick replays and pipes stay clean.
pub struct Bar {
    bar: Option<ProgressBar>,
    /// When the replay began, until the bar is shown.
    hidden_since: Mutex<Option<Instant>>,
}

impl Bar {
    /// A bar over `total` ticks; `wanted` false (for example with `--json`) draws nothing.
    pub fn new(total: u64, wanted: bool) -> Self {
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
            if let Ok(style) =
                ProgressStyle::with_template("replaying {wide_bar} {percent:>3}% eta {eta}")
            {
                bar.set_style(style);
            }
            bar
        });
        Bar {
            bar,
            hidden_since: Mutex::new(Some(Instant::now())),
        }
    }

    /// Records `ticks` more finished ticks.
    pub fn advance(&self, ticks: u64) {
        let Some(bar) = &self.bar else { return };
        bar.inc(ticks);
        let mut hidden = self
            .hidden_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if hidden.is_some_and(|since| since.elapsed() >= SHOW_AFTER) {
            *hidden = None;
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Clears the bar before the report is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
