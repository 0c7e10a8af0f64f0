//! Recovery at start: the shard's log scanned on the blocking pool (a torn tail cut,
//! the read index and the idempotency keys rebuilt, keys of retired logs remembered),
//! what it found said in the log, then the log opened for writing with its flusher.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::chores::window_ns;
use crate::base::exit::{Exit, Fatal};
use crate::base::gate::Gate;
use crate::base::task;
use crate::config::Config;
use crate::domain::index::Index;
use crate::domain::keys::{self, Entry, KeyTable};
use crate::domain::validate::Validator;
use crate::log::datadir::retired_logs;
use crate::log::files::shard_dir;
use crate::log::locations::Locations;
use crate::log::manifest::RESERVE_BLOCK;
use crate::log::open::{open_shard, Opened};
use crate::log::record::{Kind, Record};
use crate::log::recover::ScanProgress;
use crate::log::salvage::salvage_shard;
use crate::log::time::ShardTime;
use crate::log::Log;
use crate::shard::context::Context;

/// How often a long recovery says how far it has come.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Opens this shard's log on the blocking pool (scan, cut a torn tail, rebuild the
/// index, write the run's manifest), starts the flusher inside `gate` (closing it
/// waits for the flusher's last sync) and installs log and index in `ctx`. The index
/// counts a record once it is durable, through the rules for stored bodies
/// ([`Validator::for_stored`]); keys come from the log and from its retired logs.
pub async fn recover(ctx: &Context, gate: &Gate) -> Result<(), Fatal> {
    let plan = Plan::new(ctx);
    let shard = plan.shard;
    let began = plan.began;
    let scanned = glommio::executor()
        .spawn_blocking(move || scan(plan))
        .await
        .map_err(|e| Fatal::new(Exit::Data, e))?;
    report(shard, &scanned, began);
    open_for_writing(ctx, scanned, gate).await
}

/// What the scan on the blocking pool needs to know.
struct Plan {
    dir: PathBuf,
    data_dir: PathBuf,
    shard: u16,
    shards: usize,
    began: Instant,
    /// How often the scan says how far it has come.
    every: Duration,
    window_ns: u64,
    wall_ns: u64,
    reserve_block: u64,
}

impl Plan {
    fn new(ctx: &Context) -> Plan {
        #[cfg(feature = "test-seams")]
        let every = ctx
            .config()
            .test_seams
            .progress_every_ms
            .map_or(PROGRESS_EVERY, Duration::from_millis);
        #[cfg(not(feature = "test-seams"))]
        let every = PROGRESS_EVERY;
        Plan {
            dir: shard_dir(&ctx.config().data_dir, ctx.shard()),
            data_dir: ctx.config().data_dir.clone(),
            shard: ctx.shard() as u16,
            shards: ctx.peers().map_or(1, |peers| peers.shards()),
            began: Instant::now(),
            every,
            window_ns: window_ns(ctx.config()),
            wall_ns: crate::base::clock::now_ns(),
            reserve_block: reserve_block(ctx.config()),
        }
    }
}

/// How many ids a manifest reserves at a time: [`RESERVE_BLOCK`], or what a test sets
/// (`test-seams` builds).
fn reserve_block(config: &Config) -> u64 {
    #[cfg(feature = "test-seams")]
    if let Some(block) = config.test_seams.reserve_block {
        return block.max(2);
    }
    let _ = config;
    RESERVE_BLOCK
}

/// What the scan rebuilt.
struct Scanned {
    opened: Opened,
    index: Index,
    keys: KeyTable,
    locations: Locations,
    time: ShardTime,
}

/// The scan itself, on the blocking pool: the log, then the keys of retired logs.
fn scan(plan: Plan) -> Result<Scanned, String> {
    let mut index = Index::default();
    let mut keys = KeyTable::default();
    let mut locations = Locations::default();
    let mut validator = Validator::for_stored();
    // The window is measured along the chain: from the earlier of the wall clock and
    // the latest receivedAt stored, which only grows as the scan goes, so a key left
    // out on the way is out of the final window too.
    let mut last_ns = 0;
    let each = |r: &Record<'_>, offset: u64| {
        locations.add(r.seq, offset);
        last_ns = last_ns.max(r.received_ns);
        let oldest = plan.wall_ns.min(last_ns).saturating_sub(plan.window_ns);
        let submission_id = index.add_recovered(&mut validator, r);
        let key = r.key.or(submission_id.as_deref());
        if let Some(key) = key.filter(|_| r.received_ns >= oldest) {
            keys.insert(r.principal, key, key_entry(r));
        }
    };
    let progress = progress_log(plan.shard, plan.began, plan.every);
    let opened = open_shard(&plan.dir, plan.shard, plan.reserve_block, each, progress)?;
    let time = ShardTime::new(last_ns, plan.wall_ns);
    let oldest_key_ns = time.own_ns().saturating_sub(plan.window_ns);
    keys.expire(oldest_key_ns);
    remember_retired_keys(&plan, oldest_key_ns, &mut keys, &mut validator);
    Ok(Scanned {
        opened,
        index,
        keys,
        locations,
        time,
    })
}

