//! What a shard's log counts for `/metrics`, and when it acknowledges a record.

use serde::Deserialize;

use crate::base::histogram::{Histogram, GROUP_BOUNDS};

/// When a write is acknowledged (the `durability` setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Acknowledge only after the record's batch is fdatasync'ed.
    Sync,
    /// Acknowledge once the record is queued for the next write.
    Async,
}

/// One shard's log counters.
#[derive(Clone, Debug)]
pub struct LogMetrics {
    /// Durable records per kind name.
    pub records: Vec<(&'static str, u64)>,
    pub bytes: u64,
    /// Write + fdatasync of each group, in microseconds.
    pub sync: Histogram,
    pub group_records: Histogram,
    /// The live segment was deleted, replaced or made read-only: writes stopped.
    pub writes_stopped: bool,
    /// No room on the disk for a new segment or for more ids: writes are refused until
    /// there is (set when a copy is taken, from the log's state).
    pub no_space: bool,
}

impl LogMetrics {
    pub fn new(kinds: &[&'static str]) -> Self {
        LogMetrics {
            records: kinds.iter().map(|&kind| (kind, 0)).collect(),
            bytes: 0,
            sync: Histogram::durations(),
            group_records: Histogram::new(GROUP_BOUNDS),
            writes_stopped: false,
            no_space: false,
        }
    }
}
