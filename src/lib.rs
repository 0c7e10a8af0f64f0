//! # epro-ingest
//!
//! An HTTP/1.1 server that takes in ePRO submissions, one shard per CPU core, and
//! acknowledges a report only once it is on stable storage. Follow a request through
//! the modules in this order:
//!
//! | step | module | what happens |
//! |---|---|---|
//! | start | `main.rs`, [`config`], [`logger`] | CLI and TOML config, embedded defaults, per-shard buffered logging (text or JSON) |
//! | process | [`server`], [`listen`], [`reload`], [`exit`] | CPUs, locked memory, one server per listen address, one glommio executor pinned per CPU, signals to every shard, systemd's watchdog, SIGHUP reloads, exit statuses |
//! | shard | [`shard`] | one shard's life: listener, timers, recovery, mesh, drain on stop |
//! | accept | [`accept`] | the shard's `SO_REUSEPORT` listener; a slot per connection; the connection limit |
//! | connection | [`conn`], [`conn::table`] | a `Connection` owning its buffers: read, frame, dispatch, await durability, one write; timeouts |
//! | framing | [`http::request`], [`http::parse`], [`http::chunked`] | httparse plus our strict RFC 9112 framing and limits |
//! | onion | [`middleware`], [`auth`] | recovery, access log, bearer auth, the route's role rule |
//! | routing | [`route`] | the route table (with who may call each route) and its compile-time tree |
//! | handlers | [`handlers`], [`validate`], [`outcome`] | one function per endpoint; simd-json validation on a reused tape |
//! | FHIR | [`fhir_api`], [`fhir`] | R4 QuestionnaireResponse intake (R4's rules walked over tables of its structure, then this server's profile), read back with the server's id and meta, CapabilityStatement, the profile's StructureDefinition; 406 for formats other than JSON |
//! | storage | [`log`] | append to the shard's log; group commit (write + fdatasync) before the ack; manifest; the live segment watched |
//! | reads | [`reads`], [`peers`], [`owner`], [`index`], [`merge`], [`log::locations`] | each shard's index asked over a channel mesh; answers merged; a record by its id |
//! | admission | [`admission`], [`ratelimit`] | at head time: load shedding, per-principal rate limits |
//! | metrics | [`metrics`] | per-shard counters bumped in place; `/metrics` merges every shard's copy |
//! | keys | [`keyed`], [`keys`] | a write with an idempotency key, decided by its key's owner shard, stored at most once |
//! | answer | [`ack`] | a stored record's 200, a shard's 503 when it cannot store |
//! | response | [`http::response`], [`http::date`], [`http::reject`] | `Reply`: the one writer of responses; every rejection's status |
//!
//! Off the request path: [`log::open`] and [`log::recover`] (start-up scan against the
//! [`log::manifest`], torn tails, the hash chain), [`log::export`], [`log::salvage`]
//! and [`log::heads`] (the `export` and `verify` commands, saved chain heads),
//! [`cli`] (their progress bar and `verify`'s report),
//! [`log::datadir`] (the directory's lock, the retired logs), [`log::evidence`] (every
//! place that knows which ids were given), [`log::retire`] (`retire-shard`),
//! [`log::lost`] (the ids damage took), [`log::backup`] (`backup` and `restore`),
//! [`ship`] (the `ship` command: every record into PostgreSQL, exactly once),
//! [`clock`] (UTC time and RFC 3339).
//!
//! Shards share nothing on the request path: no lock, no shared atomic. Each keeps its
//! own listener (the kernel spreads connections across them), connection table,
//! buffers, log and index; reads that need every shard, and a write with an idempotency
//! key (stored by the shard that owns the key), go by message passing.
//!
//! ## Layers
//!
//! A module imports only from layers below its own, never sideways into a layer above,
//! so there is no import cycle between top-level modules:
//!
//! | layer | modules | knows |
//! |---|---|---|
//! | 5 process | [`server`], [`reload`], [`shard`] | executors, signals, reloads, bootstrap and shutdown |
//! | 4 connections | [`accept`], [`conn`] | the listener (accept only), sockets and their buffers (conn only) |
//! | 3 request | [`admission`], [`middleware`], [`handlers`], [`fhir_api`], [`keyed`], [`reads`], [`owner`], [`ack`], [`outcome`] | one request against a [`context::Context`] |
//! | 2 shard state | [`context`], [`peers`] | what one shard owns; the mesh's messages |
//! | 1 domain | [`http`], [`route`], [`auth`], [`validate`], [`malformed`], [`log`], [`index`], [`keys`], [`merge`], [`metrics`], [`ratelimit`], [`openapi`], [`fhir`], [`config`], [`ship`], [`listen`], [`cli`] | bytes, rules, records, the listen address's claim, the offline commands' output; no shards |
//! | 0 base | [`clock`], [`exit`], [`logger`], [`task`] | time, exit statuses, log lines, spawning (a panic escaping a task ends the process) |
//!
//! The import graph as it stands (`python3 shared/tools/modgraph.py src` prints it):
//!
//! ```text
//! server     -> config, exit, listen, peers, reload, shard
//! reload     -> auth, config, ratelimit
//! shard      -> accept, clock, config, conn, context, exit, index, keys, log, logger, owner, peers, ratelimit, reload, task, validate
//! accept     -> conn, context, http, task
//! conn       -> admission, context, http, logger, middleware
//! admission  -> context, http, logger, middleware, outcome, route
//! middleware -> auth, context, handlers, http, keyed, logger, outcome, reads, route
//! handlers   -> ack, auth, clock, context, fhir_api, http, keyed, keys, log, outcome, route, task, validate
//! fhir_api   -> ack, auth, clock, context, fhir, http, keyed, keys, log, outcome, validate
//! keyed      -> ack, config, context, http, keys, log, outcome
//! owner      -> context, keyed, keys, log, metrics, peers, reads, task
//! reads      -> ack, clock, context, fhir, fhir_api, http, index, log, merge, metrics, outcome, validate
//! ack        -> clock, fhir, http, log, validate
//! outcome    -> config, context, http, keys, log, logger, route
//! context    -> auth, clock, config, http, index, keys, log, metrics, openapi, peers, ratelimit, validate
//! peers      -> index, keys, log, metrics, task
//! merge      -> clock, index
//! metrics    -> http, route
//! openapi    -> auth, fhir, http, route, validate
//! fhir       -> clock, malformed, validate
//! index      -> fhir, log, validate
//! keys       -> log
//! ship       -> clock, fhir, log, validate
//! log        -> clock, config, exit, metrics, task
//! route      -> auth, http
//! config     -> auth, http, logger, ratelimit, validate
//! validate   -> clock, malformed
//! cli        -> clock, log
//! logger     -> clock
//! task       -> exit, logger
//! auth, clock, exit, http, listen, malformed, ratelimit -> nothing
//! ```
//!
//! ## The surface for embedders
//!
//! Another program (the axum baseline in `src/bin/axum-baseline.rs` is one) can reuse
//! the rules without any of the shard machinery: [`validate`] (body rules and their
//! messages, with [`malformed`] saying where a body is not JSON), [`log::record`] (the record encoding), [`auth`] (principals, tokens,
//! project scope), [`route`] (the table and its access rules), [`index`] and [`merge`]
//! (the read model and how answers merge), [`clock`] and [`config`].

#![forbid(unsafe_code)]

pub mod accept;
pub mod ack;
pub mod admission;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod conn;
pub mod context;
pub mod exit;
pub mod fhir;
pub mod fhir_api;
pub mod handlers;
pub mod histogram;
pub mod http;
pub mod index;
pub mod keyed;
pub mod keys;
pub mod listen;
pub mod log;
pub mod logger;
pub mod malformed;
pub mod merge;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod outcome;
pub mod owner;
pub mod peers;
pub mod ratelimit;
pub mod reads;
pub mod reload;
pub mod route;
pub mod server;
pub mod shard;
pub mod ship;
pub mod task;
pub mod validate;
