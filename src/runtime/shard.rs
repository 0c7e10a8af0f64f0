//! One shard's life on its own executor: bind its listener, start its timers
//! (cached `Date`, connection sweeper, log flushes), serve while its log is recovered
//! (`/readyz` says 503 meanwhile), join the mesh, then wait for the stop message and
//! drain by closing its gates ([`Gate`]) in order: the front (stop accepting, let
//! connections finish their responses), the answers to peers (once every shard's front
//! has closed: [`fronts`]), the log (its last sync), the timers.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use futures_channel::mpsc::UnboundedReceiver;
use futures_channel::oneshot;
use futures_lite::StreamExt;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use log::{info, warn};

use crate::base::exit::{Exit, Fatal};
use crate::base::gate::Gate;
use crate::base::task;
use crate::config::Config;
use crate::net::accept;
use crate::net::conn::table::Connections;
use crate::runtime::owner::ShardOwner;
use crate::runtime::reload::Reload;
use crate::shard::context::Context;
use crate::shard::peers::{self, Message, Peers};

pub mod chores;
pub mod fronts;
pub mod heartbeat;
pub mod recovery;

use fronts::Fronts;
use heartbeat::Heartbeat;
pub use recovery::recover;

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

/// The shard's gates, closed in this order at shutdown: the front (the accept loop
/// and every connection), then the answers to peers (their message loops and the
/// work those start), then the log (its flusher, its watcher), then the timers.
#[derive(Default)]
struct Gates {
    front: Gate,
    peers: Gate,
    log: Gate,
    timers: Gate,
}

/// What a shard that listens holds until it has stopped.
struct Shard {
    ctx: Rc<Context>,
    conns: Rc<Connections>,
    gates: Gates,
    fronts: Fronts,
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
    let Some(shard) = Shard::listen(id, config, addr, &reports.bound, reports.heartbeat) else {
        return;
    };
    let started = shard.start(mesh, reload, &mut stop).await;
    let ready = matches!(started, Ok(Started::Ready));
    let _ = reports.ready.send(started);
    if !ready {
        return;
    }
    // Serve once the process says every shard has recovered.
    let serving = Rc::clone(&shard.ctx);
    let report = reports.serving;
    task::spawn("start serving", async move {
        if go.await.is_ok() {
            serving.start_serving();
            let _ = report.send(());
        }
    })
    .detach();
    let _ = stop.await;
    shard.shutdown().await;
}

