//! The process logger behind the `log` crate: records are filtered by `RUST_LOG`
//! (env_logger's syntax, default `info`) and written to stderr, as text
//! (`[<UTC time> <LEVEL> <target>] <message>`) or, with `log_format = "json"`, as one
//! JSON object a line for journald or Loki:
//! `{"ts":"2026-11-27T08:15:30.123456Z","level":"INFO","target":"...","shard":0,"msg":"..."}`.
//! The access log ([`access`]) carries its fields as keys of their own in JSON; its
//! refusals are bounded per second (`fold`).
//!
//! On a shard thread a record is formatted into that thread's own buffer, and the
//! buffer is written with one `write` when the shard's timer flushes it (every 100 ms),
//! when it passes 64 KiB, or at once for a warning or an error. So the access log (a
//! line per request) costs no syscall and takes no lock shared with other cores on the
//! request path. Other threads write each line at once. A crash can lose at most the
//! last 100 ms of buffered info lines, never a warning or an error.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::OnceLock;

use log::{Level, Log, Metadata, Record};
use serde::Deserialize;

mod fold;

use fold::{Folded, Folds};

/// How lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// The target of the commands' own lines (an export's count, a backup's shards, the
/// generated admin token's file), whichever module writes them: the binary's name, as
/// `RUST_LOG` selects them.
pub const COMMAND: &str = "epro_ingest";

/// The process's format, set once at start ([`set_format`]); shard threads copy it.
static FORMAT: OnceLock<Format> = OnceLock::new();

const FLUSH_AT: usize = 64 << 10;
/// How often a shard writes its buffered lines: the most a crash can lose of info
/// lines, and the delay before a line shows in `journalctl -f`; ten writes a second
/// per shard cost nothing measurable.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

thread_local! {
    /// `Some` on shard threads: lines wait here for the next flush.
    static BUFFER: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    /// This thread's shard and format (shard threads only).
    static SHARD: Cell<Option<(usize, Format)>> = const { Cell::new(None) };
    /// Whether access lines are on, decided once per shard thread (the filter is fixed).
    static ACCESS_ON: Cell<Option<bool>> = const { Cell::new(None) };
    /// This shard's refusal lines of the current second.
    static FOLDS: RefCell<Folds> = const { RefCell::new(Folds::new()) };
}

/// Sets the line format (from the config) before the shards start.
pub fn set_format(format: Format) {
    let _ = FORMAT.set(format);
}

