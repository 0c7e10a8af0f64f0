//! One connection, as a [`Connection`] that owns its socket, its buffers (through its
//! [`Slot`] in the shard's table) and its framing state. Its loop is a few named steps:
//!
//! 1. `answer_buffered` (`batch`): frame every complete request already read and run
//!    each, in order, through the onion ([`crate::api::middleware`]), awaiting a
//!    cross-shard read in place;
//! 2. `await_durable`: wait once until the highest record
//!    stored by the batch is durable;
//! 3. `flush`: write all the responses with one write;
//! 4. `read_more`: make room and read, under a deadline.
//!
//! A batch also stops before a read (`GET`, `HEAD`) that follows one of its writes,
//! so the read is answered once that write is durable and counts it. And it stops at
//! [`MAX_QUEUED`] bytes of responses: they are written before the rest of what is
//! buffered is answered, so a client pipelining thousands of requests
//! without reading holds one batch of responses, not thousands. Buffers that grew for
//! an oversized request or batch shrink back to their base size once it is done, and
//! growth is charged to the shard's memory budget ([`table`]).
//!
//! Keep-alive, pipelining, `Expect: 100-continue`, HTTP/1.0 and `Connection: close`,
//! and two timeouts:
//! - *header timeout*: from the first byte of a request (or from accept, for the first
//!   request) its head must be complete within `header_timeout_ms`, else 408 and close;
//!   a slowloris client trickling bytes cannot hold the connection longer than that.
//! - *idle timeout*: a keep-alive connection with nothing pending is closed after
//!   `idle_timeout_ms`; while a body is arriving each read must make progress within it.
//!
//! Both are deadlines the connection records in the shard's table ([`table`]) before
//! each read, which it races against the table's interrupt; the table's sweeper
//! interrupts any connection past its deadline, so no read arms a timer of its own.

mod batch;
mod refuse;
pub mod table;
mod wait;

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::base::logger::Peer;
use crate::http::reject::Reject;
use crate::http::request::RequestParser;
use crate::shard::context::Context;
use refuse::{refuse, refused, Refused};
use table::{Slot, BUFFER_SIZE};
use wait::Durable;

/// Bytes of framing overhead allowed beyond head and body limits (trailers, and the
/// chunk lines of a body of normal-sized chunks); chunk lines may also take up to half
/// of max_body_bytes, so that a body sent in one-byte chunks (6 bytes each on the wire)
/// of up to a sixth of the limit still fits.
const FRAMING_SLACK: usize = 64 << 10;
/// How long a closing connection drains the peer's unread input after its last
/// response: long enough for that response to reach a client still sending.
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes drained while lingering; a peer sending more is cut off.
const MAX_DRAIN: usize = 256 << 10;
/// Bytes of responses a batch queues before they are written (Seastar and hyper cap
/// their reply queues alike).
pub const MAX_QUEUED: usize = 64 << 10;
/// A write buffer that grew past this (one very large response) shrinks after it is
/// written; below it, a busy pipelining connection keeps its buffer and allocates nothing.
const KEEP_WRITE: usize = 2 * MAX_QUEUED;

/// Serves one accepted connection until it ends, then returns its slot to the table.
pub async fn serve(ctx: Rc<Context>, stream: TcpStream, slot: Slot) {
    ctx.metrics().connections += 1;
    let mut conn = Connection::new(&ctx, stream, slot);
    if let Ok(Ending::Linger) = conn.run().await {
        conn.linger().await;
    }
    let _ = conn.stream.close().await;
    drop(conn);
    ctx.metrics().connections -= 1;
}

/// How a connection ends.
enum Ending {
    /// The peer closed, or went quiet: nothing more to do.
    Quiet,
    /// We decided to close: the peer may still be sending.
    Linger,
}

pub struct Connection<'c> {
    ctx: &'c Context,
    stream: TcpStream,
    slot: Slot,
    parser: RequestParser,
    /// Bytes `[start, filled)` of the read buffer are received but not yet consumed.
    start: usize,
    filled: usize,
    /// When the request now being received began; the first one begins at accept.
    request_began: Option<Instant>,
    /// When its head completed and its body began to arrive.
    body_began: Option<Instant>,
    header_timeout: Duration,
    idle_timeout: Duration,
    body_timeout: Duration,
    request_timeout: Duration,
    /// The read buffer never grows past a largest head and body plus framing.
    max_buffer: usize,
    /// The client's address, for the access log.
    peer: Peer,
}

impl<'c> Connection<'c> {
    fn new(ctx: &'c Context, stream: TcpStream, slot: Slot) -> Self {
        let limits = ctx.limits();
        let config = &ctx.config().limits;
        let idle_timeout = Duration::from_millis(config.idle_timeout_ms);
        let _ = stream.set_nodelay(true);
        let addr = stream.peer_addr().ok();
        let mut peer = Peer::new(addr);
        peer.proxy = addr.is_some_and(|a| ctx.config().is_trusted_proxy(a.ip()));
        let _ = stream.set_write_timeout(Some(idle_timeout));
        Connection {
            ctx,
            stream,
            slot,
            parser: RequestParser::new(limits),
            start: 0,
            filled: 0,
            request_began: Some(Instant::now()),
            body_began: None,
            header_timeout: Duration::from_millis(config.header_timeout_ms),
            idle_timeout,
            body_timeout: Duration::from_millis(config.body_timeout_ms),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            max_buffer: limits.max_head + limits.max_body + limits.max_body / 2 + FRAMING_SLACK,
            peer,
        }
    }

