//! Messages across shards: each shard holds the sending ends of a glommio channel mesh
//! to every other shard and answers the messages that arrive on its receiving ends:
//! read queries from its own index, whether it can take writes (so that `/readyz`
//! speaks for the whole process), keyed writes for the idempotency keys it owns, its
//! counters for a `/metrics` scrape, peers' rate-limit demand, where one of its records
//! is, its chain head on stable storage, keys handed over at start-up, and, at
//! shutdown, that a peer's front has closed. A message carries a oneshot channel for
//! its answer. A plain submit never crosses shards, and no lock is shared.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};

use crate::base::gate::Gate;
use crate::domain::index::{Answer, Index, Query};
use crate::domain::keys::{Entry, KeyedAnswer, KeyedWrite};
use crate::log::locations::Location;
use crate::log::record::Hash;
use crate::log::Fault;
use crate::metrics::ShardMetrics;

/// A question on its way to a peer, with the channel for its answer.
pub enum Message {
    Query {
        query: Query,
        reply: oneshot::Sender<Answer>,
    },
    /// Can the peer take writes now?
    Health { reply: oneshot::Sender<Health> },
    /// Store this keyed record, unless its key is known.
    Keyed {
        write: KeyedWrite,
        reply: oneshot::Sender<KeyedAnswer>,
    },
    /// A copy of the peer's counters (a `/metrics` scrape).
    Metrics {
        reply: oneshot::Sender<Box<ShardMetrics>>,
    },
    /// How many requests each principal tried on shard `from` in its last rate-limit
    /// period (no answer).
    Demand { from: usize, demand: Vec<u32> },
    /// Where record `seq` of the peer's log is (once durable; `None`: no such record).
    Locate {
        seq: u64,
        reply: oneshot::Sender<Option<Location>>,
    },
    /// The peer's chain head on stable storage (`GET /api/v1/log/heads`).
    Head { reply: oneshot::Sender<(u64, Hash)> },
    /// Keys found in another shard's log that this shard owns (start-up).
    Keys {
        keys: Vec<(Box<str>, Entry)>,
        reply: oneshot::Sender<()>,
    },
    /// Shard `from` has closed its front (shutdown): none of its connections will hand
    /// this shard work any more (no answer).
    FrontClosed { from: usize },
}

/// Whether a shard can take writes now; if not, what was done to its live segment when
/// that is why.
pub type Health = Result<(), Option<Fault>>;

/// What a shard does with the messages that need more than its index.
pub trait Owner {
    /// Whether this shard can take writes now.
    fn health(&self) -> Health;
    /// Stores `write` (or not), then answers on `reply`; may run as a task of its own.
    fn keyed(&self, write: KeyedWrite, reply: oneshot::Sender<KeyedAnswer>);
    /// A copy of this shard's counters.
    fn metrics(&self) -> ShardMetrics;
    /// A peer's rate-limit demand for its last period.
    fn demand(&self, from: usize, demand: Vec<u32>);
    /// Answers where record `seq` of this shard's log is; may run as a task of its own.
    fn locate(&self, seq: u64, reply: oneshot::Sender<Option<Location>>);
    /// This shard's chain head on stable storage: last durable record and its hash.
    fn head(&self) -> (u64, Hash);
    /// Takes in keys this shard owns.
    fn take_keys(&self, keys: Vec<(Box<str>, Entry)>);
    /// Peer `from` has closed its front.
    fn front_closed(&self, from: usize);
}

/// This shard's sending ends of the mesh.
pub struct Peers {
    senders: Senders<Message>,
}

impl Peers {
    pub fn new(senders: Senders<Message>) -> Self {
        Peers { senders }
    }

