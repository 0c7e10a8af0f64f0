//! One shard's life on its own executor: bind its listener, start its timers
//! (cached `Date`, connection sweeper, log flushes), serve while its log is recovered
//! (`/readyz` says 503 meanwhile), join the mesh, then wait for the stop message and
//! drain: stop accepting, let connections finish their responses, sync the log.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::mpsc::UnboundedReceiver;
use futures_channel::oneshot;
use futures_lite::StreamExt;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use log::{info, warn};

use crate::base::exit::{Exit, Fatal};
use crate::base::task;
use crate::config::Config;
use crate::domain::index::Index;
use crate::domain::keys::{self, Entry, KeyTable};
use crate::domain::ratelimit;
use crate::domain::validate::Validator;
use crate::log::datadir::retired_logs;
use crate::log::files::shard_dir;
use crate::log::locations::Locations;
use crate::log::open::{open_shard, Opened};
use crate::log::record::{Kind, Record};
use crate::log::recover::ScanProgress;
use crate::log::salvage::salvage_shard;
use crate::log::time::ShardTime;
use crate::log::Log;
use crate::net::accept;
use crate::net::conn::table::Connections;
use crate::runtime::owner::ShardOwner;
use crate::runtime::reload::Reload;
use crate::shard::context::Context;
use crate::shard::peers::{self, Message, Peers};

pub mod heartbeat;

use heartbeat::Heartbeat;

/// How long shutdown waits for in-flight requests before closing what is left: longer
/// than a slow fdatasync, shorter than systemd's default stop timeout (90 s).
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// How a shard tells the process where it listens, and then how its start ended (or
/// why it could not start).
pub struct Reports {
    pub bound: mpsc::Sender<Result<SocketAddr, Fatal>>,
    pub ready: mpsc::Sender<Result<Started, Fatal>>,
    /// Once told every shard has recovered: this one now serves requests.
    pub serving: mpsc::Sender<()>,
    /// Stamped while the shard's executor runs, for systemd's watchdog.
    pub heartbeat: Heartbeat,
}

/// What the process tells a shard: serve (every shard has recovered), stop, and put
/// reloaded principals in force.
pub struct Orders {
    pub go: oneshot::Receiver<()>,
    pub stop: oneshot::Receiver<()>,
    pub reload: UnboundedReceiver<Reload>,
}

/// How a shard's start ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Started {
    /// Recovered and serving.
    Ready,
    /// Told to stop while still recovering: it stopped there.
    Stopped,
}

/// Runs shard `id`: serves requests once `go` fires (every shard has recovered), until
/// `stop` fires (or its sender is gone), then drains.
pub async fn serve(
    id: usize,
    config: Arc<Config>,
    addr: SocketAddr,
    reports: Reports,
    orders: Orders,
    mesh: MeshBuilder<Message, Full>,
) {
    let Orders {
        go,
        mut stop,
        reload,
    } = orders;
    let listener = match glommio::net::TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = reports.bound.send(Err(cannot_listen(addr, e.into())));
            return;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    crate::base::logger::buffer_this_thread(id);
    task::spawn("log flush", async {
        loop {
            glommio::timer::sleep(crate::base::logger::FLUSH_EVERY).await;
            crate::base::logger::flush_this_thread();
        }
    })
    .detach();
    let conns = Connections::new(config.limits.max_connections, config.limits.memory_budget());
    let ctx = Rc::new(Context::new(id, config));
    task::spawn("date", ctx.date_cache().run()).detach();
    task::spawn("sweeper", Rc::clone(&conns).sweep()).detach();
    let heartbeat = reports.heartbeat;
    task::spawn("heartbeat", async move {
        loop {
            heartbeat.beat();
            glommio::timer::sleep(heartbeat::BEAT_EVERY).await;
        }
    })
    .detach();
    let _ = reports.bound.send(Ok(local));
    let acceptor = task::spawn(
        "accept",
        accept::run(Rc::clone(&ctx), Rc::clone(&conns), listener),
    );
    let Ok((senders, receivers)) = mesh.join().await else {
        let _ = reports.ready.send(Err(Fatal::new(
            Exit::Fault,
            format!("shard {id}: joining the shard mesh failed"),
        )));
        return;
    };
    ctx.join_peers(Peers::new(senders));
    task::spawn("reload", apply_reloads(Rc::clone(&ctx), reload)).detach();
    // A stop during recovery ends the shard there: nothing was accepted yet.
    let recovered = futures_lite::future::or(async { Some(recover(&ctx).await) }, async {
        let _ = (&mut stop).await;
        None
    })
    .await;
    match recovered {
        Some(Ok(())) => {}
        Some(Err(message)) => {
            let _ = reports.ready.send(Err(message));
            return;
        }
        None => {
            let _ = reports.ready.send(Ok(Started::Stopped));
            return;
        }
    }
    // Peers' queries are answered only from a complete index.
    peers::serve(ctx.index(), Rc::new(ShardOwner(Rc::clone(&ctx))), receivers);
    // Keys in this shard's log that another shard owns (the number of shards changed
    // since they were stored) go to their owners before anything is served.
    if let Some(peers) = ctx.peers() {
        let foreign = ctx.keys().take_foreign(id, peers.shards());
        if !foreign.is_empty() {
            info!(
                "shard {id}: handing {} idempotency keys to their owners",
                foreign.len()
            );
            if let Err(e) = peers.hand_over(foreign).await {
                let _ = reports
                    .ready
                    .send(Err(Fatal::new(Exit::Data, format!("shard {id}: {e}"))));
                return;
            }
        }
    }
    task::spawn("key expiry", expire_keys(Rc::clone(&ctx))).detach();
    task::spawn("watch the live segment", watch_log(Rc::clone(&ctx))).detach();
    task::spawn("rate limit shares", share_rate_limits(Rc::clone(&ctx))).detach();
    let _ = reports.ready.send(Ok(Started::Ready));
    // Serve once the process says every shard has recovered.
    let serving = Rc::clone(&ctx);
    let report = reports.serving;
    task::spawn("start serving", async move {
        if go.await.is_ok() {
            serving.start_serving();
            let _ = report.send(());
        }
    })
    .detach();
    let _ = stop.await;
    shutdown(&ctx, &conns, acceptor).await;
}

