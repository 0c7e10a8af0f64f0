//! systemd's watchdog fed by every shard: the process sends `WATCHDOG=1` only while
//! every shard has stamped its heartbeat recently. A wedged shard (a blocked thread, a
//! task that never yields) stops the pings, and systemd restarts the server
//! (`WatchdogSec=` in the unit). Without `WATCHDOG_USEC` there is nothing to feed.

use std::sync::mpsc;
use std::time::Duration;

use log::{error, info};

use crate::runtime::shard::heartbeat::{Heartbeats, BEAT_EVERY};

/// Waits for the first shard to end and returns its number, meanwhile feeding
/// systemd's watchdog (when it asks for one) at half its period while every shard
/// has beaten within that half.
pub fn watch(heartbeats: &Heartbeats, ended: &mpsc::Receiver<usize>) -> usize {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return ended.recv().unwrap_or(usize::MAX);
    }
    let half = Duration::from_micros(usec / 2);
    info!(
        "systemd watchdog every {:?}: pinged while every shard answers",
        half * 2
    );
    let mut wedged = false;
    loop {
        match ended.recv_timeout(half) {
            Ok(shard) => return shard,
            Err(mpsc::RecvTimeoutError::Disconnected) => return usize::MAX,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        // Never shorter than two beats: a short WatchdogSec must not call a healthy
        // shard wedged.
        let silent = heartbeats.silent(half.max(BEAT_EVERY * 2));
        if silent.is_empty() {
            wedged = false;
            super::notify_systemd(&[sd_notify::NotifyState::Watchdog]);
        } else if !wedged {
            wedged = true;
            error!(
                "shards {silent:?} have not run for over {half:?}: not pinging systemd's \
                 watchdog, which restarts the server unless they recover"
            );
        }
    }
}
