//! A shard's heartbeat: its executor stamps it a few times a second from a timer task,
//! so a shard whose thread is blocked or whose task never yields stops stamping. The
//! process reads every shard's stamp to feed systemd's watchdog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a shard stamps its heartbeat.
pub const BEAT_EVERY: Duration = Duration::from_millis(200);

/// Every shard's last heartbeat, in milliseconds since the process made them.
#[derive(Clone)]
pub struct Heartbeats {
    beats: Arc<Vec<AtomicU64>>,
    epoch: Instant,
}

/// One shard's heartbeat, stamped from its own executor.
pub struct Heartbeat {
    all: Heartbeats,
    shard: usize,
}

impl Heartbeat {
    pub fn beat(&self) {
        let now = self.all.epoch.elapsed().as_millis() as u64;
        self.all.beats[self.shard].store(now, Ordering::Relaxed);
    }
}

impl Heartbeats {
    pub fn new(shards: usize) -> Heartbeats {
        Heartbeats {
            beats: Arc::new((0..shards).map(|_| AtomicU64::new(0)).collect()),
            epoch: Instant::now(),
        }
    }

    pub fn of(&self, shard: usize) -> Heartbeat {
        Heartbeat {
            all: self.clone(),
            shard,
        }
    }

    /// The shards whose last beat is older than `limit`.
    pub fn silent(&self, limit: Duration) -> Vec<usize> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let limit = limit.as_millis() as u64;
        (0..self.beats.len())
            .filter(|&s| now.saturating_sub(self.beats[s].load(Ordering::Relaxed)) > limit)
            .collect()
    }
}
