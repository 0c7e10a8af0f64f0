//! The process logger behind the `log` crate: records are filtered by `RUST_LOG`
//! (env_logger's syntax, default `info`) and written to stderr as
//! `[<UTC time> <LEVEL> <target>] <message>`.
//!
//! On a shard thread a record is formatted into that thread's own buffer, and the
//! buffer is written with one `write` when the shard's timer flushes it (every 100 ms),
//! when it passes 64 KiB, or at once for a warning or an error. So the access log (a
//! line per request) costs no syscall and takes no lock shared with other cores on the
//! request path. Other threads write each line at once. A crash can lose at most the
//! last 100 ms of buffered info lines, never a warning or an error.

use std::cell::{Cell, RefCell};
use std::io::Write;

use log::{Level, Log, Metadata, Record};

const FLUSH_AT: usize = 64 << 10;
/// How often a shard writes its buffered lines: the most a crash can lose of info
/// lines, and the delay before a line shows in `journalctl -f`; ten writes a second
/// per shard cost nothing measurable.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

thread_local! {
    /// `Some` on shard threads: lines wait here for the next flush.
    static BUFFER: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

struct Logger {
    filter: env_filter::Filter,
}

/// Installs the logger; `RUST_LOG` as env_logger reads it, `info` when unset.
pub fn init() {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let filter = env_filter::Builder::new().parse(&spec).build();
    let max = filter.filter();
    if log::set_boxed_logger(Box::new(Logger { filter })).is_ok() {
        log::set_max_level(max);
    }
}

/// Buffers this thread's lines from now on (called by each shard at start).
pub fn buffer_this_thread() {
    BUFFER.with(|b| *b.borrow_mut() = Some(Vec::with_capacity(FLUSH_AT + 4096)));
}

/// Writes this thread's buffered lines, if any.
pub fn flush_this_thread() {
    BUFFER.with(|b| {
        if let Some(buf) = b.borrow_mut().as_mut() {
            write_out(buf);
        }
    });
}

fn write_out(buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        let _ = std::io::stderr().lock().write_all(buf);
        buf.clear();
    }
}

thread_local! {
    /// The formatted `[YYYY-MM-DDTHH:MM:SSZ ` prefix of the current second.
    static STAMP: Cell<(u64, [u8; 22])> = const { Cell::new((u64::MAX, [0; 22])) };
}

fn format(record: &Record<'_>, out: &mut Vec<u8>) {
    // Second precision from the coarse clock, formatted once per second per thread.
    let now = coarse_now_ns();
    let second = now / 1_000_000_000;
    let (cached, mut stamp) = STAMP.get();
    if cached != second {
        let text = crate::clock::format_rfc3339(now);
        stamp[0] = b'[';
        stamp[1..20].copy_from_slice(&text[..19]);
        stamp[20..22].copy_from_slice(b"Z ");
        STAMP.set((second, stamp));
    }
    out.extend_from_slice(&stamp);
    let _ = write!(
        out,
        "{:<5} {}] {}",
        record.level(),
        record.target(),
        record.args()
    );
    out.push(b'\n');
}

fn coarse_now_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_REALTIME_COARSE)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or_else(|_| crate::clock::now_ns())
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let urgent = record.level() <= Level::Warn;
        let buffered = BUFFER.with(|b| match b.try_borrow_mut().ok().as_deref_mut() {
            Some(Some(buf)) => {
                format(record, buf);
                if urgent || buf.len() >= FLUSH_AT {
                    write_out(buf);
                }
                true
            }
            _ => false,
        });
        if !buffered {
            let mut line = Vec::with_capacity(256);
            format(record, &mut line);
            write_out(&mut line);
        }
    }

    fn flush(&self) {
        flush_this_thread();
    }
}
