//! Standard output for the offline commands, whose reader may leave early
//! (`epro-ingest openapi | head -1`). Once a write finds the pipe closed, the output
//! stops and the process ends quietly with status 141 (128 + SIGPIPE), the status a
//! shell reports for a tool that a closed pipe stopped; another write error stops the
//! output too and fails the command.

use std::io::{self, StdoutLock, Write};
use std::sync::Mutex;

use crate::base::exit::{Exit, Fatal};

/// The exit status once stdout's reader has gone: 128 + SIGPIPE.
pub const CLOSED_STATUS: u8 = 141;

/// Why stdout's output stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The reader went away (EPIPE): it had what it wanted.
    Closed,
    /// Another write error (a full disk behind a redirect, say), as text.
    Failed(String),
}

/// The first write error on stdout, for the exit status.
static STOPPED: Mutex<Option<Stopped>> = Mutex::new(None);

/// Whether, and why, stdout's output stopped.
pub fn stopped() -> Option<Stopped> {
    STOPPED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn note(e: &io::Error) {
    let mut stopped = STOPPED.lock().unwrap_or_else(|p| p.into_inner());
    if stopped.is_none() {
        *stopped = Some(match e.kind() {
            io::ErrorKind::BrokenPipe => Stopped::Closed,
            _ => Stopped::Failed(e.to_string()),
        });
    }
}

/// Writes `text` to stdout; nothing once an earlier write stopped the output.
pub fn print(text: &str) {
    if stopped().is_some() {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        note(&e);
    }
}

/// Stdout for a command that streams into a writer (`export`): a write error is
/// returned to the writer and noted here for the exit status.
pub struct Stream(StdoutLock<'static>);

/// Stdout, locked for a stream of writes.
pub fn stream() -> Stream {
    Stream(io::stdout().lock())
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).inspect_err(note)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().inspect_err(note)
    }
}

/// An error if a write to stdout failed for another reason than its reader leaving.
pub fn written() -> Result<(), Fatal> {
    match stopped() {
        Some(Stopped::Failed(e)) => Err(Fatal::new(Exit::Other, format!("writing to stdout: {e}"))),
        _ => Ok(()),
    }
}
