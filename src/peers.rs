//! Questions across shards, by message passing: each shard holds the sending ends of a
//! glommio channel mesh to every other shard and answers the messages that arrive on
//! its receiving ends: read queries from its own index, and whether it can take writes
//! (so that `/readyz` speaks for the whole process). A message carries a oneshot
//! channel for its answer. Nothing here is on the submit path, and no lock is shared.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};

use crate::index::{Answer, Index, Query};

/// A question on its way to a peer, with the channel for its answer.
pub enum Message {
    Query {
        query: Query,
        reply: oneshot::Sender<Answer>,
    },
    /// Can the peer take writes now?
    Health { reply: oneshot::Sender<bool> },
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

    /// The first other shard that cannot take writes now (or does not answer), if any.
    pub async fn first_unhealthy(&self) -> Option<usize> {
        let mut pending = Vec::new();
        for peer in self.others() {
            let (reply, answer) = oneshot::channel();
            if self
                .senders
                .send_to(peer, Message::Health { reply })
                .await
                .is_err()
            {
                return Some(peer);
            }
            pending.push((peer, answer));
        }
        for (peer, answer) in pending {
            if answer.await != Ok(true) {
                return Some(peer);
            }
        }
        None
    }

    fn others(&self) -> impl Iterator<Item = usize> {
        let me = self.senders.peer_id();
        (0..self.senders.nr_consumers()).filter(move |&peer| peer != me)
    }
}

/// Answers every peer's messages until the mesh closes: queries from `index`, health
/// from `healthy`.
pub fn serve(
    index: &Rc<RefCell<Index>>,
    healthy: Rc<dyn Fn() -> bool>,
    mut receivers: Receivers<Message>,
) {
    for (_, stream) in receivers.streams() {
        let index = Rc::clone(index);
        let healthy = Rc::clone(&healthy);
        crate::task::spawn("peer queries", async move {
            while let Some(message) = stream.recv().await {
                match message {
                    Message::Query { query, reply } => {
                        let _ = reply.send(index.borrow().answer(&query));
                    }
                    Message::Health { reply } => {
                        let _ = reply.send(healthy());
                    }
                }
            }
        })
        .detach();
    }
}
