//! One server object per shard: a glommio executor pinned to one CPU that owns its
//! listener, connection table, buffers, cached `Date` and counters. Nothing here is
//! shared with another shard; start-up is the only time shards wait on each other.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;

use glommio::{LocalExecutorBuilder, Placement};
use log::info;

use crate::accept::{self, ConnTable};
use crate::config::Config;
use crate::http::date::DateCache;
use crate::http::parse::Limits;

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
    ready: Cell<bool>,
}

impl Shard {
    /// `/readyz` answers 200 only while this is true.
    pub fn is_ready(&self) -> bool {
        self.ready.get()
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

/// Raises the soft `RLIMIT_MEMLOCK` towards what `shards` executors register, if the
/// hard limit allows; refuses to start below glommio's floor with a message saying what
/// to raise. Each executor registers its `IO_MEMORY` with three rings.
pub fn check_memlock(shards: usize) -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    const GLOMMIO_FLOOR: u64 = 512 * 1024;
    let wanted = (shards * IO_MEMORY * 3) as u64;
    let (soft, hard) = getrlimit(Resource::RLIMIT_MEMLOCK)
        .map_err(|e| format!("getrlimit(RLIMIT_MEMLOCK): {e}"))?;
    if soft < wanted && hard > soft {
        let _ = setrlimit(Resource::RLIMIT_MEMLOCK, wanted.min(hard), hard);
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_MEMLOCK)
        .map_err(|e| format!("getrlimit(RLIMIT_MEMLOCK): {e}"))?;
    if soft < GLOMMIO_FLOOR {
        return Err(format!(
            "locked-memory limit (ulimit -l) is {} KiB; io_uring needs at least {} KiB per process \
             and {} KiB for {shards} shards: raise it (ulimit -l, or LimitMEMLOCK= in the systemd unit)",
            soft / 1024,
            GLOMMIO_FLOOR / 1024,
            wanted / 1024
        ));
    }
    if soft < wanted {
        log::warn!(
            "locked-memory limit is {} KiB, below the {} KiB that {shards} shards register; \
             io_uring falls back to unregistered buffers (slower). Raise ulimit -l.",
            soft / 1024,
            wanted / 1024
        );
    }
    Ok(())
}

/// Starts one shard per CPU in `cpus` and blocks until they all end.
///
/// Shard 0 binds first; the others bind the address it got, so `--listen 127.0.0.1:0`
/// gives every shard the same port.
pub fn run(config: Config, cpus: &[usize]) -> Result<(), String> {
    let config = Arc::new(config);
    let mut addr = config.listen;
    let mut handles = Vec::with_capacity(cpus.len());
    for (id, &cpu) in cpus.iter().enumerate() {
        let (bound_tx, bound_rx) = mpsc::channel::<Result<SocketAddr, String>>();
        let shard_config = Arc::clone(&config);
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{id}"))
            .io_memory(IO_MEMORY)
            .spawn(move || async move { serve(id, shard_config, addr, bound_tx).await })
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
) {
    let listener = match glommio::net::TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = bound.send(Err(format!("cannot listen on {addr}: {e}")));
            return;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let shard = Rc::new(Shard {
        id,
        limits: config.limits.http(),
        conns: RefCell::new(ConnTable::new(config.limits.max_connections)),
        config,
        date: Rc::new(DateCache::new()),
        ready: Cell::new(true),
    });
    glommio::spawn_local(Rc::clone(&shard.date).run()).detach();
    let _ = bound.send(Ok(local));
    accept::run(shard, listener).await;
}
