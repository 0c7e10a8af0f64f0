//! One shard's state, as the request path sees it: its number and config, cached
//! `Date`, principals, validator, read index, log and its ends of the shard mesh. The
//! handlers, the onion and the reads take a `&Context`; they never see the executor,
//! the listener or the connections. Everything here is owned by one shard and used
//! only on its thread.
//!
//! The bootstrap ([`crate::runtime::shard`]) creates it empty (not ready: no log, no peers),
//! installs the recovered log and index, then the mesh.

use std::cell::{Cell, OnceCell, RefCell, RefMut};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::domain::auth::{Principal, Principals};
use crate::domain::index::Index;
use crate::domain::keys::KeyTable;
use crate::domain::ratelimit::{Limiter, Rate};
use crate::domain::validate::Validator;
use crate::http::date::{self, DateCache};
use crate::http::parse::{Head, Limits};
use crate::http::request_id::RequestId;
use crate::http::response::Reply;
use crate::log::locations::Locations;
use crate::log::Log;
use crate::metrics::{HttpMetrics, ShardMetrics};
use crate::shard::peers::{Health, Peers};

pub struct Context {
    shard: usize,
    config: Arc<Config>,
    limits: Limits,
    date: Rc<DateCache>,
    /// Replaced whole by a reload; a request keeps the set it began with.
    principals: RefCell<Rc<Principals>>,
    validator: RefCell<Validator>,
    index: Rc<RefCell<Index>>,
    /// The idempotency keys this shard owns.
    keys: RefCell<KeyTable>,
    /// Where each durable record of this shard's log is.
    locations: Rc<RefCell<Locations>>,
    /// Set once recovery is done.
    log: OnceCell<Rc<Log>>,
    /// Set once the mesh is joined.
    peers: OnceCell<Peers>,
    /// Every shard of the process has recovered: requests may be served.
    serving: Cell<bool>,
    shutting_down: Cell<bool>,
    /// This shard's request counters.
    metrics: RefCell<HttpMetrics>,
    /// This shard's part of every principal's rate limit.
    limiter: RefCell<Limiter>,
    /// The start of the request ids this shard makes up (its start time and number),
    /// and how many it has made up.
    id_prefix: RequestId,
    request_ids: Cell<u64>,
}

impl Context {
    /// A shard with nothing open yet: no log, no peers, not ready.
    pub fn new(shard: usize, config: Arc<Config>) -> Context {
        Context {
            shard,
            limits: config.limits.http(),
            principals: RefCell::new(Rc::new(Principals::new(config.principals.clone()))),
            validator: RefCell::new(Validator::default()),
            index: Rc::new(RefCell::new(Index::default())),
            keys: RefCell::new(KeyTable::default()),
            locations: Rc::new(RefCell::new(Locations::default())),
            log: OnceCell::new(),
            peers: OnceCell::new(),
            date: Rc::new(DateCache::new()),
            serving: Cell::new(false),
            shutting_down: Cell::new(false),
            metrics: RefCell::new(HttpMetrics::default()),
            // Until the mesh is joined (nothing is served before), as if alone.
            limiter: RefCell::new(Limiter::new(&config.rates(), 0, 1, Instant::now())),
            id_prefix: RequestId::prefix(crate::base::clock::now_ns() / 1000, shard),
            request_ids: Cell::new(0),
            config,
        }
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The current `Date` header value.
    pub fn date(&self) -> [u8; date::LEN] {
        self.date.get()
    }

    /// The cache behind [`Context::date`], for the task that refreshes it.
    pub fn date_cache(&self) -> Rc<DateCache> {
        Rc::clone(&self.date)
    }

    /// A writer for the response to `head`, keeping the connection as it asked.
    pub fn reply<'o>(&self, out: &'o mut Vec<u8>, head: &Head<'_>) -> Reply<'o> {
        Reply::to(out, self.date(), head)
    }

    /// The principals in force (a reload may replace them between requests).
    pub fn principals(&self) -> Rc<Principals> {
        Rc::clone(&self.principals.borrow())
    }

    /// Puts reloaded principals and their rate limits (`rates`, by principal index) in
    /// force on this shard, for every request that begins from now on. The rate limits
    /// start afresh, as at start-up.
    pub fn reload(&self, principals: Vec<Principal>, rates: &[Option<Rate>]) {
        let shards = self.shards();
        *self.limiter.borrow_mut() = Limiter::new(rates, self.shard, shards, Instant::now());
        *self.principals.borrow_mut() = Rc::new(Principals::new(principals));
    }

    pub fn validator(&self) -> RefMut<'_, Validator> {
        self.validator.borrow_mut()
    }

