//! # epro-ingest
//!
//! An HTTP/1.1 server that takes in ePRO submissions, one shard per CPU core. Follow a
//! request through the modules in this order:
//!
//! | step | module | what happens |
//! |---|---|---|
//! | start | `main.rs`, [`config`] | CLI and TOML config, embedded defaults |
//! | shards | [`shard`] | one glommio executor pinned per CPU; owns everything below |
//! | accept | [`accept`] | per-shard `SO_REUSEPORT` listener, connection slab, buffer pool, connection limit |
//! | connection | [`conn`] | read; frame every buffered request; dispatch each; one write; timeouts |
//! | framing | [`http::request`], [`http::parse`], [`http::chunked`] | httparse plus our strict RFC 9112 framing and limits |
//! | routing | [`route`] | the route table and its compile-time tree: 404, 405 with `Allow` |
//! | handlers | [`handlers`] | one function per endpoint |
//! | response | [`http::response`], [`http::date`] | precomputed status lines, cached `Date`, exact `Content-Length` |
//! | errors | [`error`] | every hot-path rejection and the one place mapping it to a status |
//!
//! Shards share nothing on the request path: no lock, no shared atomic. Each keeps its own
//! listener (the kernel spreads connections across them), connection table and buffers.

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
