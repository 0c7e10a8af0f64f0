//! The ground floor: what every layer above may use and that knows nothing of
//! requests, shards or storage. Searching bytes eight at a time ([`bytes`]), UTC time
//! and RFC 3339 ([`clock`]), the process's exit statuses ([`exit`]), per-shard
//! buffered log lines ([`logger`]), spawning a task whose panic ends the process
//! ([`task`]), the fixed-bucket [`histogram`], and the [`gate`] a shard closes to shut
//! its tasks down in order.

pub mod bytes;
pub mod clock;
pub mod exit;
pub mod gate;
pub mod histogram;
pub mod logger;
pub mod task;
