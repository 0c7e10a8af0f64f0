//! The accept loop of one shard and its connection table: a `slab` of live connections
//! and a pool of spare buffer sets, so a new connection reuses the buffers a closed one
//! left behind instead of allocating (the thread-per-core form of Gin's `sync.Pool`).

use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

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

/// Live connections (by slab key, holding the socket's fd) and spare buffer sets.
pub struct ConnTable {
    live: Slab<RawFd>,
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
        for (_, &fd) in self.live.iter() {
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read);
        }
    }

    /// Takes a slot and a buffer set, or `None` at the connection limit.
    fn open(&mut self, fd: RawFd) -> Option<(usize, Buffers)> {
        if self.live.len() >= self.max {
            return None;
        }
        let key = self.live.insert(fd);
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
    key: usize,
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
        let opened = shard.conns.borrow_mut().open(stream.as_raw_fd());
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
