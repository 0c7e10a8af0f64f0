//! One shard's connection table: a `slab` of live connections and a pool of spare
//! buffer sets, so a new connection reuses the buffers a closed one left behind instead
//! of allocating (the thread-per-core form of Gin's `sync.Pool`). The table also
//! enforces the timeouts and tells shutdown when the last connection has closed.
//!
//! Timeouts are enforced here rather than by a timer per read: each connection writes
//! its deadline before it reads, and the shard's sweeper ([`Connections::sweep`]),
//! every [`SWEEP_EVERY`], shuts the read side of every connection past it, which ends
//! the pending read. That costs a connection one clock read and a store per read
//! instead of a timer insertion and removal (and the io_uring timeout re-arming that
//! follows) per blocked read.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

/// Initial read and write buffer size; most requests and pipelined batches fit.
pub const BUFFER_SIZE: usize = 16 << 10;
/// Buffers that grew past this (for a large body) are shrunk back before reuse, so the
/// pool does not pin a megabyte per idle slot.
const KEEP_CAPACITY: usize = 64 << 10;
/// How often the sweeper looks for connections past their deadline: timeouts fire up to
/// this late, and a shorter period wakes an idle shard more often for nothing.
pub const SWEEP_EVERY: Duration = Duration::from_millis(20);

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

/// A live connection as the shard sees it.
struct Live {
    /// The socket, until the connection closes it: -1 from then on, since the number
    /// may be reused at once by another connection of any shard.
    fd: Cell<RawFd>,
    /// The connection must have received something by then (set before each read).
    deadline: Cell<Instant>,
    /// The sweeper shut its read side because the deadline passed.
    expired: Cell<bool>,
}

struct Table {
    live: Slab<Live>,
    spare: Vec<Buffers>,
    max: usize,
    /// Who waits in [`Connections::drained`] for the last connection to close.
    drain_waiter: Option<Waker>,
}

/// Live connections (by slab key) and spare buffer sets.
pub struct Connections {
    table: RefCell<Table>,
}

impl Connections {
    /// A table that holds at most `max` live connections.
    pub fn new(max: usize) -> Rc<Connections> {
        Rc::new(Connections {
            table: RefCell::new(Table {
                live: Slab::new(),
                spare: Vec::new(),
                max,
                drain_waiter: None,
            }),
        })
    }

    pub fn live(&self) -> usize {
        self.table.borrow().live.len()
    }

    /// Takes a slot and a buffer set for connection `fd`, whose first read must
    /// complete by `deadline`; `None` at the connection limit.
    pub fn open(self: &Rc<Self>, fd: RawFd, deadline: Instant) -> Option<Slot> {
        let mut table = self.table.borrow_mut();
        if table.live.len() >= table.max {
            return None;
        }
        let key = table.live.insert(Live {
            fd: Cell::new(fd),
            deadline: Cell::new(deadline),
            expired: Cell::new(false),
        });
        let buffers = table.spare.pop().unwrap_or_else(Buffers::new);
        Some(Slot {
            conns: Rc::clone(self),
            key,
            buffers: Some(buffers),
        })
    }

    fn close(&self, key: usize, mut buffers: Buffers) {
        let mut table = self.table.borrow_mut();
        table.live.remove(key);
        buffers.reset();
        table.spare.push(buffers);
        if table.live.is_empty() {
            if let Some(waiter) = table.drain_waiter.take() {
                waiter.wake();
            }
        }
    }

    /// Connection `key` must receive something by `deadline`.
    pub fn set_deadline(&self, key: usize, deadline: Instant) {
        if let Some(live) = self.table.borrow().live.get(key) {
            live.deadline.set(deadline);
        }
    }

    /// Connection `key` is about to close its socket: from now on nothing here may touch
    /// that descriptor number (it can be reused before the slot is released).
    pub fn closing(&self, key: usize) {
        if let Some(live) = self.table.borrow().live.get(key) {
            live.fd.set(-1);
        }
    }

    /// Whether the sweeper ended connection `key`'s read for passing its deadline.
    pub fn expired(&self, key: usize) -> bool {
        let table = self.table.borrow();
        table.live.get(key).is_some_and(|live| live.expired.get())
    }

    /// Shuts the read side of every live connection: a read waiting for the next
    /// request ends, so the connection closes once its responses are written.
    pub fn shutdown_reads(&self) {
        for (_, live) in self.table.borrow().live.iter() {
            shut_read(live);
        }
    }

    /// Resolves once no connection is live.
    pub async fn drained(&self) {
        poll_fn(|cx| {
            let mut table = self.table.borrow_mut();
            if table.live.is_empty() {
                Poll::Ready(())
            } else {
                table.drain_waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// The shard's sweeper: ends the reads of connections past their deadline, until
    /// the executor ends.
    pub async fn sweep(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(SWEEP_EVERY).await;
            self.expire(Instant::now());
        }
    }

    /// Shuts the read side of every connection past its deadline at `now`.
    fn expire(&self, now: Instant) {
        for (_, live) in self.table.borrow().live.iter() {
            if !live.expired.get() && live.deadline.get() <= now {
                live.expired.set(true);
                shut_read(live);
            }
        }
    }
}

/// Shuts the read side of `live`'s socket, unless it is already closed.
fn shut_read(live: &Live) {
    let fd = live.fd.get();
    if fd >= 0 {
        let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read);
    }
}

/// A connection's place in the table and its buffers; both go back to the table when
/// the connection task ends, even by unwinding.
pub struct Slot {
    conns: Rc<Connections>,
    key: usize,
    buffers: Option<Buffers>,
}

impl Slot {
    pub fn key(&self) -> usize {
        self.key
    }

    pub fn table(&self) -> &Connections {
        &self.conns
    }

    pub fn buffers(&mut self) -> &mut Buffers {
        self.buffers.get_or_insert_with(Buffers::new)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(buffers) = self.buffers.take() {
            self.conns.close(self.key, buffers);
        }
    }
}