    async fn run(&mut self) -> io::Result<Ending> {
        loop {
            let batch = self.answer_buffered().await;
            match self.await_durable(batch.durable, batch.deadline).await {
                Durable::Yes => {}
                // If the log failed, nothing of the batch is sent: those records were
                // not acknowledged, and the client sees the connection close.
                Durable::Failed => return Ok(Ending::Linger),
                // Nothing of the batch is acknowledged; a 503 says why, then close
                // (requests behind it go unanswered, which a client retries).
                // It answers the whole batch: a request's id only if it held one.
                Durable::TimedOut => {
                    let bufs = self.slot.buffers();
                    bufs.write.clear();
                    let named = if batch.requests == 1 {
                        refused(self.ctx, &bufs.read[batch.first_at..])
                    } else {
                        Refused::default()
                    };
                    return self.close_with(Reject::AnswerTimeout, named).await;
                }
            }
            self.flush().await?;
            if batch.close {
                return Ok(Ending::Linger);
            }
            // Complete requests still buffered are answered, shutting down or not.
            if batch.more {
                continue;
            }
            if self.ctx.is_shutting_down() {
                if self.request_in_progress() {
                    return self.refuse_and_close(Reject::ShuttingDown).await;
                }
                return Ok(Ending::Linger);
            }
            if let Some(ending) = self.read_more().await? {
                return Ok(ending);
            }
        }
    }

    /// Writes every queued response with one write.
    async fn flush(&mut self) -> io::Result<()> {
        let write = &mut self.slot.buffers().write;
        if !write.is_empty() {
            self.stream.write_all(write).await?;
            write.clear();
            if write.capacity() > KEEP_WRITE {
                write.shrink_to(BUFFER_SIZE);
            }
            self.slot.settle();
        }
        Ok(())
    }

    /// Moves the unconsumed tail to the front; grows the buffer when it is full (only
    /// a large head or body does that), within the memory budget, straight to the
    /// announced size of a body; shrinks buffers back once an oversized request is done.
    fn make_room(&mut self) -> Result<(), Reject> {
        let in_body = self.parser.in_body();
        let bufs = self.slot.buffers();
        if self.start > 0 {
            bufs.read.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
        }
        let len = bufs.read.len();
        // Between requests, a buffer that grew for an oversized one goes back to its
        // base size (a small chunked body's buffer is kept: reused, not reallocated).
        let oversized = len > BUFFER_SIZE || bufs.body.capacity() > BUFFER_SIZE;
        if !in_body && self.filled < BUFFER_SIZE && oversized {
            bufs.read.truncate(BUFFER_SIZE);
            bufs.read.shrink_to_fit();
            bufs.body.shrink_to(BUFFER_SIZE);
            self.slot.settle();
            return Ok(());
        }
        if self.filled < len {
            return Ok(());
        }
        if len >= self.max_buffer {
            // A chunked body's own size is checked as it is decoded: a full buffer then
            // means its chunk lines ran over, and the error says so.
            return Err(if self.parser.in_chunked_body() {
                Reject::ChunkFramingTooLarge
            } else {
                Reject::BodyTooLarge
            });
        }
        let wanted = self.parser.expected_len().unwrap_or(len * 2);
        let grown = wanted.clamp(len + 1, self.max_buffer);
        if !self.slot.reserve(grown - len) {
            return Err(Reject::MemoryBudget);
        }
        self.slot.buffers().read.resize(grown, 0);
        Ok(())
    }

    /// Whether part of a request has arrived: a byte past the answered ones that is not
    /// one of the empty lines a client may send between requests.
    fn request_in_progress(&mut self) -> bool {
        let (start, filled) = (self.start, self.filled);
        self.slot.buffers().read[start..filled]
            .iter()
            .any(|&b| b != b'\r' && b != b'\n')
    }

    /// Refuses the request being received (named by its id once its head is in), and
    /// closes.
    async fn refuse_and_close(&mut self, reject: Reject) -> io::Result<Ending> {
        let named = refused(self.ctx, &self.slot.buffers().read[self.start..self.filled]);
        self.close_with(reject, named).await
    }

    async fn close_with(&mut self, reject: Reject, named: Refused) -> io::Result<Ending> {
        let write = &mut self.slot.buffers().write;
        refuse(self.ctx, reject, named, self.peer, write);
        self.flush().await?;
        Ok(Ending::Linger)
    }

    /// Closing a socket with unread input makes the kernel send RST, which can destroy
    /// the final response before the client reads it. So: half-close, then drain
    /// briefly.
    async fn linger(&mut self) {
        if self
            .stream
            .shutdown(std::net::Shutdown::Write)
            .await
            .is_err()
        {
            return;
        }
        let deadline = Instant::now() + LINGER;
        let scratch = &mut self.slot.buffers().read;
        let mut drained = 0;
        while drained < MAX_DRAIN {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.stream.read(scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    }
}
