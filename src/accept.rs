//! The accept loop of one shard and its connection table: a `slab` of live connections
//! and a pool of spare buffer sets, so a new connection reuses the buffers a closed one
//! left behind instead of allocating (the thread-per-core form of Gin's `sync.Pool`).

use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};
use log::warn;
use slab::Slab;

use crate::conn;
use crate::error::Reject;
use crate::http::response::{self, ConnHeader};
use crate::shard::Shard;

/// Initial read and write buffer size; most requests and pipelined batches fit.
pub const BUFFER_SIZE: usize = 16 << 10;
/// Buffers that grew past this (for a large body) are shrunk back before reuse, so the
/// pool does not pin a megabyte per idle slot.
const KEEP_CAPACITY: usize = 64 << 10;

/// The buffers one connection owns while it lives.
pub struct Buffers {
    pub read: Vec<u8>,
    pub write: Vec<u8>,
    pub body: Vec<u8>,
}

impl Buffers {
    fn new() -> Self {
        Buffers {
            read: vec![0; BUFFER_SIZE],
            write: Vec::with_capacity(BUFFER_SIZE),
            body: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.read.truncate(BUFFER_SIZE);
        self.read.shrink_to(KEEP_CAPACITY);
        self.write.clear();
        self.write.shrink_to(KEEP_CAPACITY);
        self.body.clear();
        self.body.shrink_to(KEEP_CAPACITY);
    }
}

/// How often the sweeper looks for connections past their deadline.
pub const SWEEP_EVERY: Duration = Duration::from_millis(20);

/// A live connection as the shard sees it.
struct Live {
    fd: RawFd,
    /// The connection must have received something by then (set before each read).
    deadline: Cell<Instant>,
    /// The sweeper shut its read side because the deadline passed.
    expired: Cell<bool>,
}

/// Live connections (by slab key) and spare buffer sets.
///
/// Timeouts are enforced here rather than by a timer per read: each connection writes
/// its deadline before it reads, and the shard's sweeper, every [`SWEEP_EVERY`], shuts
/// the read side of every connection past it, which ends the pending read. That costs a
/// connection one clock read and a store per read instead of a timer insertion and
/// removal (and the io_uring timeout re-arming that follows) per blocked read.
pub struct ConnTable {
    live: Slab<Live>,
    spare: Vec<Buffers>,
    max: usize,
}

impl ConnTable {
    pub fn new(max: usize) -> Self {
        ConnTable {
            live: Slab::new(),
            spare: Vec::new(),
            max,
        }
    }

    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Shuts the read side of every live connection: a read waiting for the next
    /// request ends, so the connection closes once its responses are written.
    pub fn shutdown_reads(&self) {
        for (_, live) in self.live.iter() {
            let _ = nix::sys::socket::shutdown(live.fd, nix::sys::socket::Shutdown::Read);
        }
    }

    /// Connection `key` must receive something by `deadline`.
    pub fn set_deadline(&self, key: usize, deadline: Instant) {
        if let Some(live) = self.live.get(key) {
            live.deadline.set(deadline);
        }
    }

    /// Whether the sweeper ended connection `key`'s read for passing its deadline.
    pub fn expired(&self, key: usize) -> bool {
        self.live.get(key).is_some_and(|live| live.expired.get())
    }

    /// Shuts the read side of every connection past its deadline at `now`.
    fn expire(&self, now: Instant) {
        for (_, live) in self.live.iter() {
            if !live.expired.get() && live.deadline.get() <= now {
                live.expired.set(true);
                let _ = nix::sys::socket::shutdown(live.fd, nix::sys::socket::Shutdown::Read);
            }
        }
    }

    /// Takes a slot and a buffer set, or `None` at the connection limit.
    fn open(&mut self, fd: RawFd, deadline: Instant) -> Option<(usize, Buffers)> {
        if self.live.len() >= self.max {
            return None;
        }
        let key = self.live.insert(Live {
            fd,
            deadline: Cell::new(deadline),
            expired: Cell::new(false),
        });
        Some((key, self.spare.pop().unwrap_or_else(Buffers::new)))
    }

    fn close(&mut self, key: usize, mut buffers: Buffers) {
        self.live.remove(key);
        buffers.reset();
        self.spare.push(buffers);
    }
}

/// Returns the slot and buffers when the connection task ends, even by unwinding.
pub struct Slot {
    shard: Rc<Shard>,
    pub key: usize,
    pub buffers: Option<Buffers>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(buffers) = self.buffers.take() {
            self.shard.conns.borrow_mut().close(self.key, buffers);
        }
    }
}

/// Accepts until the executor ends; each connection runs as its own task.
pub async fn run(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!("shard {}: accept failed: {e}", shard.id);
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // The first request's head must arrive within the header timeout of the accept.
        let header_timeout = Duration::from_millis(shard.config.limits.header_timeout_ms);
        let deadline = Instant::now() + header_timeout;
        let opened = shard.conns.borrow_mut().open(stream.as_raw_fd(), deadline);
        match opened {
            Some((key, buffers)) => {
                let slot = Slot {
                    shard: Rc::clone(&shard),
                    key,
                    buffers: Some(buffers),
                };
                glommio::spawn_local(conn::serve(Rc::clone(&shard), stream, slot)).detach();
            }
            None => {
                glommio::spawn_local(refuse(Rc::clone(&shard), stream)).detach();
            }
        }
    }
}

/// The shard's sweeper: ends the reads of connections past their deadline, until the
/// executor ends.
pub async fn sweep(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(SWEEP_EVERY).await;
        shard.conns.borrow().expire(Instant::now());
    }
}

/// Over the connection limit: a 503 with `Connection: close`, best effort, then close.
async fn refuse(shard: Rc<Shard>, mut stream: TcpStream) {
    let mut out = Vec::with_capacity(256);
    response::write_reject(
        &mut out,
        Reject::Overloaded,
        &shard.date.get(),
        ConnHeader::Close,
        None,
    );
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}
