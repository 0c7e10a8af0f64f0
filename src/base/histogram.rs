//! A histogram with fixed bucket bounds, counted in place by one shard (no atomic, no
//! lock) and merged across shards for a scrape.

use std::time::Duration;

/// Upper bounds of the request and sync duration buckets, in microseconds.
const DURATION_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000,
];
/// Upper bounds of the records-per-write-group buckets.
pub const GROUP_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];
const MAX_BUCKETS: usize = 13;

/// A histogram with fixed bucket bounds: counts per bucket (not cumulative; the
/// rendering sums them), their sum and their number.
#[derive(Clone, Debug)]
pub struct Histogram {
    pub bounds: &'static [u64],
    pub buckets: [u64; MAX_BUCKETS + 1],
    pub sum: u64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Self {
        debug_assert!(bounds.len() <= MAX_BUCKETS);
        Histogram {
            bounds,
            buckets: [0; MAX_BUCKETS + 1],
            sum: 0,
            count: 0,
        }
    }

    /// For durations, in microseconds.
    pub fn durations() -> Self {
        Histogram::new(DURATION_BOUNDS_US)
    }

    pub fn observe(&mut self, value: u64) {
        let i = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn observe_duration(&mut self, d: Duration) {
        self.observe(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}
