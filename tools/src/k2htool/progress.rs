//! Progress bars for long k2htool runs: drawn on stderr, and only when stderr is a terminal,
//! so pipes, logs and tests see clean output.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the bar is redrawn at most.
pub const REFRESH_PER_SECOND: u8 = 10;

/// A bar of `total` units (records or bytes) labelled `what`; hidden unless stderr is a TTY.
pub fn bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(
        Some(total),
        ProgressDrawTarget::stderr_with_hz(REFRESH_PER_SECOND),
    );
    // The template is a constant; if indicatif ever refused it, a plain bar is still fine.
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(1000 / u64::from(REFRESH_PER_SECOND)));
    bar
}