/// Why the listener could not bind, with the fix: another address for an address in
/// use, an address this host has, a port this user may bind.
fn cannot_listen(addr: SocketAddr, e: std::io::Error) -> Fatal {
    use std::io::ErrorKind;
    let (exit, fix) = match e.kind() {
        ErrorKind::AddrInUse => (
            Exit::InUse,
            "another process listens there; stop it or choose another address with --listen \
             (or listen in the config file)",
        ),
        ErrorKind::AddrNotAvailable => (
            Exit::Config,
            "no interface of this host has that address; choose another with --listen",
        ),
        ErrorKind::PermissionDenied => (
            Exit::Config,
            "ports below 1024 need CAP_NET_BIND_SERVICE; choose a port of 1024 or more with \
             --listen, or put a proxy in front",
        ),
        _ => (Exit::Config, "check --listen"),
    };
    Fatal::new(exit, format!("cannot listen on {addr}: {e}: {fix}"))
}

/// How often keys past the idempotency window are forgotten.
const KEY_EXPIRY_EVERY: Duration = Duration::from_secs(600);

fn window_ns(config: &Config) -> u64 {
    config.idempotency_window_hours * 3600 * 1_000_000_000
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

/// Puts each reload the process sends in force here, and says so.
async fn apply_reloads(ctx: Rc<Context>, mut reloads: UnboundedReceiver<Reload>) {
    while let Some(reload) = reloads.next().await {
        let update = &reload.update;
        ctx.reload(update.principals.clone(), &update.rates);
        let _ = reload.applied.send(ctx.shard());
    }
}

/// Every [`ratelimit::PERIOD`] while some principal has a limit (a reload may add or
/// remove them): tells the other shards what each principal tried here, and
/// rebalances this shard's share of every limit.
async fn share_rate_limits(ctx: Rc<Context>) {
    loop {
        glommio::timer::sleep(ratelimit::PERIOD).await;
        if !ctx.limiter().is_active() {
            continue;
        }
        let demand = ctx.limiter().tick();
        if let Some(peers) = ctx.peers() {
            peers.send_demand(&demand).await;
        }
    }
}

/// How often an idle shard looks at its live segment.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Has the log look at its live segment every [`WATCH_EVERY`] ([`Log::look`]); a busy
/// one looks before each write group anyway.
async fn watch_log(ctx: Rc<Context>) {
    loop {
        glommio::timer::sleep(WATCH_EVERY).await;
        if let Some(log) = ctx.log() {
            log.look();
        }
    }
}

/// Forgets keys past the idempotency window, every [`KEY_EXPIRY_EVERY`]: measured on
/// the shard's own clock, which no step of the wall clock moves ([`crate::log::time`]).
async fn expire_keys(ctx: Rc<Context>) {
    loop {
        glommio::timer::sleep(KEY_EXPIRY_EVERY).await;
        if let Some(log) = ctx.log() {
            let oldest = log.own_ns().saturating_sub(window_ns(ctx.config()));
            ctx.keys().expire(oldest);
        }
    }
}

/// How often a long recovery says how far it has come.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

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

/// Opens this shard's log on the blocking pool (scan, cut a torn tail, rebuild the
/// index, write the run's manifest), starts the flusher and installs log and index in
/// `ctx`. The index counts a record once it is durable, through the rules for stored
/// bodies ([`Validator::for_stored`]); keys come from the log and from its retired
/// logs.
pub async fn recover(ctx: &Context) -> Result<(), Fatal> {
    let damaged = |e: String| Fatal::new(Exit::Data, e);
    let dir = shard_dir(&ctx.config().data_dir, ctx.shard());
    let shard = ctx.shard() as u16;
    let scan_dir = dir.clone();
    let data_dir = ctx.config().data_dir.clone();
    let shards = ctx.peers().map_or(1, |peers| peers.shards());
    let began = Instant::now();
    #[cfg(feature = "test-seams")]
    let every = ctx
        .config()
        .test_seams
        .progress_every_ms
        .map_or(PROGRESS_EVERY, Duration::from_millis);
    #[cfg(not(feature = "test-seams"))]
    let every = PROGRESS_EVERY;
    let window_ns = window_ns(ctx.config());
    let wall_ns = crate::base::clock::now_ns();
    let (opened, index, keys, locations, time) = glommio::executor()
        .spawn_blocking(
            move || -> Result<(Opened, Index, KeyTable, Locations, ShardTime), String> {
                let mut index = Index::default();
                let mut keys = KeyTable::default();
                let mut locations = Locations::default();
                let mut validator = Validator::for_stored();
                // The window is measured along the chain: from the earlier of the wall
                // clock and the latest receivedAt stored, which only grows as the scan
                // goes, so a key left out on the way is out of the final window too.
                let mut last_ns = 0;
                let each = |r: &Record<'_>, offset: u64| {
                    locations.add(r.seq, offset);
                    last_ns = last_ns.max(r.received_ns);
                    let oldest = wall_ns.min(last_ns).saturating_sub(window_ns);
                    let submission_id = index.add_recovered(&mut validator, r);
                    let key = r.key.or(submission_id.as_deref());
                    if let Some(key) = key.filter(|_| r.received_ns >= oldest) {
                        keys.insert(r.principal, key, key_entry(r));
                    }
                };
                let opened = open_shard(&scan_dir, shard, each, progress_log(shard, began, every))?;
                let time = ShardTime::new(last_ns, wall_ns);
                let oldest_key_ns = time.own_ns().saturating_sub(window_ns);
                keys.expire(oldest_key_ns);
                // A retired log's records are no longer served, but their keys still
                // hold: a retry of one is answered with its first answer, never
                // stored again. Read past any damage, as `export --salvage` reads.
                // This shard reads the retired logs of shard numbers that map to it
                // (all of its own, and any past the shard count), skipping those
                // retired before the window began: none of their keys still holds.
                let mut remembered = 0;
                let mine = retired_logs(&data_dir).into_iter().filter(|l| {
                    usize::from(l.shard) % shards == usize::from(shard)
                        && l.retired_ns >= oldest_key_ns
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
                            .or_else(|| submission_id(&mut validator, r));
                        if let Some(key) = key {
                            keys.insert(r.principal, &key, key_entry(r));
                            remembered += 1;
                        }
                    });
                }
                if remembered > 0 {
                    info!(
                        "shard {shard}: remembered {remembered} idempotency keys of retired logs"
                    );
                }
                Ok((opened, index, keys, locations, time))
            },
        )
        .await
        .map_err(damaged)?;
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
        index.unindexed,
        opened.next_seq
    );
    let config = ctx.config();
    let log = Rc::new(Log::new(
        dir,
        config.segment_bytes,
        config.durability,
        opened.resume(),
        opened.manifest,
        time,
    ));
    let live_index = Rc::clone(ctx.index());
    let live_locations = Rc::clone(ctx.locations());
    *live_locations.borrow_mut() = locations;
    let mut validator = Validator::for_stored();
    let on_durable = move |r: &Record<'_>, offset: u64| {
        live_locations.borrow_mut().add(r.seq, offset);
        live_index.borrow_mut().add_stored(&mut validator, r);
    };
    task::spawn(
        "flusher",
        Rc::clone(&log).run_flusher(opened.last, on_durable),
    )
    .detach();
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

/// Graceful shutdown: readyz turns 503, accepting stops, connections are told to close
/// (idle ones at once, busy ones after their current responses), the log is synced.
async fn shutdown(ctx: &Context, conns: &Connections, acceptor: glommio::Task<()>) {
    ctx.begin_shutdown();
    let _ = acceptor.cancel().await;
    conns.shutdown_reads();
    let drained = glommio::timer::timeout(DRAIN_DEADLINE, async {
        conns.drained().await;
        Ok(())
    });
    if drained.await.is_err() {
        warn!(
            "shard {}: {} connections still busy after {DRAIN_DEADLINE:?}; closing them",
            ctx.shard(),
            conns.live()
        );
    }
    if let Some(log) = ctx.log() {
        log.close();
        log.stopped().await;
    }
    info!("shard {}: stopped", ctx.shard());
    crate::base::logger::flush_this_thread();
}
