//! One server object per shard: a glommio executor pinned to one CPU that owns its
//! listener, connection table, buffers, cached `Date` and counters. Nothing here is
//! shared with another shard; start-up is the only time shards wait on each other.

use std::cell::{Cell, OnceCell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use log::{info, warn};

use crate::accept::{self, ConnTable};
use crate::config::Config;
use crate::fanout::{self, Fanout, Message};
use crate::http::date::DateCache;
use crate::http::parse::Limits;
use crate::index::Index;
use crate::log::recover::{remove_unfinished, scan_shard, shard_dir, ShardScan, TornTail};
use crate::log::Log;
use crate::validate::Validator;
use glommio::channels::channel_mesh::{Full, MeshBuilder};

/// How long shutdown waits for in-flight requests before closing what is left.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Memory each executor registers with io_uring. It counts against `RLIMIT_MEMLOCK`
/// (see [`check_memlock`]); 1 MiB keeps two shards inside the common 8 MiB default.
pub const IO_MEMORY: usize = 1 << 20;

/// What a shard owns.
pub struct Shard {
    pub id: usize,
    pub config: Arc<Config>,
    pub limits: Limits,
    pub date: Rc<DateCache>,
    pub conns: RefCell<ConnTable>,
    pub validator: RefCell<Validator>,
    pub index: RefCell<Index>,
    /// The permissions endpoint's body for each configured principal, in order.
    pub permission_bodies: Vec<Vec<u8>>,
    fanout: OnceCell<Fanout>,
    /// Set once recovery is done.
    log: OnceCell<Rc<Log>>,
    shutting_down: Cell<bool>,
}

impl Shard {
    /// `/readyz` answers 200 only while this is true: recovered, and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.log.get().is_some_and(|log| log.is_healthy()) && !self.shutting_down.get()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    pub fn log(&self) -> Option<&Rc<Log>> {
        self.log.get()
    }

    pub fn fanout(&self) -> Option<&Fanout> {
        self.fanout.get()
    }

    /// A shard with nothing open yet: no listener, no log, not ready.
    pub fn new(id: usize, config: Arc<Config>) -> Shard {
        Shard {
            id,
            limits: config.limits.http(),
            conns: RefCell::new(ConnTable::new(config.limits.max_connections)),
            validator: RefCell::new(Validator::default()),
            index: RefCell::new(Index::default()),
            permission_bodies: config
                .principals
                .iter()
                .map(|p| {
                    crate::handlers::permissions_json(p)
                        .to_string()
                        .into_bytes()
                })
                .collect(),
            fanout: OnceCell::new(),
            config,
            date: Rc::new(DateCache::new()),
            log: OnceCell::new(),
            shutting_down: Cell::new(false),
        }
    }

    /// Recovers this shard's log (and index) and starts its flusher.
    pub async fn open_log(&self) -> Result<(), String> {
        let log = recover(self).await?;
        let _ = self.log.set(log);
        Ok(())
    }
}

/// The CPUs to run shards on: `config.cpus` or the process's affinity mask, cut to
/// `config.shards`. A shard is never placed outside the affinity mask.
pub fn plan_cpus(config: &Config) -> Result<Vec<usize>, String> {
    let allowed = affinity()?;
    let cpus = match &config.cpus {
        Some(list) => {
            if let Some(cpu) = list.iter().find(|c| !allowed.contains(c)) {
                return Err(format!(
                    "--cpus: CPU {cpu} is not in this process's affinity mask {allowed:?}"
                ));
            }
            list.clone()
        }
        None => allowed,
    };
    let shards = config.shards.unwrap_or(cpus.len());
    if shards > cpus.len() {
        return Err(format!(
            "--shards {shards}: only {} CPUs are available ({cpus:?}); one shard per CPU",
            cpus.len()
        ));
    }
    Ok(cpus[..shards].to_vec())
}

