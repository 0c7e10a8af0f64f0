//! `epro-ingest ship`: every record of a data directory into PostgreSQL, exactly once.
//!
//! A separate process that only reads the logs (as `export` does), so it is safe beside
//! a running server. Per shard (`shard`) it reads from its cursor on, stages up to
//! `batch` records with one `COPY`, moves them into the tables ([`schema::move_staged`])
//! and advances the cursor, all in one transaction: a crash of the shipper, the server
//! or PostgreSQL at any moment neither loses nor duplicates a row. With `--once` it
//! ships what is there and exits; otherwise it follows the logs (a poll every
//! [`POLL_EVERY`]) until SIGTERM or SIGINT, then exits after its current transaction.
//!
//! PostgreSQL down or restarting: the shipper retries with backoff, logging once per
//! change of state, and never skips a record. Shards ship independently: one that
//! cannot go on (a corrupt record, a record PostgreSQL refuses, a segment that cannot
//! be synced) stops at that record, named with its id, segment and offset, and is
//! tried again with a growing wait while the others go on; with `--once` the shipper
//! then exits non-zero. Each pass first checks the log still holds what was shipped
//! (`recheck`), and each transaction syncs the segments its batch was read from before
//! it commits.

mod lag;
pub mod node;
mod recheck;
mod rows;
pub mod schema;
mod shard;
mod sync;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

use crate::log::files::shard_dirs;
use lag::Lag;
use shard::ShardError;

/// How often a follower looks for new records.
pub const POLL_EVERY: Duration = Duration::from_millis(200);
/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Longest wait between two attempts to reach PostgreSQL.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The first and the longest wait before a failed shard is tried again.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(60);

pub struct Options {
    pub data_dir: PathBuf,
    pub conninfo: String,
    pub node: String,
    /// The data directory's identity ([`node::identity`]).
    pub node_id: node::NodeId,
    /// Bind the node's cursors to this data directory even where they name another.
    pub take_over: bool,
    pub once: bool,
    /// Records per transaction.
    pub batch: usize,
}

/// Why shipping stopped early.
#[derive(Debug)]
pub enum Stop {
    /// With `--once`: these shards could not be shipped to their end (each one named
    /// with the record it stopped at); the others were.
    Shards(String),
    /// Anything else that retrying cannot fix.
    Fatal(String),
}

/// Totals for the final line and for progress.
struct Progress {
    shipped: u64,
    /// Records shipped degraded: without what PostgreSQL refused of them.
    refused: u64,
    /// Receive time of the last record shipped.
    last_ns: u64,
    began: Instant,
    logged: Option<Instant>,
    /// Per shard, the cursor now.
    cursors: BTreeMap<u16, u64>,
    lag: Lag,
}

impl Progress {
    /// A progress line every [`PROGRESS_EVERY`]: records shipped, rate, and the lag:
    /// records behind the logs' heads, and how long ago the last shipped record was
    /// received.
    fn report(&mut self) {
        let now = Instant::now();
        if self
            .logged
            .is_some_and(|at| now.duration_since(at) < PROGRESS_EVERY)
        {
            return;
        }
        self.logged = Some(now);
        let secs = self.began.elapsed().as_secs_f64().max(1e-3);
        let behind_s = crate::base::clock::now_ns().saturating_sub(self.last_ns) as f64 / 1e9;
        log::info!(
            "ship: {} records shipped, {:.0} records/s; {} records behind, last shipped \
             record received {behind_s:.1} s ago",
            self.shipped,
            self.shipped as f64 / secs,
            self.lag.behind(&self.cursors)
        );
    }
}

impl Progress {
    fn new() -> Progress {
        Progress {
            shipped: 0,
            refused: 0,
            last_ns: 0,
            began: Instant::now(),
            logged: None,
            cursors: BTreeMap::new(),
            lag: Lag::default(),
        }
    }