    /// This shard's read index (shared with the task answering peers' queries).
    pub fn index(&self) -> &Rc<RefCell<Index>> {
        &self.index
    }

    pub fn log(&self) -> Option<&Rc<Log>> {
        self.log.get()
    }

    pub fn peers(&self) -> Option<&Peers> {
        self.peers.get()
    }

    /// How many shards the process runs (1 until the mesh is joined, as if alone).
    pub fn shards(&self) -> usize {
        self.peers().map_or(1, Peers::shards)
    }

    /// Installs the recovered log and the index and keys rebuilt from it.
    pub fn open(&self, log: Rc<Log>, index: Index, keys: KeyTable) {
        *self.index.borrow_mut() = index;
        *self.keys.borrow_mut() = keys;
        let _ = self.log.set(log);
    }

    /// Where each durable record of this shard's log is (shared with its flusher).
    pub fn locations(&self) -> &Rc<RefCell<Locations>> {
        &self.locations
    }

    /// The idempotency keys this shard owns.
    pub fn keys(&self) -> RefMut<'_, KeyTable> {
        self.keys.borrow_mut()
    }

    /// This shard's request counters.
    pub fn metrics(&self) -> RefMut<'_, HttpMetrics> {
        self.metrics.borrow_mut()
    }

    /// A copy of every counter this shard keeps, for a scrape.
    pub fn shard_metrics(&self) -> ShardMetrics {
        let (log, pending_bytes) = match self.log() {
            Some(log) => {
                let (metrics, pending) = log.metrics();
                (Some(metrics), pending)
            }
            None => (None, 0),
        };
        ShardMetrics {
            shard: self.shard,
            http: self.metrics.borrow().clone(),
            log,
            pending_bytes,
            ready: self.is_ready(),
        }
    }

    /// Joins the mesh; rate limits are shared among its shards from now on.
    pub fn join_peers(&self, peers: Peers) {
        let shards = peers.shards();
        *self.limiter.borrow_mut() =
            Limiter::new(&self.config.rates(), self.shard, shards, Instant::now());
        let _ = self.peers.set(peers);
    }

    /// A request id for a request that brought none.
    pub fn next_request_id(&self) -> RequestId {
        let n = self.request_ids.get() + 1;
        self.request_ids.set(n);
        self.id_prefix.numbered(n)
    }

    /// This shard's part of every principal's rate limit.
    pub fn limiter(&self) -> RefMut<'_, Limiter> {
        self.limiter.borrow_mut()
    }

    /// Every shard of the process has recovered its log (the process says so once all
    /// have): from now on reads and writes are served.
    pub fn start_serving(&self) {
        self.serving.set(true);
    }

    /// Whether reads and writes are served: not while any shard still recovers.
    pub fn is_serving(&self) -> bool {
        self.serving.get()
    }

    /// `/readyz` answers 200 only while this is true: every shard recovered, this one's
    /// log can take records, and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.health().is_ok()
    }

    /// As [`Context::is_ready`], saying what was done to the live segment if that is
    /// why not.
    pub fn health(&self) -> Health {
        let log = self.log();
        if self.serving.get()
            && log.is_some_and(|log| log.is_healthy())
            && !self.shutting_down.get()
        {
            Ok(())
        } else {
            Err(log.and_then(|log| log.fault()))
        }
    }

    /// Whether new writes are shed now: too much waits for this shard's disk.
    pub fn overloaded(&self) -> bool {
        self.log().is_some_and(|log| {
            let (bytes, records) = log.backlog();
            let limits = &self.config.limits;
            bytes > limits.shed_pending_bytes || records > limits.shed_inflight
        })
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.set(true);
    }
}
