//! The process: which CPUs get a shard, the locked memory io_uring needs, one glommio
//! executor pinned per CPU running [`crate::runtime::shard::serve`], SIGTERM/SIGINT delivered to
//! every shard by message, and the exit once every shard has ended. Start-up is the
//! only time shards wait on each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_channel::mpsc::unbounded;
use futures_channel::oneshot;
use log::{info, warn};

use crate::base::exit::{Exit, Fatal};
use crate::config::Config;
use crate::runtime::reload::{Reload, Reloader};

mod shards;
mod starting;
mod watchdog;

/// Memory each executor registers with io_uring. It counts against `RLIMIT_MEMLOCK`
/// (see [`check_memlock`]); 1 MiB keeps two shards inside the common 8 MiB default.
pub const IO_MEMORY: usize = 1 << 20;

/// The CPUs to run shards on: `config.cpus` or the process's affinity mask, cut to
/// `config.shards`. A shard is never placed outside the affinity mask.
pub fn plan_cpus(config: &Config) -> Result<Vec<usize>, String> {
    let allowed = affinity()?;
    let cpus = match &config.cpus {
        Some(list) => {
            if let Some(cpu) = list.iter().find(|c| !allowed.contains(c)) {
                return Err(format!(
                    "{}: CPU {cpu} is not in this process's affinity mask {allowed:?}",
                    config.cpus_from
                ));
            }
            list.clone()
        }
        None => allowed,
    };
    let shards = config.shards.unwrap_or(cpus.len());
    if shards > cpus.len() {
        return Err(format!(
            "{} = {shards}: only {} CPUs are available ({cpus:?}); one shard per CPU",
            config.shards_from,
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

/// Descriptors a shard needs besides its connections: listener, io_uring rings, log
/// segment and manifest, the blocking pool's files, with room to spare.
const FDS_PER_SHARD: u64 = 32;

/// Makes sure `RLIMIT_NOFILE` holds `limits.max_connections` per shard plus what the
/// shards need besides: raises the soft limit to the hard one, and where even that is
/// too low, lowers `max_connections` to fit and says so, as a warning when it cuts more
/// than a tenth (or refuses when not even one connection per shard fits). Without this, accept fails with EMFILE under load and
/// clients wait in the accept queue.
pub fn check_nofile(config: &mut Config, shards: usize) -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let shards = shards as u64;
    let wanted = config.limits.max_connections as u64 * shards + FDS_PER_SHARD * shards + 64;
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit(RLIMIT_NOFILE): {e}"))?;
    let limit = if soft < wanted {
        let raised = wanted.min(hard);
        setrlimit(Resource::RLIMIT_NOFILE, raised, hard)
            .map_err(|e| format!("setrlimit(RLIMIT_NOFILE): {e}"))?;
        raised
    } else {
        soft
    };
    if limit >= wanted {
        return Ok(());
    }
    let fits = limit.saturating_sub(FDS_PER_SHARD * shards + 64) / shards;
    if fits == 0 {
        return Err(format!(
            "open-file limit (ulimit -n) is {limit}: too low for {shards} shards; raise it \
             (ulimit -n, or LimitNOFILE= in the systemd unit)"
        ));
    }
    // A cut of a few percent (a hard limit of 20000 under 2 x 10000 connections, say)
    // is no news to warn about; a large one is.
    let level = if fits * 10 >= config.limits.max_connections as u64 * 9 {
        log::Level::Info
    } else {
        log::Level::Warn
    };
    log::log!(
        level,
        "open-file limit (ulimit -n) is {limit}: limits.max_connections lowered from {} to \
         {fits} per shard; raise the limit (ulimit -n, LimitNOFILE=) to keep {}",
        config.limits.max_connections,
        config.limits.max_connections
    );
    config.limits.max_connections = fits as usize;
    Ok(())
}

/// Starts one shard per CPU in `cpus` and blocks until they all end, which they do
/// after SIGTERM or SIGINT.
///
/// Shard 0 binds first; the others bind the address it got, so `--listen 127.0.0.1:0`
/// gives every shard the same port.
pub fn run(config: Config, cpus: &[usize]) -> Result<(), Fatal> {
    let config = Arc::new(config);
    let stopping = Arc::new(AtomicBool::new(false));
    let (reload_txs, reload_rxs): (Vec<_>, Vec<_>) =
        (0..cpus.len()).map(|_| unbounded::<Reload>()).unzip();
    let reloader = Reloader::new(Config::clone(&config), reload_txs);
    let stops = watch_signals(cpus.len(), Arc::clone(&stopping), reloader)?;
    let (mut process, links) = shards::wire(stops, reload_rxs);
    // The claim on the address lives as long as the shards serve.
    let (handles, _claim) = shards::start_shards(&config, cpus, links)?;
    if !process.wait_ready(handles.len())? {
        return Ok(());
    }
    // A shard ends only when told to stop. One that ends otherwise (a panic that
    // escaped a task, a fatal error) ends the process, loudly, rather than leaving it
    // half-serving: a supervisor then restarts it whole.
    let first = watchdog::watch(&process.heartbeats, &process.ended);
    if !stopping.load(Ordering::SeqCst) {
        return Err(Fatal::new(
            Exit::Fault,
            format!(
                "shard {first} ended while serving (see the panic or error above); exiting so \
                 that a supervisor restarts the whole server"
            ),
        ));
    }
    for (id, handle) in handles.into_iter().enumerate() {
        handle
            .join()
            .map_err(|e| Fatal::new(Exit::Fault, format!("shard {id} failed: {e}")))?;
    }
    Ok(())
}

/// Tells systemd (`Type=notify`) how the service is doing; nothing without
/// `NOTIFY_SOCKET`. A failure to tell is logged, not fatal: serving matters more.
fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        warn!("telling systemd the service state failed: {e}");
    }
}

/// Installs the signal handling: a thread that, on the first SIGTERM or SIGINT, tells
/// each of `shards` shards through its own channel, and on SIGHUP (`systemctl reload`)
/// has `reloader` put the config file's principals in force. Returns the receiving
/// ends of the stops.
fn watch_signals(
    shards: usize,
    stopping: Arc<AtomicBool>,
    mut reloader: Reloader,
) -> Result<Vec<oneshot::Receiver<()>>, String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("installing signal handlers: {e}"))?;
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards).map(|_| oneshot::channel()).unzip();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    notify_systemd(&[sd_notify::NotifyState::Reloading]);
                    reloader.reload();
                    notify_systemd(&[
                        sd_notify::NotifyState::Ready,
                        sd_notify::NotifyState::Status("serving"),
                    ]);
                    continue;
                }
                info!("signal {signal}: shutting down");
                notify_systemd(&[sd_notify::NotifyState::Stopping]);
                stopping.store(true, Ordering::SeqCst);
                for stop in senders {
                    let _ = stop.send(());
                }
                break;
            }
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;
    Ok(receivers)
}
