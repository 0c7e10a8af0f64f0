//! The process's exit statuses: which failures a supervisor should restart and which it
//! should not (a restart would only fail the same way). The values follow BSD
//! `sysexits.h`; `deploy/epro-ingest.service` lists the permanent ones in
//! `RestartPreventExitStatus=`.

use std::fmt;

/// Why the process ends non-zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Anything not classified below; a restart may help.
    Other = 1,
    /// The data directory holds damage that stops the start (a corrupt log, a log this
    /// run would not serve): an operator must look first (`verify`, `export --salvage`).
    Data = 65,
    /// The address or the data directory is held by another process.
    InUse = 69,
    /// The system lacks what the server needs: io_uring (kernel, seccomp), locked
    /// memory, open files, CPUs.
    Unsupported = 71,
    /// A fault while serving (a failed `fdatasync`, a panicking shard): a restart
    /// recovers from the log and serves again.
    Fault = 75,
    /// The config file or a flag is wrong, or the data directory is missing.
    Config = 78,
}

impl Exit {
    /// Statuses after which a restart cannot help, for `RestartPreventExitStatus=`.
    pub const PERMANENT: [Exit; 4] = [Exit::Data, Exit::InUse, Exit::Unsupported, Exit::Config];

    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A failure that ends the process: its message (one line) and its exit status.
#[derive(Debug)]
pub struct Fatal {
    pub exit: Exit,
    pub message: String,
}

impl Fatal {
    pub fn new(exit: Exit, message: impl Into<String>) -> Fatal {
        Fatal {
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An unclassified message: [`Exit::Other`].
impl From<String> for Fatal {
    fn from(message: String) -> Fatal {
        Fatal::new(Exit::Other, message)
    }
}

impl From<Fatal> for String {
    fn from(fatal: Fatal) -> String {
        fatal.message
    }
}