fn format_now() -> Format {
    SHARD
        .get()
        .map_or_else(|| FORMAT.get().copied().unwrap_or_default(), |(_, f)| f)
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

/// Buffers this thread's lines from now on, each tagged with `shard` (called by each
/// shard at start).
pub fn buffer_this_thread(shard: usize) {
    SHARD.set(Some((shard, FORMAT.get().copied().unwrap_or_default())));
    ACCESS_ON.set(Some(log::log_enabled!(target: "access", Level::Info)));
    BUFFER.with(|b| *b.borrow_mut() = Some(Vec::with_capacity(FLUSH_AT + 4096)));
}

/// Writes this thread's buffered lines, if any, with the lines of refusals folded in
/// seconds now over.
pub fn flush_this_thread() {
    let now = coarse_now_ns();
    FOLDS.with(|folds| {
        if let Ok(mut folds) = folds.try_borrow_mut() {
            folds.due(now / 1_000_000_000, |folded| write_folded(now, folded));
        }
    });
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
    /// The `YYYY-MM-DDTHH:MM:SS` of the current second, for JSON lines.
    static JSON_STAMP: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

fn format(record: &Record<'_>, out: &mut Vec<u8>) {
    if format_now() == Format::Json {
        json_head(out, record.level(), record.target());
        out.extend_from_slice(b",\"msg\":\"");
        let _ = std::fmt::Write::write_fmt(&mut JsonEscaped(out), *record.args());
        out.extend_from_slice(b"\"}\n");
        return;
    }
    text_head(out, coarse_now_ns(), record.level(), record.target());
    let _ = write!(out, "{}", record.args());
    out.push(b'\n');
}

/// `[<time> <LEVEL> <target>] ` with the second of `now` (from the coarse clock),
/// formatted once per second per thread.
fn text_head(out: &mut Vec<u8>, now: u64, level: Level, target: &str) {
    let second = now / 1_000_000_000;
    let (cached, mut stamp) = STAMP.get();
    if cached != second {
        let text = crate::base::clock::format_rfc3339(now);
        stamp[0] = b'[';
        stamp[1..20].copy_from_slice(&text[..19]);
        stamp[20..22].copy_from_slice(b"Z ");
        STAMP.set((second, stamp));
    }
    out.extend_from_slice(&stamp);
    let level = level.as_str();
    out.extend_from_slice(level.as_bytes());
    out.extend_from_slice(&b"      "[level.len().min(5)..]); // padded to 5, then a space
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b"] ");
}

/// `{"ts":"<time to the microsecond>","level":"..","target":"..","shard":N` (no shard
/// off the shards' threads).
fn json_head(out: &mut Vec<u8>, level: Level, target: &str) {
    let now = crate::base::clock::now_ns();
    let second = now / 1_000_000_000;
    // The date and time to the second, formatted once per second per thread.
    let (cached, mut stamp) = JSON_STAMP.get();
    if cached != second {
        stamp.copy_from_slice(&crate::base::clock::format_rfc3339(now)[..19]);
        JSON_STAMP.set((second, stamp));
    }
    out.extend_from_slice(b"{\"ts\":\"");
    out.extend_from_slice(&stamp);
    let micros = (now % 1_000_000_000 / 1_000) as u32 + 1_000_000; // 7 digits: '1' + 6
    out.extend_from_slice(b".");
    out.extend_from_slice(&itoa::Buffer::new().format(micros).as_bytes()[1..]);
    out.extend_from_slice(b"Z\",\"level\":\"");
    out.extend_from_slice(level.as_str().as_bytes());
    out.extend_from_slice(b"\",\"target\":");
    json_str(out, target);
    if let Some((shard, _)) = SHARD.get() {
        out.extend_from_slice(b",\"shard\":");
        out.extend_from_slice(itoa::Buffer::new().format(shard).as_bytes());
    }
}

/// `s` as a JSON string, quotes included.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let _ = std::fmt::Write::write_str(&mut JsonEscaped(out), s);
    out.push(b'"');
}

/// Writes text into a JSON string: quotes, backslashes and control characters escaped.
struct JsonEscaped<'o>(&'o mut Vec<u8>);

impl std::fmt::Write for JsonEscaped<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for &b in s.as_bytes() {
            match b {
                b'"' => self.0.extend_from_slice(b"\\\""),
                b'\\' => self.0.extend_from_slice(b"\\\\"),
                b'\n' => self.0.extend_from_slice(b"\\n"),
                0..=0x1f => {
                    let _ = write!(self.0, "\\u{b:04x}");
                }
                _ => self.0.push(b),
            }
        }
        Ok(())
    }
}

/// A client address as the access log writes it, formatted once per connection
/// (`-` when unknown), and whether it is a trusted proxy's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    text: [u8; 48],
    len: u8,
    /// A proxy in `trusted_proxies`: its requests' `X-Forwarded-For` names the client.
    pub proxy: bool,
}

impl Peer {
    pub fn new(addr: Option<SocketAddr>) -> Peer {
        Peer::written(addr.as_ref().map(|a| a as &dyn std::fmt::Display))
    }

    /// A client as a trusted proxy named it: an address without a port.
    pub fn forwarded(ip: std::net::IpAddr) -> Peer {
        Peer::written(Some(&ip))
    }

