//! `epro-ingest ship`: every record of a data directory into PostgreSQL, exactly once.
//!
//! A separate process that only reads the logs (as `export` does), so it is safe beside
//! a running server. Per shard it reads from its cursor on, stages up to `batch`
//! records with one `COPY`, moves them into the tables ([`schema::move_staged`]) and
//! advances the cursor, all in one transaction: a crash of the shipper, the server or
//! PostgreSQL at any moment neither loses nor duplicates a row. With `--once` it ships
//! what is there and exits; otherwise it follows the logs (a poll every
//! [`POLL_EVERY`]) until SIGTERM or SIGINT, then exits after its current transaction.
//!
//! PostgreSQL down or restarting: the shipper retries with backoff, logging once per
//! change of state, and never skips a record. A corrupt record in a log stops it with
//! the file and offset, as `verify` reports them: nothing past it is shipped silently.
//! Each pass first checks the log still holds what was shipped (`recheck`), and each
//! transaction syncs the segments its batch was read from before it commits.

mod recheck;
mod rows;
pub mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

use crate::log::export::shard_dirs;
use crate::log::files::list_segments;
use crate::log::recover::scan_shard_from;
use crate::validate::Validator;
use recheck::Recheck;

/// How often a follower looks for new records.
pub const POLL_EVERY: Duration = Duration::from_millis(200);
/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Longest wait between two attempts to reach PostgreSQL.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Options {
    pub data_dir: PathBuf,
    pub conninfo: String,
    pub node: String,
    pub once: bool,
    /// Records per transaction.
    pub batch: usize,
}

/// Why shipping stopped early.
#[derive(Debug)]
pub enum Stop {
    /// A log is damaged here: nothing after it was shipped.
    Corrupt(String),
    /// Anything else that retrying cannot fix.
    Fatal(String),
}

/// Totals for the final line and for progress.
struct Progress {
    shipped: u64,
    /// Receive time of the last record shipped.
    last_ns: u64,
    began: Instant,
    logged: Option<Instant>,
    /// Per shard: the log's head (one past its last record) when last looked at, when
    /// that was, and the cursor now.
    heads: BTreeMap<u16, (u64, Instant)>,
    cursors: BTreeMap<u16, u64>,
}

impl Progress {
    /// Records in the logs not shipped yet, as of the heads last seen.
    fn behind(&self) -> u64 {
        let cursor = |shard| self.cursors.get(shard).copied().unwrap_or(0);
        self.heads
            .iter()
            .map(|(shard, (head, _))| head.saturating_sub(cursor(shard)))
            .sum()
    }
}

