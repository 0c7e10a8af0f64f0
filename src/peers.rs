//! Read queries across shards, by message passing: each shard holds the sending ends
//! of a glommio channel mesh to every other shard and answers the queries that arrive
//! on its receiving ends from its own index. A query carries a oneshot channel for its
//! answer. Nothing here is on the submit path, and no lock is shared.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};

use crate::index::{Answer, Index, Query};

/// A query on its way to a peer, with the channel for its answer.
pub struct Message {
    query: Query,
    reply: oneshot::Sender<Answer>,
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
        for peer in 0..self.senders.nr_consumers() {
            if peer == self.senders.peer_id() {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let message = Message {
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
}

/// Answers the queries of every peer from `index` until the mesh closes.
pub fn serve(index: &Rc<RefCell<Index>>, mut receivers: Receivers<Message>) {
    for (_, stream) in receivers.streams() {
        let index = Rc::clone(index);
        crate::task::spawn("peer queries", async move {
            while let Some(message) = stream.recv().await {
                let answer = index.borrow().answer(&message.query);
                let _ = message.reply.send(answer);
            }
        })
        .detach();
    }
}
