//! # epro-ingest
//!
//! An HTTP/1.1 server that takes in ePRO submissions, one shard per CPU core, and
//! acknowledges a report only once it is on stable storage. Follow a request through
//! the modules in this order:
//!
//! | step | module | what happens |
//! |---|---|---|
//! | start | `main.rs`, [`config`], [`logger`] | CLI and TOML config, embedded defaults, per-shard buffered logging |
//! | shards | [`shard`] | one glommio executor pinned per CPU; owns everything below; recovery, shutdown |
//! | accept | [`accept`] | per-shard `SO_REUSEPORT` listener, connection slab, buffer pool, connection limit |
//! | connection | [`conn`] | read; frame every buffered request; run each; wait for durability once; one write; timeouts |
//! | framing | [`http::request`], [`http::parse`], [`http::chunked`] | httparse plus our strict RFC 9112 framing and limits |
//! | routing | [`route`] | the route table and its compile-time tree: 404, 405 with `Allow` |
//! | onion | [`middleware`] | recovery, access log, auth, permission |
//! | handlers | [`handlers`], [`validate`] | one function per endpoint; simd-json validation on a reused tape |
//! | storage | [`log`] | append to the shard's log; group commit (write + fdatasync) before the ack |
//! | reads | [`index`], [`fanout`], [`reads`] | per-shard index; queries to every shard over a channel mesh; merge |
//! | response | [`http::response`], [`http::date`] | precomputed status lines, cached `Date`, exact `Content-Length` |
//! | errors | [`error`] | every hot-path rejection and the one place mapping it to a status |
//!
//! Off the request path: [`log::recover`] (start-up scan, torn tails), [`log::export`]
//! (the `export` and `verify` commands), [`clock`] (UTC time and RFC 3339).
//!
//! Shards share nothing on the request path: no lock, no shared atomic. Each keeps its
//! own listener (the kernel spreads connections across them), connection table,
//! buffers, log and index; reads that need every shard go by message passing.

#![forbid(unsafe_code)]

pub mod accept;
pub mod clock;
pub mod config;
pub mod conn;
pub mod error;
pub mod fanout;
pub mod handlers;
pub mod http;
pub mod index;
pub mod log;
pub mod logger;
pub mod middleware;
pub mod reads;
pub mod route;
pub mod shard;
pub mod validate;