/// A retired log's records are no longer served, but their keys still hold: a retry
/// of one is answered with its first answer, never stored again. Read past any damage,
/// as `export --salvage` reads. This shard reads the retired logs of shard numbers
/// that map to it (all of its own, and any past the shard count), skipping those
/// retired before the window began (`oldest_key_ns`): none of their keys still holds.
fn remember_retired_keys(
    plan: &Plan,
    oldest_key_ns: u64,
    keys: &mut KeyTable,
    validator: &mut Validator,
) {
    let shard = plan.shard;
    let mut remembered = 0;
    let mine = retired_logs(&plan.data_dir).into_iter().filter(|l| {
        usize::from(l.shard) % plan.shards == usize::from(shard) && l.retired_ns >= oldest_key_ns
    });
    for retired in mine {
        info!("shard {shard}: reading keys of {}", retired.path.display());
        salvage_shard(&retired.path, retired.shard, |r, _| {
            if r.received_ns < oldest_key_ns {
                return;
            }
            let key = r
                .key
                .map(str::to_owned)
                .or_else(|| submission_id(validator, r));
            if let Some(key) = key {
                keys.insert(r.principal, &key, key_entry(r));
                remembered += 1;
            }
        });
    }
    if remembered > 0 {
        info!("shard {shard}: remembered {remembered} idempotency keys of retired logs");
    }
}

/// Says what the scan found: a torn tail cut, and what was recovered.
fn report(shard: u16, scanned: &Scanned, began: Instant) {
    let opened = &scanned.opened;
    if let Some(torn) = &opened.scan.torn {
        warn!(
            "shard {shard}: cut torn tail of {} at offset {}..{} ({}): the last write group, never \
             synced; {} valid records after the damage were cut with it; bytes saved in {}",
            torn.path.display(),
            torn.offset,
            torn.dirty_end,
            torn.reason,
            torn.valid_after,
            opened.torn_copy.as_deref().map_or("-".into(), |p| p.display().to_string()),
        );
    }
    info!(
        "shard {shard}: recovered {} records in {} segments in {:?} ({} not counted in reads); \
         next sequence number {}",
        opened.scan.records,
        opened.scan.segments,
        began.elapsed(),
        scanned.index.unindexed,
        opened.next_seq
    );
}

/// Makes the log writable: starts its flusher inside `gate`, which feeds the live
/// index and record locations as records become durable, waits for a segment to write
/// to, and installs log, index and keys in `ctx`.
async fn open_for_writing(ctx: &Context, scanned: Scanned, gate: &Gate) -> Result<(), Fatal> {
    let Scanned {
        opened,
        index,
        keys,
        locations,
        time,
    } = scanned;
    let shard = ctx.shard();
    let config = ctx.config();
    let log = Rc::new(Log::new(
        shard_dir(&config.data_dir, shard),
        config.segment_bytes,
        config.durability,
        opened.resume(),
        opened.manifest,
        reserve_block(config),
        time,
    ));
    let live_index = Rc::clone(ctx.index());
    let live_locations = Rc::clone(ctx.locations());
    *live_locations.borrow_mut() = locations;
    let mut validator = Validator::for_stored();
    let on_durable = move |r: &Record<'_>, offset: u64| {
        live_locations.borrow_mut().add(r.seq, offset);
        live_index.borrow_mut().add_durable(&mut validator, r);
    };
    let flusher = Rc::clone(&log).run_flusher(opened.last, on_durable);
    task::spawn("flusher", gate.inside(flusher)).detach();
    // Not ready until there is a segment to write to; a full disk is waited out here.
    log.started().await;
    if !log.is_healthy() {
        // A filesystem without fallocate never gets better: no restart helps.
        let exit = match log.unsupported_filesystem() {
            true => Exit::Unsupported,
            false => Exit::Data,
        };
        return Err(Fatal::new(
            exit,
            format!("shard {shard}: cannot open its log for writing (see the error above)"),
        ));
    }
    ctx.open(log, index, keys);
    Ok(())
}

/// A recovery's progress reporter: a log line about once a second (segments, records,
/// MB/s and the time left at that rate), so a long start is never silent.
fn progress_log(shard: u16, began: Instant, every: Duration) -> impl FnMut(&ScanProgress) {
    let mut last = began;
    move |p: &ScanProgress| {
        if last.elapsed() < every {
            return;
        }
        last = Instant::now();
        let mb = p.bytes as f64 / 1e6;
        let rate = mb / began.elapsed().as_secs_f64();
        let left = (p.total_bytes.saturating_sub(p.bytes)) as f64 / 1e6 / rate.max(1e-3);
        info!(
            "shard {shard}: recovering: {}/{} segments, {} records, {mb:.0} of {:.0} MB at \
             {rate:.0} MB/s, about {left:.0} s left",
            p.segments_done,
            p.segments,
            p.records,
            p.total_bytes as f64 / 1e6,
        );
    }
}

/// A stored report's `submissionId`, if it has one.
fn submission_id(validator: &mut Validator, r: &Record<'_>) -> Option<String> {
    match r.kind {
        Kind::Report => validator
            .submit(r.body, |s| s.submission_id.map(str::to_owned))
            .ok()
            .flatten(),
        _ => None,
    }
}

fn key_entry(r: &Record<'_>) -> Entry {
    Entry {
        kind: r.kind,
        shard: r.shard,
        seq: r.seq,
        received_ns: r.received_ns,
        body_hash: keys::body_hash(r.body),
    }
}
