//! One connection: read; frame every complete request in the buffer and run each, in
//! order, through the onion ([`crate::middleware`]), awaiting a cross-shard read in
//! place; wait once until the highest record stored by the batch is durable; write all
//! the responses with one write; repeat. Keep-alive, pipelining, `Expect: 100-continue`,
//! HTTP/1.0 and `Connection: close`, and two timeouts:
//!
//! - *header timeout*: from the first byte of a request (or from accept, for the first
//!   request) its head must be complete within `header_timeout_ms`, else 408 and close;
//!   a slowloris client trickling bytes cannot hold the connection longer than that.
//! - *idle timeout*: a keep-alive connection with nothing pending is closed after
//!   `idle_timeout_ms`; while a body is arriving each read must make progress within it.
//!
//! Both are deadlines the connection records in the shard's connection table before
//! each read; the shard's sweeper ([`crate::accept::sweep`]) ends the read of any
//! connection past its deadline, so no read arms a timer of its own.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::accept::{Buffers, Slot};
use crate::error::Reject;
use crate::handlers;
use crate::http::request::{RequestParser, Step};
use crate::http::response::{self, ConnHeader, CONTINUE};
use crate::middleware;
use crate::reads;
use crate::shard::Shard;

/// Bytes of framing overhead allowed beyond head and body limits (chunk lines, trailers).
const FRAMING_SLACK: usize = 64 << 10;

pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream, mut slot: Slot) {
    let _ = stream.set_nodelay(true);
    let idle = Duration::from_millis(shard.config.limits.idle_timeout_ms);
    let _ = stream.set_write_timeout(Some(idle));
    let Some(buffers) = slot.buffers.as_mut() else {
        return;
    };
    if let Ok(Ending::Linger) = run(&shard, &mut stream, buffers, slot.key).await {
        linger(&mut stream, &mut buffers.read).await;
    }
    let _ = stream.close().await;
}

/// How a connection ends.
enum Ending {
    /// The peer closed, or went quiet: nothing more to do.
    Quiet,
    /// We decided to close: the peer may still be sending.
    Linger,
}

/// Closing a socket with unread input makes the kernel send RST, which can destroy the
/// final response before the client reads it. So: half-close, then drain briefly.
async fn linger(stream: &mut TcpStream, scratch: &mut [u8]) {
    const LINGER: Duration = Duration::from_millis(500);
    const MAX_DRAIN: usize = 256 << 10;
    if stream.shutdown(std::net::Shutdown::Write).await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut drained = 0;
    while drained < MAX_DRAIN {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(scratch).await {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

async fn run(
    shard: &Shard,
    stream: &mut TcpStream,
    bufs: &mut Buffers,
    key: usize,
) -> io::Result<Ending> {
    let limits = shard.limits;
    let header_timeout = Duration::from_millis(shard.config.limits.header_timeout_ms);
    let idle_timeout = Duration::from_millis(shard.config.limits.idle_timeout_ms);
    let max_buffer = limits.max_head + limits.max_body + FRAMING_SLACK;
    let mut parser = RequestParser::new(limits);
    // Bytes [start, filled) of the read buffer are received but not yet consumed.
    let mut start = 0;
    let mut filled = 0;
    // When the request now being received began; the first one begins at accept.
    let mut request_began = Some(Instant::now());

    loop {
        // Frame and answer every complete request already buffered.
        let mut close = false;
        let mut durable = None;
        while start < filled {
            match parser.next(&bufs.read[start..filled], &mut bufs.body) {
                Ok(Step::NeedMore { send_continue }) => {
                    if send_continue {
                        bufs.write.extend_from_slice(CONTINUE);
                    }
                    break;
                }
                Ok(Step::Request(request)) => {
                    start += request.consumed;
                    request_began = None;
                    let mut outcome = middleware::handle(shard, &request, &mut bufs.write);
                    if let Some(deferred) = outcome.deferred.take() {
                        outcome =
                            reads::answer(shard, deferred, &request.head, &mut bufs.write).await;
                    }
                    durable = outcome.durable.max(durable);
                    if !outcome.keep_alive {
                        close = true;
                        break;
                    }
                }
                Err(reject) => {
                    respond_and_close(shard, reject, &mut bufs.write);
                    close = true;
                    break;
                }
            }
        }
        // One wait covers every stored record of the batch: sequence numbers of a shard
        // become durable in order. If the log failed, nothing of the batch is sent: those
        // records were not acknowledged, and the client sees the connection close.
        if let (Some(seq), Some(log)) = (durable, shard.log()) {
            if log.durable(seq).await.is_err() {
                return Ok(Ending::Linger);
            }
        }
        if !bufs.write.is_empty() {
            stream.write_all(&bufs.write).await?;
            bufs.write.clear();
        }
        if close || shard.is_shutting_down() {
            return Ok(Ending::Linger);
        }

        // Make room: move the unconsumed tail to the front, grow only for a large body.
        if start > 0 {
            bufs.read.copy_within(start..filled, 0);
            filled -= start;
            start = 0;
        }
        if filled == bufs.read.len() {
            if bufs.read.len() >= max_buffer {
                respond_and_close(shard, Reject::BodyTooLarge, &mut bufs.write);
                stream.write_all(&bufs.write).await?;
                return Ok(Ending::Linger);
            }
            let grown = (bufs.read.len() * 2).min(max_buffer);
            bufs.read.resize(grown, 0);
        }

        // A request now partly received started its header clock. The deadline goes to
        // the connection table, whose sweeper ends the read once it passes.
        let now = Instant::now();
        if start < filled && request_began.is_none() {
            request_began = Some(now);
        }
        let deadline = match request_began {
            _ if parser.in_body() => now + idle_timeout,
            Some(began) => began + header_timeout,
            None => now + idle_timeout,
        };
        let timed_out = if deadline <= now {
            true
        } else {
            shard.conns.borrow().set_deadline(key, deadline);
            match stream.read(&mut bufs.read[filled..]).await {
                // End of input: the peer closed, or the sweeper or shutdown ended the read.
                Ok(0) if shard.conns.borrow().expired(key) => true,
                Ok(0) => return Ok(Ending::Quiet),
                Ok(n) => {
                    filled += n;
                    false
                }
                Err(e) => return Err(e),
            }
        };
        if timed_out {
            // A request head in progress gets a 408; a quiet connection just closes.
            if filled > 0 && !parser.in_body() {
                respond_and_close(shard, Reject::HeaderTimeout, &mut bufs.write);
                stream.write_all(&bufs.write).await?;
                return Ok(Ending::Linger);
            }
            return Ok(Ending::Quiet);
        }
    }
}

fn respond_and_close(shard: &Shard, reject: Reject, out: &mut Vec<u8>) {
    response::write_reject(out, reject, &shard.date.get(), ConnHeader::Close, None);
    handlers::log_rejection(shard, reject);
}
