//! Progress bars: shown on a terminal, hidden with `--quiet`, `--json` or when
//! stderr is not a terminal (CI logs stay readable).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::formats::Progress;

pub struct Bar(ProgressBar);

impl Bar {
    /// A byte-counting bar with `total` bytes; hidden when `visible` is false.
    pub fn bytes(message: &str, total: u64, visible: bool) -> Bar {
        let bar = ProgressBar::with_draw_target(Some(total), draw_target(visible));
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
        let bar = ProgressBar::with_draw_target(None, draw_target(visible));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("static template"),
        );
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

fn draw_target(visible: bool) -> ProgressDrawTarget {
    if visible && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}