/// Ships until done (`once`) or stopped (`stop` set); the number of records shipped.
pub fn run(opts: &Options, stop: &Arc<AtomicBool>) -> Result<u64, Stop> {
    let mut progress = Progress {
        shipped: 0,
        last_ns: 0,
        began: Instant::now(),
        logged: None,
        heads: BTreeMap::new(),
        cursors: BTreeMap::new(),
    };
    let mut client: Option<Client> = None;
    let mut down_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let conn = match client.as_mut() {
            Some(conn) => conn,
            None => match connect(&opts.conninfo) {
                Ok(conn) => {
                    if down_since.take().is_some() {
                        log::info!("ship: PostgreSQL is back; continuing");
                    }
                    backoff = Duration::from_millis(100);
                    client.insert(conn)
                }
                // PostgreSQL answered, and refused for good: retrying will not help.
                Err(e) if !transient(&e) => {
                    return Err(Stop::Fatal(format!("ship: PostgreSQL: {}", describe(&e))))
                }
                Err(e) => {
                    if down_since.is_none() {
                        log::warn!("ship: cannot reach PostgreSQL, retrying: {}", describe(&e));
                        down_since = Some(Instant::now());
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        match ship_pass(conn, opts, stop, &mut progress) {
            Ok(shipped) => {
                if opts.once {
                    break;
                }
                if shipped == 0 {
                    std::thread::sleep(POLL_EVERY);
                }
            }
            Err(PassError::Db(e)) if transient(&e) => {
                // The connection broke (PostgreSQL restarted, say): reconnect; the
                // interrupted transaction was rolled back, its records come again.
                log::warn!("ship: lost PostgreSQL, reconnecting: {}", describe(&e));
                client = None;
                down_since = Some(Instant::now());
            }
            Err(PassError::Db(e)) => {
                return Err(Stop::Fatal(format!("ship: PostgreSQL: {}", describe(&e))))
            }
            Err(PassError::Stop(stop)) => return Err(stop),
        }
    }
    log::info!(
        "ship: done: {} records shipped in {:.1} s",
        progress.shipped,
        progress.began.elapsed().as_secs_f64()
    );
    Ok(progress.shipped)
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

fn connect(conninfo: &str) -> Result<Client, postgres::Error> {
    let mut client = Client::connect(conninfo, NoTls)?;
    client.batch_execute("SET client_min_messages = warning")?;
    schema::migrate(&mut client)?;
    schema::prepare_session(&mut client)?;
    Ok(client)
}

enum PassError {
    Db(postgres::Error),
    Stop(Stop),
}

impl From<postgres::Error> for PassError {
    fn from(e: postgres::Error) -> Self {
        PassError::Db(e)
    }
}

/// One pass over every shard: ships what is new; the number of records shipped.
fn ship_pass(
    client: &mut Client,
    opts: &Options,
    stop: &AtomicBool,
    progress: &mut Progress,
) -> Result<u64, PassError> {
    let shards = shard_dirs(&opts.data_dir).map_err(|e| PassError::Stop(Stop::Fatal(e)))?;
    let mut shipped = 0;
    for (shard, dir) in shards {
        shipped += ship_shard(client, opts, shard, &dir, stop, progress)?;
    }
    Ok(shipped)
}

/// A batch being gathered for one transaction.
struct Batch {
    lines: Vec<u8>,
    records: usize,
    /// Its first record (meaningful once it has one).
    first_seq: u64,
    /// The cursor after it: one past its last record.
    next_seq: u64,
    last_ns: u64,
}

/// Ships shard `shard`'s records from its cursor on, `opts.batch` per transaction.
fn ship_shard(
    client: &mut Client,
    opts: &Options,
    shard: u16,
    dir: &Path,
    stop: &AtomicBool,
    progress: &mut Progress,
) -> Result<u64, PassError> {
    let shard_no = i32::from(shard);
    let cursor = schema::cursor(client, &opts.node, shard_no)? as u64;
    progress.cursors.insert(shard, cursor);
    // The log's head, for the progress line's lag: a scan of the last segment only,
    // at most once per progress period.
    if progress
        .heads
        .get(&shard)
        .map_or(true, |(_, at)| at.elapsed() >= PROGRESS_EVERY)
    {
        if let Ok(tail) = scan_shard_from(dir, shard, u64::MAX, |_, _| {}, |_| {}) {
            progress
                .heads
                .insert(shard, (tail.next_seq, Instant::now()));
        }
    }
    let mut validator = Validator::for_stored();
    let mut batch = Batch {
        lines: Vec::with_capacity(opts.batch * 512),
        records: 0,
        first_seq: cursor,
        next_seq: cursor,
        last_ns: 0,
    };
    let mut committed = cursor;
    let mut shipped = 0u64;
    let mut failed: Option<PassError> = None;
    let last = schema::last_shipped(client, &opts.node, shard_no, cursor as i64)?;
    let mut recheck = Recheck::new(last, dir);
    let scanned = scan_shard_from(
        dir,
        shard,
        recheck.from(cursor),
        |record, at| {
            if let Some(why) = recheck.observe(record, &at.hash) {
                failed = Some(corrupt(shard, &why));
            }
            if failed.is_some() || record.seq < cursor || stop.load(Ordering::Relaxed) {
                return;
            }
            let row = (record, &at.hash);
            rows::copy_line(&mut validator, &opts.node, row, &mut batch.lines);
            if batch.records == 0 {
                batch.first_seq = record.seq;
            }
            batch.records += 1;
            batch.next_seq = record.seq + 1;
            batch.last_ns = record.received_ns;
            if batch.records >= opts.batch {
                match commit(
                    client,
                    opts,
                    (shard_no, dir),
                    committed,
                    &mut batch,
                    progress,
                ) {
                    Ok(n) => {
                        shipped += n;
                        committed = batch.next_seq;
                    }
                    Err(e) => failed = Some(e),
                }
            }
        },
        |_| {},
    );
    if let Some(e) = failed {
        return Err(e);
    }
    if let (Some(why), Ok(_)) = (recheck.finish(), &scanned) {
        return Err(corrupt(shard, &why));
    }
    // What was read before any damage is shipped before the damage is reported.
    if batch.records > 0 && !stop.load(Ordering::Relaxed) {
        shipped += commit(
            client,
            opts,
            (shard_no, dir),
            committed,
            &mut batch,
            progress,
        )?;
    }
    if let Err(corruption) = scanned {
        return Err(PassError::Stop(Stop::Corrupt(format!(
            "ship: shard {shard}: shipped up to the damage, stopping: {corruption}"
        ))));
    }
    Ok(shipped)
}

/// Stops shipping: the log is not what it was.
fn corrupt(shard: u16, why: &str) -> PassError {
    PassError::Stop(Stop::Corrupt(format!(
        "ship: shard {shard}: {why}; stopping"
    )))
}

/// One transaction: COPY the batch, move it, advance the cursor from `from`. The
/// segments it was read from are synced first: the shipper reads records as soon as
/// they are written, and one not yet on stable storage could be lost to a power cut
/// after PostgreSQL has it (a row the log no longer holds, for a record that, with
/// durability `sync`, was never acknowledged).
fn commit(
    client: &mut Client,
    opts: &Options,
    (shard, dir): (i32, &Path),
    from: u64,
    batch: &mut Batch,
    progress: &mut Progress,
) -> Result<u64, PassError> {
    use std::io::Write;
    sync_segments(dir, batch.first_seq).map_err(|e| {
        PassError::Stop(Stop::Fatal(format!(
            "ship: shard {shard}: {e}: what was read may not survive a power cut, so it is \
             not shipped"
        )))
    })?;
    let mut tx = client.transaction()?;
    let mut writer = tx.copy_in(&schema::copy_statement())?;
    writer
        .write_all(&batch.lines)
        .map_err(|e| PassError::Stop(Stop::Fatal(format!("ship: COPY: {e}"))))?;
    writer.finish()?;
    schema::move_staged(&mut tx)?;
    let records = batch.records as i64;
    if !schema::advance(
        &mut tx,
        &opts.node,
        shard,
        from as i64,
        batch.next_seq as i64,
        records,
    )? {
        return Err(PassError::Stop(Stop::Fatal(format!(
            "ship: the cursor of node {} shard {shard} moved under this shipper: is another \
             one shipping the same node?",
            opts.node
        ))));
    }
    tx.commit()?;
    let shipped = batch.records as u64;
    progress.shipped += shipped;
    progress.last_ns = batch.last_ns;
    progress.cursors.insert(shard as u16, batch.next_seq);
    batch.lines.clear();
    batch.records = 0;
    report(progress);
    Ok(shipped)
}

/// `fdatasync`s every segment of the shard directory `dir` that may hold record
/// `first_seq` or a later one (a read-only descriptor syncs the file as well).
fn sync_segments(dir: &Path, first_seq: u64) -> std::io::Result<()> {
    let segments = list_segments(dir)?;
    if segments.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: no segment to sync (moved away?)", dir.display()),
        ));
    }
    let from = segments
        .iter()
        .rposition(|s| s.first_seq <= first_seq)
        .unwrap_or(0);
    for segment in &segments[from..] {
        std::fs::File::open(&segment.path)
            .and_then(|f| f.sync_data())
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("fdatasync of {}: {e}", segment.path.display()),
                )
            })?;
    }
    Ok(())
}

/// A progress line every [`PROGRESS_EVERY`]: records shipped, rate, and the lag: records
/// behind the logs' heads, and how long ago the last shipped record was received.
fn report(progress: &mut Progress) {
    let now = Instant::now();
    if progress
        .logged
        .is_some_and(|at| now.duration_since(at) < PROGRESS_EVERY)
    {
        return;
    }
    progress.logged = Some(now);
    let secs = progress.began.elapsed().as_secs_f64().max(1e-3);
    let behind_s = crate::clock::now_ns().saturating_sub(progress.last_ns) as f64 / 1e9;
    log::info!(
        "ship: {} records shipped, {:.0} records/s; {} records behind, last shipped record \
         received {behind_s:.1} s ago",
        progress.shipped,
        progress.shipped as f64 / secs,
        progress.behind()
    );
}
