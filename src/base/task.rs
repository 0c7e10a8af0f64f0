//! Spawning a shard's tasks, and ending the process on a fault it cannot handle. A panic that escapes a task (outside the onion, which
//! turns a handler's panic into a 500) ends the whole process at once, non-zero, with
//! a log line naming the shard thread and the task. A shard that lost a task cannot be
//! trusted to serve; and a panic left to unwind out of glommio's executor leaves the
//! shard's thread hung rather than ended, the process limping with one shard dead. A
//! supervisor restarts the whole server; every acknowledged record is on disk.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_lite::FutureExt;

use crate::base::exit::Exit;

/// Spawns `future` on this shard's executor as task `what`.
pub fn spawn<T: 'static>(
    what: &'static str,
    future: impl Future<Output = T> + 'static,
) -> glommio::Task<T> {
    glommio::spawn_local(async move {
        match AssertUnwindSafe(future).catch_unwind().await {
            Ok(value) => value,
            Err(_) => end_process(format_args!(
                "{}: a panic escaped its {what} task (above)",
                std::thread::current().name().unwrap_or("a shard")
            )),
        }
    })
}

/// Ends the process at once, with [`Exit::Fault`] once `why` is logged: for a fault a
/// shard cannot handle. Nothing unacknowledged is answered; every acknowledged record
/// is on disk.
pub fn end_process(why: std::fmt::Arguments<'_>) -> ! {
    log::error!("{why}; exiting so that a supervisor restarts the whole server");
    crate::base::logger::flush_this_thread();
    std::process::exit(i32::from(Exit::Fault.code()))
}
