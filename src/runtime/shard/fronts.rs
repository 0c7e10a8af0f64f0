//! Shutdown across shards. A connection still draining on one shard may hand a keyed
//! write to its key's owner shard ([`crate::api::keyed`]), so no shard stops answering
//! its peers, or closes its log, while another shard's front is open. Each shard tells
//! every other one over the mesh once its own front has closed
//! ([`Message::FrontClosed`](crate::shard::peers::Message::FrontClosed)), and waits to
//! hear the same from each of them: a barrier made of messages, with no lock.

use std::time::Duration;

use futures_channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures_lite::StreamExt;

/// What one shard hears of its peers' fronts closing.
pub struct Fronts {
    heard: UnboundedSender<usize>,
    closed: UnboundedReceiver<usize>,
}

impl Default for Fronts {
    fn default() -> Fronts {
        let (heard, closed) = unbounded();
        Fronts { heard, closed }
    }
}

impl Fronts {
    /// Where the side answering peers says that peer `from`'s front has closed.
    pub fn heard(&self) -> UnboundedSender<usize> {
        self.heard.clone()
    }

    /// Waits until every shard of `shards` but `me` has said its front closed, or
    /// `limit` has passed: the shards not heard from, if any.
    pub async fn all_closed(&mut self, shards: usize, me: usize, limit: Duration) -> Vec<usize> {
        let mut open: Vec<bool> = (0..shards).map(|shard| shard != me).collect();
        let heard = async {
            while open.contains(&true) {
                match self.closed.next().await {
                    Some(from) => open.get_mut(from).map(|o| *o = false),
                    None => break,
                };
            }
        };
        futures_lite::future::or(heard, glommio::timer::sleep(limit)).await;
        (0..shards).filter(|&shard| open[shard]).collect()
    }
}
