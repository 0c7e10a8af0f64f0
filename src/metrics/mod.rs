//! Prometheus metrics. Each shard counts into its own plain structs (no atomic, no
//! lock): [`HttpMetrics`] on the request path, [`LogMetrics`] in its log's flusher.
//! A scrape of `GET /metrics` asks every shard for a copy over the mesh
//! ([`crate::reads`]), and [`render`] writes them in the text exposition format 0.0.4,
//! with the `process_*` metrics read from `/proc`. Storage is allocated once per shard;
//! a request only adds to numbers in place.

use std::time::Duration;

use crate::http::parse::Method;
use crate::http::reject::Reject;
use crate::http::response::Status;
use crate::route::{Route, TABLE};

/// Upper bounds of the request and sync duration buckets, in microseconds.
const DURATION_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000,
];
/// Upper bounds of the records-per-write-group buckets.
const GROUP_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];
const MAX_BUCKETS: usize = 13;

/// A histogram with fixed bucket bounds: counts per bucket (not cumulative; the
/// rendering sums them), their sum and their number.
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    buckets: [u64; MAX_BUCKETS + 1],
    sum: u64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [u64]) -> Self {
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

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

const ROUTES: usize = TABLE.len() + 1; // the last: no route matched
const METHODS: usize = Method::ALL.len() + 1; // the last: Method::Other
const STATUSES: usize = Status::ALL.len();

/// One shard's request counters.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    /// Per (route, method, status).
    requests: Vec<u64>,
    /// Per route.
    durations: Vec<Histogram>,
    /// Per [`Reject`], for rejections that end a connection (framing, limits, time).
    rejections: Vec<u64>,
    /// Open connections.
    pub connections: u64,
    /// Requests refused with 429 by a rate limit.
    pub ratelimited: u64,
    /// Per status: refusals whose access line was folded into a line per second.
    folded: Vec<u64>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: vec![0; ROUTES * METHODS * STATUSES],
            durations: vec![Histogram::durations(); ROUTES],
            rejections: vec![0; Reject::ALL.len()],
            connections: 0,
            ratelimited: 0,
            folded: vec![0; STATUSES],
        }
    }
}

impl HttpMetrics {
    /// One answered request: its route (`None`: no route matched), method, status and
    /// time from its head being parsed to its response being queued.
    pub fn request(
        &mut self,
        route: Option<Route>,
        method: Method,
        status: Status,
        took: Duration,
    ) {
        let r = route.map_or(ROUTES - 1, |route| route as usize);
        let m = method as usize;
        self.requests[(r * METHODS + m) * STATUSES + status as usize] += 1;
        self.durations[r].observe_duration(took);
    }

    pub fn rejected(&mut self, reject: Reject) {
        self.rejections[reject as usize] += 1;
    }

    /// A refusal whose access line was folded ([`crate::logger`]).
    pub fn folded(&mut self, status: Status) {
        self.folded[status as usize] += 1;
    }

    fn merge(&mut self, other: &HttpMetrics) {
        for (a, b) in self.requests.iter_mut().zip(&other.requests) {
            *a += b;
        }
        for (a, b) in self.durations.iter_mut().zip(&other.durations) {
            a.merge(b);
        }
        for (a, b) in self.rejections.iter_mut().zip(&other.rejections) {
            *a += b;
        }
    }
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
}

impl LogMetrics {
    pub fn new(kinds: &[&'static str]) -> Self {
        LogMetrics {
            records: kinds.iter().map(|&kind| (kind, 0)).collect(),
            bytes: 0,
            sync: Histogram::durations(),
            group_records: Histogram::new(GROUP_BOUNDS),
            writes_stopped: false,
        }
    }
}

/// What one shard reports for a scrape.
#[derive(Clone, Debug)]
pub struct ShardMetrics {
    pub shard: usize,
    pub http: HttpMetrics,
    pub log: Option<LogMetrics>,
    /// Bytes of records waiting for the disk.
    pub pending_bytes: u64,
    pub ready: bool,
}

mod render;

pub use render::render;