    fn written(shown: Option<&dyn std::fmt::Display>) -> Peer {
        let mut peer = Peer {
            text: [0; 48],
            len: 0,
            proxy: false,
        };
        let mut cursor = std::io::Cursor::new(&mut peer.text[..]);
        let written = match shown {
            Some(shown) => write!(cursor, "{shown}").is_ok(),
            None => false,
        };
        peer.len = if written { cursor.position() as u8 } else { 0 };
        peer
    }

    pub fn as_str(&self) -> &str {
        match std::str::from_utf8(&self.text[..usize::from(self.len)]) {
            Ok(text) if !text.is_empty() => text,
            _ => "-",
        }
    }
}

/// One request of the access log (target `access`, level info): never a token or a
/// body, only these fields.
pub struct Access<'a> {
    pub method: &'a str,
    /// The route template (`unmatched` for none); the text line shows the raw path.
    pub route: &'a str,
    pub path: &'a str,
    pub status: &'a str,
    pub bytes: usize,
    pub micros: u64,
    pub principal: &'a str,
    pub peer: &'a str,
    pub request_id: &'a str,
}

/// Whether access lines are written at all (`RUST_LOG=access=off` silences them).
pub fn access_enabled() -> bool {
    ACCESS_ON
        .get()
        .unwrap_or_else(|| log::log_enabled!(target: "access", Level::Info))
}

/// What became of a request's access line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logged {
    Written,
    /// A refusal past this second's lines for its status: counted in a folded line.
    Folded,
    /// The access log is off.
    Off,
}

/// Writes one access log line, or folds a refusal's (`fold`).
pub fn access(a: &Access<'_>) -> Logged {
    if !access_enabled() {
        return Logged::Off;
    }
    let now = coarse_now_ns();
    let code = <[u8; 3]>::try_from(a.status.as_bytes()).unwrap_or(*b"000");
    if fold::is_refusal(code) && folded(code, now) {
        return Logged::Folded;
    }
    emit(false, |out| {
        if format_now() == Format::Json {
            access_json(out, a);
        } else {
            access_text(out, a, now);
        }
    });
    Logged::Written
}

/// Whether a refusal with status `code` is folded instead of written; writes the
/// folded line that falls due.
#[inline]
fn folded(code: [u8; 3], now: u64) -> bool {
    let taken = FOLDS.with(|folds| {
        let mut folds = folds.try_borrow_mut().ok()?;
        Some(folds.take(code, now / 1_000_000_000))
    });
    let Some((line, due)) = taken else {
        return false;
    };
    if let Some(folded) = due {
        write_folded(now, folded);
    }
    !line
}

/// An access line as a JSON object.
#[inline]
fn access_json(out: &mut Vec<u8>, a: &Access<'_>) {
    json_head(out, Level::Info, "access");
    for (key, value) in [
        (&b",\"method\":"[..], a.method),
        (b",\"route\":", a.route),
        (b",\"path\":", a.path),
    ] {
        out.extend_from_slice(key);
        json_str(out, value);
    }
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(a.status.as_bytes());
    out.extend_from_slice(b",\"bytes\":");
    out.extend_from_slice(itoa::Buffer::new().format(a.bytes).as_bytes());
    out.extend_from_slice(b",\"us\":");
    out.extend_from_slice(itoa::Buffer::new().format(a.micros).as_bytes());
    for (key, value) in [
        (&b",\"principal\":"[..], a.principal),
        (b",\"peer\":", a.peer),
        (b",\"request_id\":", a.request_id),
    ] {
        out.extend_from_slice(key);
        json_str(out, value);
    }
    out.extend_from_slice(b"}\n");
}