impl Shard {
    /// Binds the shard's listener, starts its timers, says where it listens and starts
    /// accepting; `None` once it said why it cannot listen.
    fn listen(
        id: usize,
        config: Arc<Config>,
        addr: SocketAddr,
        bound: &mpsc::Sender<Result<SocketAddr, Fatal>>,
        heartbeat: Heartbeat,
    ) -> Option<Shard> {
        let listener = match glommio::net::TcpListener::bind(addr) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = bound.send(Err(cannot_listen(addr, e.into())));
                return None;
            }
        };
        let local = listener.local_addr().unwrap_or(addr);
        crate::base::logger::buffer_this_thread(id);
        let shard = Shard {
            conns: Connections::new(config.limits.max_connections, config.limits.memory_budget()),
            ctx: Rc::new(Context::new(id, config)),
            gates: Gates::default(),
            fronts: Fronts::default(),
        };
        shard.start_timers(heartbeat);
        let _ = bound.send(Ok(local));
        let (ctx, conns) = (Rc::clone(&shard.ctx), Rc::clone(&shard.conns));
        let front = shard.gates.front.clone();
        task::spawn("accept", accept::run(ctx, conns, listener, front)).detach();
        Some(shard)
    }

    /// The shard's timers, which run until their gate closes: log lines flushed, the
    /// cached `Date`, the connection sweeper, the heartbeat.
    fn start_timers(&self, heartbeat: Heartbeat) {
        let timers = &self.gates.timers;
        let flush_lines = async {
            loop {
                glommio::timer::sleep(crate::base::logger::FLUSH_EVERY).await;
                crate::base::logger::flush_this_thread();
            }
        };
        task::spawn("log flush", timers.until_closing(flush_lines)).detach();
        let date = self.ctx.date_cache().run();
        task::spawn("date", timers.until_closing(date)).detach();
        let sweep = Rc::clone(&self.conns).sweep();
        task::spawn("sweeper", timers.until_closing(sweep)).detach();
        let beat = async move {
            loop {
                heartbeat.beat();
                glommio::timer::sleep(heartbeat::BEAT_EVERY).await;
            }
        };
        task::spawn("heartbeat", timers.until_closing(beat)).detach();
    }

    /// Joins the mesh and recovers the log (a stop meanwhile ends the start there:
    /// nothing was accepted yet), then answers peers, hands foreign keys over and
    /// starts the chores of a recovered shard.
    async fn start(
        &self,
        mesh: MeshBuilder<Message, Full>,
        reload: UnboundedReceiver<Reload>,
        stop: &mut oneshot::Receiver<()>,
    ) -> Result<Started, Fatal> {
        let ctx = &self.ctx;
        let Ok((senders, receivers)) = mesh.join().await else {
            return Err(Fatal::new(
                Exit::Fault,
                format!("shard {}: joining the shard mesh failed", ctx.shard()),
            ));
        };
        ctx.join_peers(Peers::new(senders));
        task::spawn("reload", apply_reloads(Rc::clone(ctx), reload)).detach();
        let recovered =
            futures_lite::future::or(async { Some(recover(ctx, &self.gates.log).await) }, async {
                let _ = stop.await;
                None
            })
            .await;
        match recovered {
            Some(result) => result?,
            None => return Ok(Started::Stopped),
        }
        // Peers' queries are answered only from a complete index.
        let owner = ShardOwner {
            ctx: Rc::clone(ctx),
            gate: self.gates.peers.clone(),
            fronts: self.fronts.heard(),
        };
        peers::serve(ctx.index(), Rc::new(owner), receivers, &self.gates.peers);
        hand_over_foreign_keys(ctx).await?;
        self.start_chores();
        Ok(Started::Ready)
    }

    /// What a recovered shard does every so often: keys expire, the live segment is
    /// looked at, rate limits are shared.
    fn start_chores(&self) {
        let (ctx, timers) = (&self.ctx, &self.gates.timers);
        let expiry = timers.until_closing(chores::expire_keys(Rc::clone(ctx)));
        task::spawn("key expiry", expiry).detach();
        let watch = self
            .gates
            .log
            .until_closing(chores::watch_log(Rc::clone(ctx)));
        task::spawn("watch the live segment", watch).detach();
        let shares = timers.until_closing(chores::share_rate_limits(Rc::clone(ctx)));
        task::spawn("rate limit shares", shares).detach();
    }

    /// Graceful shutdown: readyz turns 503; the front closes (accepting stops,
    /// connections are told to close: idle ones at once, busy ones after their current
    /// responses, within [`DRAIN_DEADLINE`]); peers are answered until their fronts
    /// have closed too (within another [`DRAIN_DEADLINE`]); the log is synced; the
    /// timers stop.
    async fn shutdown(mut self) {
        self.drain_front().await;
        self.wait_for_peer_fronts().await;
        self.gates.peers.close().await;
        if let Some(log) = self.ctx.log() {
            log.close();
        }
        self.gates.log.close().await;
        self.gates.timers.close().await;
        info!("shard {}: stopped", self.ctx.shard());
        crate::base::logger::flush_this_thread();
    }

    /// Closes the front: readyz turns 503, accepting stops, connections finish their
    /// responses and close, within [`DRAIN_DEADLINE`].
    async fn drain_front(&self) {
        let ctx = &self.ctx;
        ctx.begin_shutdown();
        let front = self.gates.front.close();
        self.conns.shutdown_reads();
        let drained = glommio::timer::timeout(DRAIN_DEADLINE, async {
            front.await;
            Ok(())
        });
        if drained.await.is_err() {
            warn!(
                "shard {}: {} connections still busy after {DRAIN_DEADLINE:?}; closing them",
                ctx.shard(),
                self.conns.live()
            );
        }
    }

    /// Tells every other shard that this one's front has closed, and waits (within
    /// [`DRAIN_DEADLINE`]) until each has said the same: until then a peer's connection
    /// may still hand this shard a keyed write to store.
    async fn wait_for_peer_fronts(&mut self) {
        let Some(peers) = self.ctx.peers() else {
            return;
        };
        peers.say_front_closed().await;
        let (shards, me) = (peers.shards(), self.ctx.shard());
        let open = self.fronts.all_closed(shards, me, DRAIN_DEADLINE).await;
        if !open.is_empty() {
            warn!(
                "shard {me}: shards {open:?} still draining after {DRAIN_DEADLINE:?}; \
                 closing the log"
            );
        }
    }
}

/// Keys in this shard's log that another shard owns (the number of shards changed
/// since they were stored) go to their owners before anything is served.
async fn hand_over_foreign_keys(ctx: &Context) -> Result<(), Fatal> {
    let id = ctx.shard();
    let Some(peers) = ctx.peers() else {
        return Ok(());
    };
    let foreign = ctx.keys().take_foreign(id, peers.shards());
    if foreign.is_empty() {
        return Ok(());
    }
    info!(
        "shard {id}: handing {} idempotency keys to their owners",
        foreign.len()
    );
    peers
        .hand_over(foreign)
        .await
        .map_err(|e| Fatal::new(Exit::Data, format!("shard {id}: {e}")))
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

/// Puts each reload the process sends in force here, and says so.
async fn apply_reloads(ctx: Rc<Context>, mut reloads: UnboundedReceiver<Reload>) {
    while let Some(reload) = reloads.next().await {
        let update = &reload.update;
        ctx.reload(update.principals.clone(), &update.rates);
        let _ = reload.applied.send(ctx.shard());
    }
}
