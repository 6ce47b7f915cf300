//! Progress bars: shown on a terminal, hidden with `--quiet`, `--json` or when
//! stderr is not a terminal (CI logs stay readable).
//!
//! Every visible bar belongs to one process-wide MultiProgress, so artifacts
//! written side by side each keep their own line, and [`eprint_line`] prints
//! log lines above the bars instead of through them.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::formats::Progress;

pub struct Bar(ProgressBar);

impl Bar {
    /// A byte-counting bar with `total` bytes; hidden when `visible` is false.
    pub fn bytes(message: &str, total: u64, visible: bool) -> Bar {
        let bar = attach(ProgressBar::new(total), visible);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(bar)
    }

    /// A spinner for steps whose size is unknown.
    pub fn spinner(message: &str, visible: bool) -> Bar {
        let bar = attach(ProgressBar::no_length(), visible);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("static template"),
        );
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
        if let Some(bars) = BARS.get() {
            bars.remove(&self.0);
        }
    }
}

impl Progress for Bar {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn set_total(&self, bytes: u64) {
        self.0.set_length(bytes);
    }
}

static BARS: OnceLock<MultiProgress> = OnceLock::new();

fn attach(bar: ProgressBar, visible: bool) -> ProgressBar {
    if visible && std::io::stderr().is_terminal() {
        BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
            .add(bar)
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
        bar
    }
}

/// Prints a line on stderr, above the progress bars when some are drawn.
pub fn eprint_line(line: &str) {
    match BARS.get() {
        Some(bars) => bars.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}