/// An access line as text, put together piece by piece: a line per request, so no
/// formatting machinery.
#[inline]
fn access_text(out: &mut Vec<u8>, a: &Access<'_>, now: u64) {
    access_head(out, now);
    for part in [
        a.method.as_bytes(),
        b" ",
        a.path.as_bytes(),
        b" ",
        a.status.as_bytes(),
        b" ",
        itoa::Buffer::new().format(a.bytes).as_bytes(),
        b"B ",
        itoa::Buffer::new().format(a.micros).as_bytes(),
        b"us principal=",
        a.principal.as_bytes(),
        b" peer=",
        a.peer.as_bytes(),
        b" id=",
        a.request_id.as_bytes(),
        b"\n",
    ] {
        out.extend_from_slice(part);
    }
}

thread_local! {
    /// `[<time> INFO  access] shard=N ` of the current second: one copy per line.
    static ACCESS_HEAD: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

/// An access line's head, as [`text_head`] and `shard=N ` write it, formatted once a
/// second per thread.
fn access_head(out: &mut Vec<u8>, now: u64) {
    let second = now / 1_000_000_000;
    ACCESS_HEAD.with(|head| {
        let mut head = head.borrow_mut();
        if head.0 != second {
            let text = &mut head.1;
            text.clear();
            text_head(text, now, Level::Info, "access");
            text.extend_from_slice(b"shard=");
            text.extend_from_slice(itoa::Buffer::new().format(this_shard()).as_bytes());
            text.push(b' ');
            head.0 = second;
        }
        out.extend_from_slice(&head.1);
    });
}

fn this_shard() -> usize {
    SHARD.get().map_or(0, |(shard, _)| shard)
}

/// The line of a second's folded refusals of one status:
/// `... and 12345 more 401 in 2026-11-27T08:15:30Z`.
fn write_folded(now: u64, folded: Folded) {
    let second = crate::base::clock::format_rfc3339(folded.second * 1_000_000_000);
    let code = std::str::from_utf8(&folded.code).unwrap_or("000");
    let mut count = itoa::Buffer::new();
    let count = count.format(folded.count);
    let parts = [
        "... and ",
        count,
        " more ",
        code,
        " in ",
        std::str::from_utf8(&second[..19]).unwrap_or("-"),
        "Z",
    ];
    emit(false, |out| {
        if format_now() == Format::Json {
            json_head(out, Level::Info, "access");
            for (key, value) in [(&b",\"status\":"[..], code), (b",\"folded\":", count)] {
                out.extend_from_slice(key);
                out.extend_from_slice(value.as_bytes());
            }
            out.extend_from_slice(b",\"msg\":\"");
            parts
                .iter()
                .for_each(|p| out.extend_from_slice(p.as_bytes()));
            out.extend_from_slice(b"\"}\n");
            return;
        }
        text_head(out, now, Level::Info, "access");
        out.extend_from_slice(b"shard=");
        out.extend_from_slice(itoa::Buffer::new().format(this_shard()).as_bytes());
        out.push(b' ');
        parts
            .iter()
            .for_each(|p| out.extend_from_slice(p.as_bytes()));
        out.push(b'\n');
    });
}

/// Formats a line with `f` into this thread's buffer (written at the next flush, or
/// at once when `urgent` or full), or, off the shards, straight to stderr.
fn emit(urgent: bool, f: impl FnOnce(&mut Vec<u8>)) {
    let mut f = Some(f);
    let buffered = BUFFER.with(|b| match b.try_borrow_mut().ok().as_deref_mut() {
        Some(Some(buf)) => {
            if let Some(f) = f.take() {
                f(buf);
            }
            if urgent || buf.len() >= FLUSH_AT {
                write_out(buf);
            }
            true
        }
        _ => false,
    });
    if let (false, Some(f)) = (buffered, f) {
        let mut line = Vec::with_capacity(256);
        f(&mut line);
        write_out(&mut line);
    }
}

fn coarse_now_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_REALTIME_COARSE)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or_else(|_| crate::base::clock::now_ns())
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        emit(record.level() <= Level::Warn, |out| format(record, out));
    }

    fn flush(&self) {
        flush_this_thread();
    }
}
