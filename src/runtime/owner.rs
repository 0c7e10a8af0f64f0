//! A shard answering its peers: the [`Owner`] side of the mesh ([`crate::shard::peers`]),
//! for what needs more than the shard's read index: whether it can take writes, keyed
//! writes for the keys it owns, its counters, peers' rate-limit demand, where one of
//! its records is, its chain head, and keys handed over at start-up.

use std::rc::Rc;

use futures_channel::oneshot;

use crate::api::keyed::{self, Decision};
use crate::api::reads;
use crate::domain::keys::{Entry, KeyedAnswer, KeyedWrite};
use crate::log::locations::Location;
use crate::log::record::{Hash, GENESIS};
use crate::log::LogError;
use crate::metrics::ShardMetrics;
use crate::shard::context::Context;
use crate::shard::peers::{Health, Owner};

/// A shard as its peers see it.
pub struct ShardOwner(pub Rc<Context>);

impl Owner for ShardOwner {
    fn health(&self) -> Health {
        self.0.health()
    }

    fn keyed(&self, write: KeyedWrite, reply: oneshot::Sender<KeyedAnswer>) {
        let Decision { answer, durable } = keyed::decide(&self.0, &write.borrowed());
        let Some(seq) = durable else {
            let _ = reply.send(answer);
            return;
        };
        // Only a wait for the disk needs a task of its own.
        let ctx = Rc::clone(&self.0);
        crate::base::task::spawn("keyed write", async move {
            let answer = match ctx.log() {
                Some(log) => match log.durable(seq).await {
                    Ok(()) => answer,
                    Err(e) => KeyedAnswer::Refused(e),
                },
                None => KeyedAnswer::Refused(LogError::Closed),
            };
            let _ = reply.send(answer);
        })
        .detach();
    }

    fn metrics(&self) -> ShardMetrics {
        self.0.shard_metrics()
    }

    fn demand(&self, from: usize, demand: Vec<u32>) {
        self.0.limiter().peer_demand(from, demand);
    }

    fn locate(&self, seq: u64, reply: oneshot::Sender<Option<Location>>) {
        let ctx = Rc::clone(&self.0);
        crate::base::task::spawn("locate a record", async move {
            let _ = reply.send(reads::locate(&ctx, seq).await);
        })
        .detach();
    }

    fn head(&self) -> (u64, Hash) {
        self.0.log().map_or((0, GENESIS), |log| log.durable_head())
    }

    fn take_keys(&self, keys: Vec<(Box<str>, Entry)>) {
        self.0.keys().take_in(keys);
    }
}