    /// The final line; an error naming the shards that `--once` left unshipped.
    fn done(&self, failures: Vec<String>) -> Result<u64, Stop> {
        log::info!(
            "ship: done: {} records shipped in {:.1} s ({} of them without what PostgreSQL \
             refused of them)",
            self.shipped,
            self.began.elapsed().as_secs_f64(),
            self.refused
        );
        if !failures.is_empty() {
            return Err(Stop::Shards(format!(
                "ship: {} shard(s) not shipped to their end: {}",
                failures.len(),
                failures.join("; ")
            )));
        }
        Ok(self.shipped)
    }
}

/// `epro-ingest ship`: [`run`] until done, or until SIGTERM or SIGINT stop it after
/// its current transaction, with status 0.
pub fn until_signalled(opts: &Options) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("ship: cannot handle signals: {e}"))?;
    }
    match run(opts, &stop) {
        Ok(_) => Ok(()),
        Err(Stop::Shards(message) | Stop::Fatal(message)) => Err(message),
    }
}

/// Ships until done (`once`) or stopped (`stop` set); the number of records shipped.
pub fn run(opts: &Options, stop: &Arc<AtomicBool>) -> Result<u64, Stop> {
    let mut progress = Progress::new();
    let mut shards = Shards::default();
    let mut link = Link::new();
    let mut failures = Vec::new();
    let mut checked = false;
    while !stop.load(Ordering::Relaxed) {
        let Some(conn) = link.connection(opts)? else {
            continue;
        };
        // Once per run, before the first pass.
        let check = if checked {
            Ok(())
        } else {
            check_node(conn, opts)
        };
        let pass = check.and_then(|()| {
            checked = true;
            ship_pass(conn, opts, stop, &mut shards, &mut progress)
        });
        match pass {
            Ok((shipped, failed)) => {
                if opts.once {
                    failures = failed;
                    break;
                }
                if shipped == 0 {
                    std::thread::sleep(POLL_EVERY);
                }
            }
            Err(PassError::Db(e)) if transient(&e) => link.lost(&e),
            Err(PassError::Db(e)) => return Err(fatal(&e)),
            Err(PassError::Stop(stop)) => return Err(stop),
        }
    }
    progress.done(failures)
}

/// The connection to PostgreSQL, made again after it breaks, with a growing wait
/// while PostgreSQL cannot be reached.
struct Link {
    client: Option<Client>,
    down_since: Option<Instant>,
    backoff: Duration,
}

impl Link {
    fn new() -> Link {
        Link {
            client: None,
            down_since: None,
            backoff: Duration::from_millis(100),
        }
    }

    /// The connection, made if there is none; `None` after a wait while PostgreSQL
    /// cannot be reached (said once per outage). An error when PostgreSQL answered and
    /// refused for good: retrying will not help.
    fn connection(&mut self, opts: &Options) -> Result<Option<&mut Client>, Stop> {
        if self.client.is_some() {
            return Ok(self.client.as_mut());
        }
        match connect(opts) {
            Ok(conn) => {
                if self.down_since.take().is_some() {
                    log::info!("ship: PostgreSQL is back; continuing");
                }
                self.backoff = Duration::from_millis(100);
                Ok(Some(self.client.insert(conn)))
            }
            Err(e) if !transient(&e) => Err(fatal(&e)),
            Err(e) => {
                if self.down_since.is_none() {
                    log::warn!("ship: cannot reach PostgreSQL, retrying: {}", describe(&e));
                    self.down_since = Some(Instant::now());
                }
                std::thread::sleep(self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Ok(None)
            }
        }
    }

    /// The connection broke (PostgreSQL restarted, say): reconnect; the interrupted
    /// transaction was rolled back, its records come again.
    fn lost(&mut self, e: &postgres::Error) {
        log::warn!("ship: lost PostgreSQL, reconnecting: {}", describe(e));
        self.client = None;
        self.down_since = Some(Instant::now());
    }
}

fn fatal(e: &postgres::Error) -> Stop {
    Stop::Fatal(format!("ship: PostgreSQL: {}", describe(e)))
}

/// Whether reconnecting and retrying can get past `e`: a broken connection, a server
/// shutting down, restarting or full, or a transaction that lost a race. The
/// interrupted transaction was rolled back, so its records come again.
fn transient(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    let Some(db) = e.as_db_error() else {
        return true;
    };
    let code = db.code();
    code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ]
        .contains(code)
}