    /// Asks every shard (`local`, this one's index, directly) and returns all answers.
    /// A peer still recovering answers once it is done, so the result is complete.
    pub async fn ask_all(
        &self,
        local: &RefCell<Index>,
        query: Query,
    ) -> Result<Vec<Answer>, &'static str> {
        let mut pending = Vec::new();
        for peer in self.others() {
            let (reply, answer) = oneshot::channel();
            let message = Message::Query {
                query: query.clone(),
                reply,
            };
            if self.senders.send_to(peer, message).await.is_err() {
                return Err("a shard is not answering");
            }
            pending.push(answer);
        }
        let mut answers = vec![local.borrow().answer(&query)];
        for answer in pending {
            answers.push(answer.await.map_err(|_| "a shard dropped a query")?);
        }
        Ok(answers)
    }

    /// The first other shard that cannot take writes now (or does not answer), if any,
    /// and what was done to its live segment if that is why.
    pub async fn first_unhealthy(&self) -> Option<(usize, Option<Fault>)> {
        let mut pending = Vec::new();
        for peer in self.others() {
            let (reply, answer) = oneshot::channel();
            if self
                .senders
                .send_to(peer, Message::Health { reply })
                .await
                .is_err()
            {
                return Some((peer, None));
            }
            pending.push((peer, answer));
        }
        for (peer, answer) in pending {
            match answer.await {
                Ok(Ok(())) => {}
                Ok(Err(fault)) => return Some((peer, fault)),
                Err(_) => return Some((peer, None)),
            }
        }
        None
    }

    /// Every shard's counters, `local` (this shard's) among them, in shard order.
    pub async fn metrics_all(
        &self,
        local: ShardMetrics,
    ) -> Result<Vec<ShardMetrics>, &'static str> {
        let mut pending = Vec::new();
        for peer in self.others() {
            let (reply, answer) = oneshot::channel();
            if self
                .senders
                .send_to(peer, Message::Metrics { reply })
                .await
                .is_err()
            {
                return Err("a shard is not answering");
            }
            pending.push(answer);
        }
        let mut all = vec![local];
        for answer in pending {
            all.push(*answer.await.map_err(|_| "a shard dropped a scrape")?);
        }
        all.sort_by_key(|m| m.shard);
        Ok(all)
    }

    /// Every shard's chain head on stable storage, `local` (this shard's) among them, by
    /// shard number.
    pub async fn heads_all(
        &self,
        local: (u64, Hash),
    ) -> Result<Vec<(usize, u64, Hash)>, &'static str> {
        let mut pending = Vec::new();
        for peer in self.others() {
            let (reply, answer) = oneshot::channel();
            if self
                .senders
                .send_to(peer, Message::Head { reply })
                .await
                .is_err()
            {
                return Err("a shard is not answering");
            }
            pending.push((peer, answer));
        }
        let mut all = vec![(self.senders.peer_id(), local.0, local.1)];
        for (peer, answer) in pending {
            let (seq, hash) = answer.await.map_err(|_| "a shard dropped a question")?;
            all.push((peer, seq, hash));
        }
        all.sort_by_key(|&(shard, _, _)| shard);
        Ok(all)
    }

    /// Tells every other shard this shard's rate-limit demand (best effort: a shard
    /// that is gone is skipped).
    pub async fn send_demand(&self, demand: &[u32]) {
        let from = self.senders.peer_id();
        for peer in self.others() {
            let message = Message::Demand {
                from,
                demand: demand.to_vec(),
            };
            let _ = self.senders.send_to(peer, message).await;
        }
    }

    /// Tells every other shard that this one's front has closed (best effort: a shard
    /// that is gone is skipped).
    pub async fn say_front_closed(&self) {
        let from = self.senders.peer_id();
        for peer in self.others() {
            let _ = self
                .senders
                .send_to(peer, Message::FrontClosed { from })
                .await;
        }
    }

    /// Where record `seq` of shard `shard` is.
    pub async fn locate(&self, shard: usize, seq: u64) -> Result<Option<Location>, &'static str> {
        let (reply, answer) = oneshot::channel();
        if self
            .senders
            .send_to(shard, Message::Locate { seq, reply })
            .await
            .is_err()
        {
            return Err("the record's shard is not answering");
        }
        answer
            .await
            .map_err(|_| "the record's shard dropped a lookup")
    }

    /// How many shards the process runs.
    pub fn shards(&self) -> usize {
        self.senders.nr_consumers()
    }

    /// Hands `write` to shard `owner` and waits for its answer.
    pub async fn keyed(
        &self,
        owner: usize,
        write: KeyedWrite,
    ) -> Result<KeyedAnswer, &'static str> {
        let (reply, answer) = oneshot::channel();
        let message = Message::Keyed { write, reply };
        if self.senders.send_to(owner, message).await.is_err() {
            return Err("the key's shard is not answering");
        }
        answer.await.map_err(|_| "the key's shard dropped a write")
    }

    /// Hands keys to their owners (start-up); resolves once every owner has them.
    pub async fn hand_over(
        &self,
        foreign: Vec<(usize, Box<str>, Entry)>,
    ) -> Result<(), &'static str> {
        let mut by_owner: Vec<Vec<(Box<str>, Entry)>> = (0..self.senders.nr_consumers())
            .map(|_| Vec::new())
            .collect();
        for (owner, key, entry) in foreign {
            by_owner[owner].push((key, entry));
        }
        for (owner, keys) in by_owner.into_iter().enumerate() {
            if keys.is_empty() {
                continue;
            }
            let (reply, done) = oneshot::channel();
            if self
                .senders
                .send_to(owner, Message::Keys { keys, reply })
                .await
                .is_err()
            {
                return Err("a shard is not answering");
            }
            done.await.map_err(|_| "a shard dropped its keys")?;
        }
        Ok(())
    }

    fn others(&self) -> impl Iterator<Item = usize> {
        let me = self.senders.peer_id();
        (0..self.senders.nr_consumers()).filter(move |&peer| peer != me)
    }
}

/// Answers every peer's messages inside `gate`, until the mesh closes or the gate
/// starts closing: queries from `index`, the rest through `owner`.
pub fn serve(
    index: &Rc<RefCell<Index>>,
    owner: Rc<dyn Owner>,
    mut receivers: Receivers<Message>,
    gate: &Gate,
) {
    for (_, stream) in receivers.streams() {
        let index = Rc::clone(index);
        let owner = Rc::clone(&owner);
        let answering = gate.until_closing(async move {
            while let Some(message) = stream.recv().await {
                match message {
                    Message::Query { query, reply } => {
                        let _ = reply.send(index.borrow().answer(&query));
                    }
                    Message::Health { reply } => {
                        let _ = reply.send(owner.health());
                    }
                    Message::Keyed { write, reply } => owner.keyed(write, reply),
                    Message::Demand { from, demand } => owner.demand(from, demand),
                    Message::Locate { seq, reply } => owner.locate(seq, reply),
                    Message::Metrics { reply } => {
                        let _ = reply.send(Box::new(owner.metrics()));
                    }
                    Message::Head { reply } => {
                        let _ = reply.send(owner.head());
                    }
                    Message::Keys { keys, reply } => {
                        owner.take_keys(keys);
                        let _ = reply.send(());
                    }
                    Message::FrontClosed { from } => owner.front_closed(from),
                }
            }
        });
        crate::base::task::spawn("peer queries", answering).detach();
    }
}