fn affinity() -> Result<Vec<usize>, String> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(|e| format!("sched_getaffinity: {e}"))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Makes sure `RLIMIT_MEMLOCK` covers what `shards` executors register with io_uring
/// (each registers its `IO_MEMORY` with three rings), raising the limit where this
/// process may, and otherwise refusing to start with a message saying what to raise.
/// Starting below it is not an option: glommio then fails part-way through registering
/// and its executor thread panics.
pub fn check_memlock(shards: usize) -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let wanted = (shards * IO_MEMORY * 3) as u64;
    let read = || {
        getrlimit(Resource::RLIMIT_MEMLOCK).map_err(|e| format!("getrlimit(RLIMIT_MEMLOCK): {e}"))
    };
    let (soft, hard) = read()?;
    if soft < wanted {
        // Raising the hard limit needs CAP_SYS_RESOURCE; otherwise go as far as it allows.
        if setrlimit(Resource::RLIMIT_MEMLOCK, wanted, hard.max(wanted)).is_err() {
            let _ = setrlimit(Resource::RLIMIT_MEMLOCK, wanted.min(hard), hard);
        }
    }
    let (soft, _) = read()?;
    if soft < wanted {
        return Err(format!(
            "locked-memory limit (ulimit -l) is {} KiB, but {shards} shards need {} KiB for \
             io_uring's registered buffers (3 MiB each): raise it (ulimit -l, or LimitMEMLOCK= \
             in the systemd unit) or run fewer shards (--shards)",
            soft / 1024,
            wanted / 1024
        ));
    }
    Ok(())
}

/// Starts one shard per CPU in `cpus` and blocks until they all end.
///
/// Shard 0 binds first; the others bind the address it got, so `--listen 127.0.0.1:0`
/// gives every shard the same port.
pub fn run(config: Config, cpus: &[usize], stop: Arc<AtomicBool>) -> Result<(), String> {
    let config = Arc::new(config);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mesh: MeshBuilder<Message, Full> = MeshBuilder::full(cpus.len(), 64);
    let mut addr = config.listen;
    let mut handles = Vec::with_capacity(cpus.len());
    for (id, &cpu) in cpus.iter().enumerate() {
        let (bound_tx, bound_rx) = mpsc::channel::<Result<SocketAddr, String>>();
        let shard_config = Arc::clone(&config);
        let ready = ready_tx.clone();
        let stop = Arc::clone(&stop);
        let mesh = mesh.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{id}"))
            .io_memory(IO_MEMORY)
            .spawn(move || async move {
                serve(id, shard_config, addr, bound_tx, ready, stop, mesh).await
            })
            .map_err(|e| format!("cannot start shard {id} on CPU {cpu}: {e}"))?;
        match bound_rx.recv() {
            Ok(Ok(bound)) => addr = bound,
            Ok(Err(message)) => return Err(message),
            // The executor ended before running the shard: io_uring could not be set up.
            Err(_) => {
                let cause = match handle.join() {
                    Err(e) => e.to_string(),
                    Ok(_) => "executor exited early".to_string(),
                };
                return Err(format!(
                    "cannot start shard {id} on CPU {cpu}: {cause}. io_uring needs Linux 5.8+, \
                     must not be blocked by a seccomp profile (Docker's default blocks it), and \
                     needs locked memory (ulimit -l)"
                ));
            }
        }
        handles.push(handle);
    }
    info!("listening on {addr}");
    drop(ready_tx);
    // Every shard reports once its log is recovered; a corrupt log stops the server.
    for _ in 0..handles.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(message),
            Err(_) => return Err("a shard ended during start-up".to_string()),
        }
    }
    info!("ready: {} shards recovered", handles.len());
    for (id, handle) in handles.into_iter().enumerate() {
        handle
            .join()
            .map_err(|e| format!("shard {id} failed: {e}"))?;
    }
    Ok(())
}

