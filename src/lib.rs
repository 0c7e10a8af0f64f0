//! # epro-ingest
//!
//! An HTTP/1.1 server that takes in ePRO submissions, one shard per CPU core, and
//! acknowledges a report only once it is on stable storage.
//!
//! ## The house, top floor down
//!
//! Each folder is one layer. A module imports only from its own folder or from a
//! folder on a lower floor (`tests/layers.rs` checks it), so there is no cycle between
//! folders and each can be read knowing only those below it.
//!
//! | floor | folder | its job |
//! |---|---|---|
//! | 9 | [`runtime`] | the process: the address claimed once, one executor pinned per CPU, signals, watchdog, SIGHUP reloads; one shard's life from recovery to drain; answering peers' keyed writes |
//! | 8 | [`net`] | the shard's `SO_REUSEPORT` listener, connections owning their buffers, framing, deadlines, refusals that end a connection |
//! | 7 | [`api`] | one request: admission, the onion (recovery, access log, auth, role rule), the endpoints, FHIR intake, reads across shards, keyed writes, the answers, the OpenAPI document |
//! | 6 | [`shard`] | what one shard owns (its [`Context`](shard::context::Context)) and the message mesh between shards |
//! | 5 | [`config`], [`metrics`] | the TOML file and its defaults; per-shard counters and `/metrics` |
//! | 4 | [`route`], [`ship`], [`cli`] | the route table and its compile-time tree; `ship` into PostgreSQL; the offline commands (export, verify, backup, restore, retire-shard, probe) and their output |
//! | 3 | [`domain`] | rules with no shard in sight: auth, rate limits, body validation, FHIR R4, idempotency keys, the read index |
//! | 2 | [`log`] | the per-shard append-only log: format, group commit, recovery, the offline tools (`export`, `verify`, `retire-shard`, `backup`) |
//! | 1 | [`http`] | HTTP/1.1 on the wire only: httparse and strict framing, limits, `Reply` |
//! | 0 | [`base`] | byte search, time, exit statuses, log lines, tasks, histograms, gates |
//!
//! ## One submit, by file name
//!
//! [`net::accept`] takes the connection; [`net::conn`] reads and frames it with
//! [`http::request`]; [`api::admission`] decides at head time (shedding, rate
//! limits); [`api::middleware`] runs the onion and looks the route up in
//! [`route`]; [`api::handlers`] validates the body ([`domain::validate`]) and appends
//! it to the shard's [`log`]; [`api::outcome`] tells the connection to wait for the
//! group commit; [`api::ack`] writes the 200 with the record's id; [`net::conn`] sends
//! it. A keyed write goes through [`api::keyed`] to its key's owner shard over
//! [`shard::peers`] ([`runtime::owner`] answers there); a read that needs every shard
//! goes through [`api::reads`].
//!
//! Shards share nothing on the request path: no lock, no shared atomic. Each keeps its
//! own listener (the kernel spreads connections across them), connection table,
//! buffers, log and index; cross-shard work goes by message passing.
//!
//! ## The surface for embedders
//!
//! Another program (the axum baseline in `src/bin/axum-baseline.rs` is one) can reuse
//! [`domain`], [`log::record`] (the record encoding), [`route`], [`base::clock`] and
//! [`config`] without any of the shard machinery.

#![forbid(unsafe_code)]

pub mod api;
pub mod base;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod log;
pub mod metrics;
pub mod net;
pub mod route;
pub mod runtime;
pub mod shard;
pub mod ship;