/// An error with PostgreSQL's own message and detail, not just "db error".
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.severity(), db.message()),
            None => format!("{}: {}", db.severity(), db.message()),
        },
        None => e.to_string(),
    }
}

fn connect(opts: &Options) -> Result<Client, postgres::Error> {
    let mut client = Client::connect(&opts.conninfo, NoTls)?;
    client.batch_execute("SET client_min_messages = warning")?;
    schema::migrate(&mut client)?;
    schema::prepare_session(&mut client)?;
    Ok(client)
}

/// Checks node `opts.node`'s cursors belong to this data directory, binding those kept
/// before cursors had ids. Another directory's are a misconfiguration, said as one
/// before anything is shipped or compared.
fn check_node(client: &mut Client, opts: &Options) -> Result<(), PassError> {
    let id = &opts.node_id.0;
    match schema::claim(client, &opts.node, id, opts.take_over).map_err(PassError::Db)? {
        None => Ok(()),
        Some(other) => Err(PassError::Stop(Stop::Fatal(format!(
            "ship: node name {:?} belongs to the data directory of node id {other} (its \
             cursors say so), and {} is node id {id}: the wrong --node, or a copy of that \
             node's data directory? Nothing was shipped",
            opts.node,
            opts.data_dir.display()
        )))),
    }
}

/// A shard that failed: when to try it again, and how long to wait after that.
struct Failing {
    retry_at: Instant,
    backoff: Duration,
}

/// Each shard's state between passes.
#[derive(Default)]
struct Shards {
    failing: BTreeMap<u16, Failing>,
}

impl Shards {
    /// Whether shard `shard` is due (not failing, or its wait is over).
    fn due(&self, shard: u16) -> bool {
        self.failing
            .get(&shard)
            .map_or(true, |f| Instant::now() >= f.retry_at)
    }

    fn succeeded(&mut self, shard: u16) {
        if self.failing.remove(&shard).is_some() {
            log::info!("ship: shard {shard}: shipping again");
        }
    }

    /// Reports shard `shard`'s failure and sets when to try it again.
    fn failed(&mut self, shard: u16, why: &str, once: bool) {
        let backoff = self
            .failing
            .get(&shard)
            .map_or(FIRST_RETRY, |f| (f.backoff * 2).min(MAX_RETRY));
        self.failing.insert(
            shard,
            Failing {
                retry_at: Instant::now() + backoff,
                backoff,
            },
        );
        if once {
            log::error!("ship: {why}; the other shards go on");
        } else {
            log::error!(
                "ship: {why}; retrying in {:.1} s, the other shards go on",
                backoff.as_secs_f64()
            );
        }
    }
}

/// Why a pass ended before every shard was tried.
enum PassError {
    /// PostgreSQL failed: reconnect when the connection broke, else stop.
    Db(postgres::Error),
    Stop(Stop),
}

/// One pass over every shard that is due: ships what is new; the number of records
/// shipped, and why each shard that failed did. A shard's failure stops only that
/// shard; a broken connection or a [`Stop`] ends the pass.
fn ship_pass(
    client: &mut Client,
    opts: &Options,
    stop: &AtomicBool,
    state: &mut Shards,
    progress: &mut Progress,
) -> Result<(u64, Vec<String>), PassError> {
    let shards = shard_dirs(&opts.data_dir).map_err(|e| PassError::Stop(Stop::Fatal(e)))?;
    let mut shipped = 0;
    let mut failures = Vec::new();
    for (shard, dir) in shards {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if !state.due(shard) {
            continue;
        }
        progress.lag.look(shard, &dir, PROGRESS_EVERY);
        match shard::ship(client, opts, (shard, &dir), stop, progress) {
            Ok(n) => {
                shipped += n;
                state.succeeded(shard);
            }
            Err(ShardError::Failed(why)) => {
                state.failed(shard, &why, opts.once);
                failures.push(why);
            }
            Err(ShardError::Db(e)) => return Err(PassError::Db(e)),
            Err(ShardError::Stop(stop)) => return Err(PassError::Stop(stop)),
        }
    }
    Ok((shipped, failures))
}
