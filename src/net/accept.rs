//! The accept loop of one shard: its own `SO_REUSEPORT` listener (the kernel spreads
//! connections across the shards' listeners), each connection's send buffer bounded
//! (`limits.send_buffer_bytes`), a slot in the connection table for each connection it
//! takes, and a 503 for those over the connection limit. The only place that knows the
//! listener.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};
use log::warn;

use crate::api::refusal::{self, Dialect, Refusal};
use crate::base::gate::Gate;
use crate::base::task;
use crate::http::reject::Reject;
use crate::http::response::{ConnHeader, Reply};
use crate::net::conn::{self, table::Connections};
use crate::shard::context::Context;

/// After a failed accept (EMFILE and friends), wait this long before the next one
/// instead of spinning on an error that persists until some connection closes.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// How long the 503 to a connection over the limit may take to send.
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts until the `front` gate closes (the listener closes with it). Each
/// connection, and each refusal over the limit, runs as its own task inside the gate,
/// so that closing it waits for them.
pub async fn run(ctx: Rc<Context>, conns: Rc<Connections>, listener: TcpListener, front: Gate) {
    let accepting = front.until_closing(accept(ctx, conns, listener, front.clone()));
    accepting.await;
}

async fn accept(ctx: Rc<Context>, conns: Rc<Connections>, listener: TcpListener, front: Gate) {
    let header_timeout = Duration::from_millis(ctx.config().limits.header_timeout_ms);
    let send_buffer = ctx.config().limits.send_buffer_bytes;
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                warn!("shard {}: accept failed: {e}", ctx.shard());
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if send_buffer > 0 {
            // A client that does not read holds at most this much in the kernel; the
            // rest waits in the connection's buffer, under the shard's memory budget.
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(send_buffer);
        }
        // The first request's head must arrive within the header timeout of the accept.
        let deadline = Instant::now() + header_timeout;
        match conns.open(deadline) {
            Some(slot) => {
                let serve = conn::serve(Rc::clone(&ctx), stream, slot);
                task::spawn("connection", front.inside(serve)).detach();
            }
            None => {
                ctx.metrics().rejected(Reject::Overloaded);
                task::spawn("refusal", front.inside(refuse(ctx.date(), stream))).detach();
            }
        }
    }
}

/// Over the connection limit: a 503 with `Connection: close`, best effort, then close.
async fn refuse(date: [u8; crate::http::date::LEN], mut stream: TcpStream) {
    let mut out = Vec::with_capacity(256);
    let mut reply = Reply::new(&mut out, date, ConnHeader::Close);
    refusal::refuse(&mut reply, Dialect::V1, Refusal::Reject(Reject::Overloaded));
    let _ = stream.set_write_timeout(Some(REFUSE_WRITE_TIMEOUT));
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}
