//! Prometheus metrics. Each shard counts into its own plain structs (no atomic, no
//! lock): [`HttpMetrics`] on the request path, [`LogMetrics`] in its log's flusher.
//! A scrape of `GET /metrics` asks every shard for a copy over the mesh
//! ([`crate::api::reads`]), and [`render`] writes them in the text exposition format 0.0.4,
//! with the `process_*` metrics read from `/proc`. Storage is allocated once per shard;
//! a request only adds to numbers in place.

use std::time::Duration;

use crate::base::histogram::Histogram;
use crate::http::parse::Method;
use crate::http::reject::Reject;
use crate::http::response::Status;
use crate::log::LogMetrics;
use crate::route::{Route, TABLE};

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

    /// A refusal whose access line was folded ([`crate::base::logger`]).
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
