//! What a connection waits for, each wait bounded by a deadline that the shard's
//! sweeper enforces ([`super::table`]): the next bytes of a request (header, body,
//! idle and whole-request deadlines), its records becoming durable, and a peer
//! shard's answer (`request_timeout_ms`).

use std::io;
use std::time::Instant;

use futures_lite::{future, AsyncReadExt};

use super::table::{Connections, Interrupt};
use super::{Connection, Ending};
use crate::http::reject::Reject;

/// How a wait for a batch's records ended.
pub(super) enum Durable {
    Yes,
    /// The log failed: nothing of the batch may be sent.
    Failed,
    /// `request_timeout_ms` passed first.
    TimedOut,
}

impl Connection<'_> {
    /// Waits until record `seq` is durable: one wait covers every stored record of
    /// the batch, since a shard's sequence numbers become durable in order. False when
    /// the log failed.
    pub(super) async fn await_durable(
        &mut self,
        seq: Option<u64>,
        deadline: Option<Instant>,
    ) -> Durable {
        let (Some(seq), Some(log)) = (seq, self.ctx.log()) else {
            return Durable::Yes;
        };
        let key = self.slot.key();
        let (table, _) = self.slot.parts();
        if let Some(deadline) = deadline {
            table.set_deadline(key, deadline);
        }
        let waited = future::or(async { Some(log.durable(seq).await) }, async {
            expired(table, key).await;
            None
        })
        .await;
        match waited {
            Some(Ok(())) => Durable::Yes,
            Some(Err(_)) => Durable::Failed,
            None => Durable::TimedOut,
        }
    }

    /// Makes room in the read buffer and reads, under the header or idle deadline.
    /// `Some` when the connection ends instead.
    pub(super) async fn read_more(&mut self) -> io::Result<Option<Ending>> {
        if let Err(reject) = self.make_room() {
            return self.refuse_and_close(reject).await.map(Some);
        }
        let now = Instant::now();
        let (deadline, whole_first) = self.read_deadline(now);
        if deadline > now {
            let key = self.slot.key();
            let (table, bufs) = self.slot.parts();
            table.set_deadline(key, deadline);
            let stream = &mut self.stream;
            let buf = &mut bufs.read[self.filled..];
            let read = future::or(async { Ok(stream.read(buf).await) }, async {
                Err(table.interrupted(key).await)
            })
            .await;
            match read {
                // The shard is stopping while a request is half in: say so, rather
                // than leave a client mid-upload to guess.
                Err(Interrupt::Shutdown) if self.request_in_progress() => {
                    return self.refuse_and_close(Reject::ShuttingDown).await.map(Some);
                }
                // End of input: the peer closed; or the shard is stopping.
                Ok(Ok(0)) | Err(Interrupt::Shutdown) => return Ok(Some(Ending::Quiet)),
                Ok(Ok(n)) => {
                    self.filled += n;
                    return Ok(None);
                }
                Ok(Err(e)) => return Err(e),
                Err(Interrupt::Expired) => {}
            }
        }
        self.timed_out(whole_first).await.map(Some)
    }

    /// When the next read must end, and whether that is the whole-request deadline.
    /// A request now partly received starts its header clock, a body its body clock.
    /// The deadline goes to the table, whose sweeper ends the read once it passes.
    fn read_deadline(&mut self, now: Instant) -> (Instant, bool) {
        if self.start < self.filled && self.request_began.is_none() {
            self.request_began = Some(now);
        }
        if self.parser.in_body() && self.body_began.is_none() {
            self.body_began = Some(now);
        }
        let deadline = match (self.request_began, self.body_began) {
            // A body must keep arriving, and be whole within body_timeout_ms.
            (_, Some(body)) => (now + self.idle_timeout).min(body + self.body_timeout),
            (Some(began), None) => began + self.header_timeout,
            (None, None) => now + self.idle_timeout,
        };
        // And the whole request within request_timeout_ms of its first byte.
        let whole = self
            .request_began
            .filter(|_| self.filled > self.start)
            .map(|began| began + self.request_timeout);
        match whole {
            Some(whole) if whole < deadline => (whole, true),
            _ => (deadline, false),
        }
    }

    /// A read timed out: a request in progress gets a 408; a quiet connection closes.
    async fn timed_out(&mut self, whole_first: bool) -> io::Result<Ending> {
        if whole_first {
            return self.refuse_and_close(Reject::RequestTimeout).await;
        }
        if self.body_began.is_some() {
            return self.refuse_and_close(Reject::BodyTimeout).await;
        }
        if self.filled > 0 {
            return self.refuse_and_close(Reject::HeaderTimeout).await;
        }
        Ok(Ending::Quiet)
    }
}

/// Resolves once connection `key`'s deadline has passed. A shutdown does not end the
/// wait: a request being answered is finished first.
pub(super) async fn expired(table: &Connections, key: usize) {
    if table.interrupted(key).await == Interrupt::Shutdown {
        std::future::pending::<()>().await;
    }
}
