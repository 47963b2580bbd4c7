//! Progress bars for long k2htool runs: drawn on stderr, and only when stderr is a terminal,
//! so pipes, logs and tests see clean output.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the bar is redrawn at most.
pub const REFRESH_PER_SECOND: u8 = 10;

/// What a bar counts, for its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Records or operations.
    Items,
    /// Bytes of input.
    Bytes,
}

/// A bar of `total` items labelled `what`; hidden unless stderr is a TTY.
pub fn bar(total: u64, what: &str) -> ProgressBar {
    bar_of(total, what, Unit::Items)
}

/// A bar of `total` `unit`s labelled `what`; hidden unless stderr is a TTY.
pub fn bar_of(total: u64, what: &str, unit: Unit) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(
        Some(total),
        ProgressDrawTarget::stderr_with_hz(REFRESH_PER_SECOND),
    );
    // The template is a constant; if indicatif ever refused it, a plain bar is still fine.
    let template = match unit {
        Unit::Items => "{msg:>10} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} (eta {eta})",
        Unit::Bytes => "{msg:>10} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(1000 / u64::from(REFRESH_PER_SECOND)));
    bar
}

/// A spinner labelled `what` for work whose total is unknown (the engine's verifier reports no
/// progress); hidden unless stderr is a TTY.
pub fn spinner(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let spinner =
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(REFRESH_PER_SECOND));
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]") {
        spinner.set_style(style);
    }
    spinner.set_message(what.to_string());
    spinner.enable_steady_tick(Duration::from_millis(1000 / u64::from(REFRESH_PER_SECOND)));
    spinner
}