async fn serve(
    id: usize,
    config: Arc<Config>,
    addr: SocketAddr,
    bound: mpsc::Sender<Result<SocketAddr, String>>,
    ready: mpsc::Sender<Result<(), String>>,
    stop: Arc<AtomicBool>,
    mesh: MeshBuilder<Message, Full>,
) {
    let listener = match glommio::net::TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = bound.send(Err(format!("cannot listen on {addr}: {e}")));
            return;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    crate::logger::buffer_this_thread();
    glommio::spawn_local(async {
        loop {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            crate::logger::flush_this_thread();
        }
    })
    .detach();
    let shard = Rc::new(Shard::new(id, config));
    glommio::spawn_local(Rc::clone(&shard.date).run()).detach();
    glommio::spawn_local(accept::sweep(Rc::clone(&shard))).detach();
    let _ = bound.send(Ok(local));
    // Serve (readyz says 503) while the log is recovered.
    let acceptor = glommio::spawn_local(accept::run(Rc::clone(&shard), listener));
    let Ok((senders, receivers)) = mesh.join().await else {
        let _ = ready.send(Err(format!("shard {id}: joining the shard mesh failed")));
        return;
    };
    let _ = shard.fanout.set(Fanout::new(senders));
    match shard.open_log().await {
        Ok(()) => {
            // Peers' queries are answered only from a complete index.
            fanout::serve_peers(&shard, receivers);
            let _ = ready.send(Ok(()));
        }
        Err(message) => {
            let _ = ready.send(Err(message));
            return;
        }
    }
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    shutdown(&shard, acceptor).await;
}

/// Scans this shard's log on the blocking pool, cuts a torn tail, starts the flusher.
async fn recover(shard: &Shard) -> Result<Rc<Log>, String> {
    let dir = shard_dir(&shard.config.data_dir, shard.id);
    let shard_no = shard.id as u16;
    let scan_dir = dir.clone();
    let began = Instant::now();
    let (scan, index) = glommio::executor()
        .spawn_blocking(move || -> Result<(ShardScan, Index), String> {
            std::fs::create_dir_all(&scan_dir).map_err(|e| format!("creating {}: {e}", scan_dir.display()))?;
            remove_unfinished(&scan_dir).map_err(|e| format!("cleaning {}: {e}", scan_dir.display()))?;
            let mut index = Index::default();
            let each = |r: &crate::log::record::Record<'_>| index.add_stored(r.kind, r.body, r.received_ns);
            let scan = scan_shard(&scan_dir, shard_no, each).map_err(|c| {
                format!(
                    "shard {shard_no}: corrupt log: {c}. Refusing to start; see README \"Recovering from a corrupt log\""
                )
            })?;
            if let Some(torn) = &scan.torn {
                cut_torn_tail(torn).map_err(|e| format!("cutting torn tail of {}: {e}", torn.path.display()))?;
            }
            Ok((scan, index))
        })
        .await?;
    *shard.index.borrow_mut() = index;
    if let Some(torn) = &scan.torn {
        warn!(
            "shard {}: cut torn tail of {} at offset {} ({}; {} unacknowledged records after it dropped)",
            shard.id,
            torn.path.display(),
            torn.offset,
            torn.reason,
            torn.dropped_records
        );
    }
    info!(
        "shard {}: recovered {} records in {} segments in {:?}; next sequence number {}",
        shard.id,
        scan.records,
        scan.segments,
        began.elapsed(),
        scan.next_seq
    );
    let config = &shard.config;
    let log = Rc::new(Log::new(
        shard_no,
        dir,
        config.segment_bytes,
        config.durability,
        scan.next_seq,
    ));
    let last = scan.last.map(|(segment, pos)| (segment.path, pos));
    glommio::spawn_local(Rc::clone(&log).run_flusher(last)).detach();
    Ok(log)
}

/// Zeroes the torn bytes so that nothing of them can ever read as a record again.
fn cut_torn_tail(torn: &TornTail) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(&torn.path)?;
    let zeros = vec![0u8; 64 << 10];
    let mut at = torn.offset;
    while at < torn.dirty_end {
        let n = (torn.dirty_end - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

/// Graceful shutdown: readyz turns 503, accepting stops, connections are told to close
/// (idle ones at once, busy ones after their current responses), the log is synced.
async fn shutdown(shard: &Shard, acceptor: glommio::Task<()>) {
    shard.shutting_down.set(true);
    let _ = acceptor.cancel().await;
    shard.conns.borrow().shutdown_reads();
    let deadline = Instant::now() + DRAIN_DEADLINE;
    while shard.conns.borrow().live() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    if let Some(log) = shard.log() {
        log.close();
        log.stopped().await;
    }
    info!("shard {}: stopped", shard.id);
    crate::logger::flush_this_thread();
}
