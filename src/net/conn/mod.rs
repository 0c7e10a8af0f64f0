//! One connection, as a [`Connection`] that owns its socket, its buffers (through its
//! [`Slot`] in the shard's table) and its framing state. Its loop is a few named steps:
//!
//! 1. `answer_buffered`: frame every complete request
//!    already read and run each, in order, through the onion ([`crate::api::middleware`]),
//!    awaiting a cross-shard read in place;
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

mod refuse;
pub mod table;
mod wait;

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::api::admission::{self, Admitted};
use crate::api::middleware;
use crate::api::outcome::Outcome;
use crate::base::logger::Peer;
use crate::http::parse::Method;
use crate::http::reject::Reject;
use crate::http::request::{Request, RequestParser, Step};
use crate::http::response::CONTINUE;
use crate::shard::context::Context;
use refuse::{refuse, refuse_request, refused, Refused};
use table::{Connections, Slot, BUFFER_SIZE};
use wait::{expired, Durable};

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

/// How one request of a batch was answered.
enum Answered {
    /// By the onion: whether the connection goes on, and the record, if any, that must
    /// be durable before the answer leaves.
    Handled {
        keep_alive: bool,
        durable: Option<u64>,
    },
    /// Refused by admission; `close`: the connection closes.
    NotAdmitted { close: bool },
    /// Deferred, and not answered by the connection's deadline: refused with a 503,
    /// and the connection closes.
    Late,
}

/// Admits `request` (`admit`: unless it was at its head) and runs it through the
/// onion, appending its response to `write`; a deferred one (a read across shards, a
/// keyed write) is awaited in place until the connection's deadline (`at`: its table,
/// key and the deadline).
async fn answer(
    ctx: &Context,
    request: &Request<'_>,
    write: &mut Vec<u8>,
    (table, key, deadline): (&Connections, usize, Instant),
    peer: Peer,
    admit: bool,
) -> Answered {
    if admit {
        if let Admitted::No { close } = admission::admit(ctx, &request.head, write, true, peer) {
            return Answered::NotAdmitted { close };
        }
    }
    let mut outcome = middleware::handle(ctx, request, write, peer);
    let Some(deferred) = outcome.deferred.take() else {
        return Answered::handled(outcome);
    };
    // The id the onion gave it, for a 503 if its answer is late.
    let id = deferred.call.as_ref().map(|call| call.id);
    table.set_deadline(key, deadline);
    let finished = future::or(
        async { Some(middleware::finish(ctx, deferred, request, write).await) },
        async {
            expired(table, key).await;
            None
        },
    )
    .await;
    let Some(outcome) = finished else {
        refuse_request(ctx, Reject::AnswerTimeout, &request.head, (id, peer), write);
        return Answered::Late;
    };
    Answered::handled(outcome)
}

impl Answered {
    fn handled(outcome: Outcome) -> Answered {
        Answered::Handled {
            keep_alive: outcome.keep_alive,
            durable: outcome.durable,
        }
    }
}

/// What answering the buffered requests left to do.
struct Batch {
    /// The highest sequence number stored by the batch's requests.
    durable: Option<u64>,
    /// Close once the batch's responses are written.
    close: bool,
    /// Stopped at [`MAX_QUEUED`], or before a read behind one of its writes: more
    /// complete requests may be buffered.
    more: bool,
    /// When `request_timeout_ms` ends for the batch's first request: its answers,
    /// durable waits included, must be ready by then.
    deadline: Option<Instant>,
    /// How many requests the batch answered, and where the first began in the read
    /// buffer (still there until the next read): a late batch of one is refused
    /// under that request's id.
    requests: usize,
    first_at: usize,
}

impl Batch {
    /// A batch whose first request begins at `first_at` in the read buffer.
    fn new(first_at: usize) -> Batch {
        Batch {
            durable: None,
            close: false,
            more: false,
            deadline: None,
            requests: 0,
            first_at,
        }
    }

    /// Whether the batch ends before a request with `method`: a read behind a write of
    /// this batch that is not durable yet would not count it (reads count durable
    /// records only), so it is answered once the write is durable.
    fn waits_before(&mut self, method: Method) -> bool {
        let read = matches!(method, Method::Get | Method::Head);
        self.more = read && self.durable.is_some();
        self.more
    }

    /// Takes in how one request was answered; false when the batch ends with it.
    fn take(&mut self, answered: Answered) -> bool {
        self.close = match answered {
            Answered::Handled {
                keep_alive,
                durable,
            } => {
                self.durable = durable.max(self.durable);
                !keep_alive
            }
            Answered::NotAdmitted { close } => close,
            Answered::Late => true,
        };
        !self.close
    }
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

    /// Frames and answers every complete request already buffered, appending each
    /// response to the write buffer in order.
    async fn answer_buffered(&mut self) -> Batch {
        let mut batch = Batch::new(self.start);
        let key = self.slot.key();
        while self.start < self.filled {
            let (table, bufs) = self.slot.parts();
            if bufs.write.len() >= MAX_QUEUED {
                batch.more = true;
                break;
            }
            let input = &bufs.read[self.start..self.filled];
            match self.parser.next(input, &mut bufs.body) {
                Ok(Step::NeedMore {
                    send_continue,
                    head,
                }) => {
                    // Admitted (or not) once its head is in, before its body is read.
                    if let (Some(head), None) = (head, self.body_began) {
                        let write = &mut bufs.write;
                        batch.close = admission::admit(self.ctx, &head, write, false, self.peer)
                            != Admitted::Yes;
                    }
                    batch.close = batch.close || !self.body_paid_for(send_continue);
                    break;
                }
                Ok(Step::Request(request)) => {
                    if batch.waits_before(request.head.method) {
                        break;
                    }
                    // A request behind another in the buffer arrived with it.
                    let began = self.request_began.unwrap_or_else(Instant::now);
                    let deadline = *batch.deadline.get_or_insert(began + self.request_timeout);
                    // A request whose body came after its head was admitted at its head.
                    let admit = self.body_began.is_none();
                    self.start += request.consumed;
                    batch.requests += 1;
                    self.request_began = None;
                    self.body_began = None;
                    let at = (table, key, deadline);
                    let write = &mut bufs.write;
                    let answered = answer(self.ctx, &request, write, at, self.peer, admit).await;
                    if !batch.take(answered) {
                        break;
                    }
                }
                Err(reject) => {
                    let named = refused(self.ctx, input);
                    refuse(self.ctx, reject, named, self.peer, &mut bufs.write);
                    batch.close = true;
                    break;
                }
            }
        }
        batch
    }

    /// A request whose head is in and whose body is coming: the body is paid for
    /// before it is read (and before 100-continue invites it), the whole of an
    /// announced length, or what a chunked one has decoded so far. False when the
    /// shard's memory budget cannot pay: refused, and the connection closes.
    fn body_paid_for(&mut self, send_continue: bool) -> bool {
        let read_len = self.slot.buffers().read.len();
        let announced = self.parser.expected_len().unwrap_or(0);
        let more = announced.saturating_sub(read_len);
        if self.parser.in_body() && !self.slot.reserve(more) {
            let bufs = self.slot.buffers();
            let named = refused(self.ctx, &bufs.read[self.start..self.filled]);
            refuse(
                self.ctx,
                Reject::MemoryBudget,
                named,
                self.peer,
                &mut bufs.write,
            );
            return false;
        }
        if send_continue {
            self.slot.buffers().write.extend_from_slice(CONTINUE);
        }
        true
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
