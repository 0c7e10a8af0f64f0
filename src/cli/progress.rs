//! A progress bar over every byte of a data directory's logs, for `export` and
//! `verify`.

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::log::files;
use crate::log::recover::ScanProgress;

/// A progress bar on stderr over every byte of `data_dir`'s logs, when stderr is a
/// terminal; hidden otherwise, so that pipes and log files stay clean.
pub fn progress_bar(data_dir: &Path, verb: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(
        Some(files::log_bytes(data_dir)),
        ProgressDrawTarget::stderr(),
    );
    let template = "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(verb);
    bar
}

/// Moves `bar` as shards are scanned one after another.
pub fn advance(bar: &ProgressBar) -> impl FnMut(u16, &ScanProgress) + '_ {
    // Bytes of the shards before the current one, and the current one's size.
    let (mut before, mut current) = (0, None);
    move |shard, p| {
        if let Some((last, total)) = current {
            if last != shard {
                before += total;
            }
        }
        current = Some((shard, p.total_bytes));
        bar.set_position(before + p.bytes);
    }
}
