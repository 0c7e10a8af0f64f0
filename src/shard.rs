//! One shard's life on its own executor: bind its listener, start its timers
//! (cached `Date`, connection sweeper, log flushes), serve while its log is recovered
//! (`/readyz` says 503 meanwhile), join the mesh, then wait for the stop message and
//! drain: stop accepting, let connections finish their responses, sync the log.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use log::{info, warn};

use crate::accept;
use crate::config::Config;
use crate::conn::table::Connections;
use crate::context::Context;
use crate::index::Index;
use crate::log::recover::{remove_unfinished, scan_shard, shard_dir, ShardScan, TornTail};
use crate::log::Log;
use crate::peers::{self, Message, Peers};

/// How long shutdown waits for in-flight requests before closing what is left: longer
/// than a slow fdatasync, shorter than systemd's default stop timeout (90 s).
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// How a shard tells the process where it listens, and then that it is ready (or why
/// it could not start).
pub struct Reports {
    pub bound: mpsc::Sender<Result<SocketAddr, String>>,
    pub ready: mpsc::Sender<Result<(), String>>,
}

/// Runs shard `id` until `stop` fires (or its sender is gone), then drains.
pub async fn serve(
    id: usize,
    config: Arc<Config>,
    addr: SocketAddr,
    reports: Reports,
    stop: oneshot::Receiver<()>,
    mesh: MeshBuilder<Message, Full>,
) {
    let listener = match glommio::net::TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = reports
                .bound
                .send(Err(format!("cannot listen on {addr}: {e}")));
            return;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    crate::logger::buffer_this_thread();
    glommio::spawn_local(async {
        loop {
            glommio::timer::sleep(crate::logger::FLUSH_EVERY).await;
            crate::logger::flush_this_thread();
        }
    })
    .detach();
    let conns = Connections::new(config.limits.max_connections);
    let ctx = Rc::new(Context::new(id, config));
    glommio::spawn_local(ctx.date_cache().run()).detach();
    glommio::spawn_local(Rc::clone(&conns).sweep()).detach();
    let _ = reports.bound.send(Ok(local));
    let acceptor = glommio::spawn_local(accept::run(Rc::clone(&ctx), Rc::clone(&conns), listener));
    let Ok((senders, receivers)) = mesh.join().await else {
        let _ = reports
            .ready
            .send(Err(format!("shard {id}: joining the shard mesh failed")));
        return;
    };
    ctx.join_peers(Peers::new(senders));
    if let Err(message) = recover(&ctx).await {
        let _ = reports.ready.send(Err(message));
        return;
    }
    // Peers' queries are answered only from a complete index.
    peers::serve(ctx.index(), receivers);
    let _ = reports.ready.send(Ok(()));
    let _ = stop.await;
    shutdown(&ctx, &conns, acceptor).await;
}

/// Scans this shard's log on the blocking pool, cuts a torn tail, rebuilds the index,
/// starts the flusher and installs log and index in `ctx`.
pub async fn recover(ctx: &Context) -> Result<(), String> {
    let dir = shard_dir(&ctx.config().data_dir, ctx.shard());
    let shard_no = ctx.shard() as u16;
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
    if let Some(torn) = &scan.torn {
        warn!(
            "shard {}: cut torn tail of {} at offset {} ({}; {} unacknowledged records after it dropped)",
            ctx.shard(),
            torn.path.display(),
            torn.offset,
            torn.reason,
            torn.dropped_records
        );
    }
    info!(
        "shard {}: recovered {} records in {} segments in {:?}; next sequence number {}",
        ctx.shard(),
        scan.records,
        scan.segments,
        began.elapsed(),
        scan.next_seq
    );
    let config = ctx.config();
    let log = Rc::new(Log::new(
        shard_no,
        dir,
        config.segment_bytes,
        config.durability,
        scan.next_seq,
    ));
    let last = scan.last.map(|(segment, pos)| (segment.path, pos));
    glommio::spawn_local(Rc::clone(&log).run_flusher(last)).detach();
    ctx.open(log, index);
    Ok(())
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
    crate::logger::flush_this_thread();
}
