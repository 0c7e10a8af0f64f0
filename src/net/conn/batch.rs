//! One batch: every complete request already buffered, framed and answered in order
//! into the write buffer, until the buffer runs out, [`MAX_QUEUED`] bytes of answers
//! wait, a read follows a write that is not durable yet, or the connection must close.

use std::time::Instant;

use futures_lite::future;

use super::refuse::{refuse, refuse_request, refused};
use super::table::Connections;
use super::wait::expired;
use super::{Connection, MAX_QUEUED};
use crate::api::admission::{self, Admitted};
use crate::api::middleware;
use crate::api::outcome::Outcome;
use crate::base::logger::Peer;
use crate::http::parse::Method;
use crate::http::reject::Reject;
use crate::http::request::{Request, Step};
use crate::http::response::CONTINUE;
use crate::shard::context::Context;

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
pub(super) struct Batch {
    /// The highest sequence number stored by the batch's requests.
    pub(super) durable: Option<u64>,
    /// Close once the batch's responses are written.
    pub(super) close: bool,
    /// Stopped at [`MAX_QUEUED`], or before a read behind one of its writes: more
    /// complete requests may be buffered.
    pub(super) more: bool,
    /// When `request_timeout_ms` ends for the batch's first request: its answers,
    /// durable waits included, must be ready by then.
    pub(super) deadline: Option<Instant>,
    /// How many requests the batch answered, and where the first began in the read
    /// buffer (still there until the next read): a late batch of one is refused
    /// under that request's id.
    pub(super) requests: usize,
    pub(super) first_at: usize,
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

impl Connection<'_> {
    /// Frames and answers every complete request already buffered, appending each
    /// response to the write buffer in order.
    pub(super) async fn answer_buffered(&mut self) -> Batch {
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
}
