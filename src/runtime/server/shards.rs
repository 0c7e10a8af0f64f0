//! The shards as the process sees them: the channels between the process and each
//! shard ([`wire`]), each started on its own pinned executor once the one before has
//! bound ([`start_shards`]), and the wait until every one has recovered and serves.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;

use futures_channel::mpsc::UnboundedReceiver;
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use log::info;

use super::{notify_systemd, starting, IO_MEMORY};
use crate::base::exit::{Exit, Fatal};
use crate::config::Config;
use crate::runtime::listen;
use crate::runtime::reload::Reload;
use crate::runtime::shard::heartbeat::Heartbeats;
use crate::runtime::shard::{self, Orders, Reports, Started};
use crate::shard::peers::Message;

/// Capacity of each channel of the shard mesh: queries waiting for one peer.
const MESH_CHANNEL: usize = 64;

/// The process's ends of what it shares with its shards.
pub(super) struct Process {
    /// One per shard: serve now.
    gos: Vec<oneshot::Sender<()>>,
    ready: mpsc::Receiver<Result<Started, Fatal>>,
    serving: mpsc::Receiver<()>,
    pub ended: mpsc::Receiver<usize>,
    pub heartbeats: Heartbeats,
}

/// One shard's ends, moved onto its executor, and where it says it listens.
pub(super) struct Link {
    reports: Reports,
    orders: Orders,
    ended: Ended,
    bound: mpsc::Receiver<Result<SocketAddr, Fatal>>,
}

/// The channels between the process and each shard: one stop and one reload
/// receiver per shard, from the signal thread and the reloader.
pub(super) fn wire(
    stops: Vec<oneshot::Receiver<()>>,
    reloads: Vec<UnboundedReceiver<Reload>>,
) -> (Process, Vec<Link>) {
    let (ended_tx, ended) = mpsc::channel::<usize>();
    let (ready_tx, ready) = mpsc::channel::<Result<Started, Fatal>>();
    let (serving_tx, serving) = mpsc::channel::<()>();
    let heartbeats = Heartbeats::new(stops.len());
    let mut gos = Vec::with_capacity(stops.len());
    let mut links = Vec::with_capacity(stops.len());
    for (shard, (stop, reload)) in stops.into_iter().zip(reloads).enumerate() {
        let (go_tx, go) = oneshot::channel();
        gos.push(go_tx);
        let (bound_tx, bound) = mpsc::channel::<Result<SocketAddr, Fatal>>();
        let reports = Reports {
            bound: bound_tx,
            ready: ready_tx.clone(),
            serving: serving_tx.clone(),
            heartbeat: heartbeats.of(shard),
        };
        let orders = Orders { stop, go, reload };
        let ended = Ended {
            shard,
            tx: ended_tx.clone(),
        };
        links.push(Link {
            reports,
            orders,
            ended,
            bound,
        });
    }
    let process = Process {
        gos,
        ready,
        serving,
        ended,
        heartbeats,
    };
    (process, links)
}

/// Starts each shard on its CPU, one after another, each once the one before has
/// bound: shard 0 binds first and the others bind the address it got. Claims the
/// address (before binding, unless its port is 0) and says where the server listens.
pub(super) fn start_shards(
    config: &Arc<Config>,
    cpus: &[usize],
    links: Vec<Link>,
) -> Result<(Vec<ExecutorJoinHandle<()>>, Option<listen::Claim>), Fatal> {
    let mut addr = config.listen;
    // Claimed before binding; with port 0, once shard 0 has its port.
    let mut claim = match addr.port() {
        0 => None,
        _ => Some(listen::claim_before_bind(addr).map_err(|m| Fatal::new(Exit::InUse, m))?),
    };
    let mesh: MeshBuilder<Message, Full> = MeshBuilder::full(cpus.len(), MESH_CHANNEL);
    let mut handles = Vec::with_capacity(cpus.len());
    starting::quiet_executor_panics();
    for ((id, &cpu), link) in cpus.iter().enumerate().zip(links) {
        let (handle, bound) = start_shard(id, cpu, config, addr, mesh.clone(), link)?;
        addr = bound;
        if claim.is_none() {
            claim = Some(listen::claim(addr).map_err(|m| Fatal::new(Exit::InUse, m))?);
        }
        handles.push(handle);
    }
    info!("listening on {addr}");
    Ok((handles, claim))
}

/// Starts shard `id` on an executor pinned to `cpu` and waits until it has bound
/// `addr`: its handle and the address it got.
fn start_shard(
    id: usize,
    cpu: usize,
    config: &Arc<Config>,
    addr: SocketAddr,
    mesh: MeshBuilder<Message, Full>,
    link: Link,
) -> Result<(ExecutorJoinHandle<()>, SocketAddr), Fatal> {
    let Link {
        reports,
        orders,
        ended,
        bound,
    } = link;
    let shard_config = Arc::clone(config);
    let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(&format!("shard-{id}"))
        .io_memory(IO_MEMORY)
        .spawn(move || async move {
            starting::executor_up();
            let _ended = ended;
            shard::serve(id, shard_config, addr, reports, orders, mesh).await
        })
        .map_err(|e| format!("cannot start shard {id} on CPU {cpu}: {e}"))?;
    match bound.recv() {
        Ok(Ok(bound)) => Ok((handle, bound)),
        Ok(Err(fatal)) => Err(fatal),
        // The executor ended before running the shard: io_uring could not be set up.
        Err(_) => {
            let cause = match handle.join() {
                Err(e) => e.to_string(),
                Ok(_) => "executor exited early".to_string(),
            };
            Err(starting::no_io_uring(id, cpu, &cause))
        }
    }
}

impl Process {
    /// Waits for every shard to recover (a corrupt log stops the server), tells each
    /// to serve, and says ready once all do. False when a stop signal came during
    /// recovery: the process then ends at once, without waiting for the scans still
    /// running on the blocking threads.
    pub(super) fn wait_ready(&mut self, shards: usize) -> Result<bool, Fatal> {
        for _ in 0..shards {
            match self.ready.recv() {
                Ok(Ok(Started::Ready)) => {}
                Ok(Ok(Started::Stopped)) => {
                    info!("stopped during recovery, before accepting any record");
                    return Ok(false);
                }
                Ok(Err(fatal)) => return Err(fatal),
                Err(_) => return Err(Fatal::new(Exit::Fault, "a shard ended during start-up")),
            }
        }
        for go in self.gos.drain(..) {
            let _ = go.send(());
        }
        for _ in 0..shards {
            if self.serving.recv().is_err() {
                return Err(Fatal::new(Exit::Fault, "a shard ended before serving"));
            }
        }
        info!("ready: {shards} shards recovered");
        notify_systemd(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("serving"),
        ]);
        Ok(true)
    }
}

/// Reports a shard's end to the process, however it ended: returning, or a panic
/// unwinding out of its executor.
struct Ended {
    shard: usize,
    tx: mpsc::Sender<usize>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.tx.send(self.shard);
    }
}
