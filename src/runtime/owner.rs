//! A shard answering its peers: the [`Owner`] side of the mesh ([`crate::shard::peers`]),
//! for what needs more than the shard's read index: whether it can take writes, keyed
//! writes for the keys it owns, its counters, peers' rate-limit demand, where one of
//! its records is, its chain head, keys handed over at start-up, and peers' fronts
//! closing at shutdown. Work that outlives a message (a wait for the disk, a lookup)
//! runs inside the gate of the shard's answers to peers, which shutdown closes.

use std::rc::Rc;

use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;

use crate::api::keyed::{self, Decision};
use crate::api::reads;
use crate::base::gate::Gate;
use crate::domain::keys::{Entry, KeyedAnswer, KeyedWrite};
use crate::log::locations::Location;
use crate::log::record::{Hash, GENESIS};
use crate::log::LogError;
use crate::metrics::ShardMetrics;
use crate::shard::context::Context;
use crate::shard::peers::{Health, Owner};

/// A shard as its peers see it.
pub struct ShardOwner {
    pub ctx: Rc<Context>,
    /// The gate of the shard's answers to peers.
    pub gate: Gate,
    /// Where a peer's word that its front has closed goes.
    pub fronts: UnboundedSender<usize>,
}

impl Owner for ShardOwner {
    fn health(&self) -> Health {
        self.ctx.health()
    }

    fn keyed(&self, write: KeyedWrite, reply: oneshot::Sender<KeyedAnswer>) {
        let Decision { answer, durable } = keyed::decide(&self.ctx, &write.borrowed());
        let Some(seq) = durable else {
            let _ = reply.send(answer);
            return;
        };
        // Only a wait for the disk needs a task of its own.
        let ctx = Rc::clone(&self.ctx);
        let waiting = self.gate.inside(async move {
            let answer = match ctx.log() {
                Some(log) => match log.durable(seq).await {
                    Ok(()) => answer,
                    Err(e) => KeyedAnswer::Refused(e),
                },
                None => KeyedAnswer::Refused(LogError::Closed),
            };
            let _ = reply.send(answer);
        });
        crate::base::task::spawn("keyed write", waiting).detach();
    }

    fn metrics(&self) -> ShardMetrics {
        self.ctx.shard_metrics()
    }

    fn demand(&self, from: usize, demand: Vec<u32>) {
        self.ctx.limiter().peer_demand(from, demand);
    }

    fn locate(&self, seq: u64, reply: oneshot::Sender<Option<Location>>) {
        let ctx = Rc::clone(&self.ctx);
        let looking = self.gate.inside(async move {
            let _ = reply.send(reads::locate(&ctx, seq).await);
        });
        crate::base::task::spawn("locate a record", looking).detach();
    }

    fn head(&self) -> (u64, Hash) {
        self.ctx
            .log()
            .map_or((0, GENESIS), |log| log.durable_head())
    }

    fn take_keys(&self, keys: Vec<(Box<str>, Entry)>) {
        self.ctx.keys().take_in(keys);
    }

    fn front_closed(&self, from: usize) {
        let _ = self.fronts.unbounded_send(from);
    }
}
