//! The offline commands' output on a terminal: a progress bar over a data directory's
//! logs ([`progress`]) and `verify`'s report ([`verify`]). `src/main.rs` parses the
//! command line and calls these.

pub mod progress;
pub mod verify;
