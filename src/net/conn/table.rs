//! One shard's connection table: a `slab` of live connections and a pool of spare
//! buffer sets, so a new connection reuses the buffers a closed one left behind instead
//! of allocating (the thread-per-core form of Gin's `sync.Pool`). The table also
//! enforces the timeouts, keeps the shard's memory budget and interrupts every wait
//! for input at shutdown.
//!
//! **Memory.** Every connection holds its base buffers ([`BUFFER_SIZE`] to read and to
//! write). What they grow beyond that (a large head or body being received, a decoded
//! chunked body, queued responses) is charged to the shard's budget
//! (`limits.memory_budget_bytes`) before the growth where it can be refused (a body is
//! reserved whole once its head announces its length), and after it where it cannot
//! (responses already made). A connection that would go over gets a 503 with
//! `Retry-After` and is closed, so a crowd of clients holding large bodies costs at
//! most the budget. Spare buffer sets go back to their base size, and at most
//! [`MAX_SPARE`] of them are kept, so the pool does not hold a burst's peak (whether
//! the allocator then gives the pages back to the system is its own choice: glibc's
//! keeps them for reuse).
//!
//! Timeouts are enforced here rather than by a timer per read: each connection writes
//! its deadline before it reads and races the read against [`Connections::interrupted`];
//! the shard's sweeper ([`Connections::sweep`]), every [`SWEEP_EVERY`], marks every
//! connection past its deadline and wakes it, which ends the wait. That costs a
//! connection one clock read and a store per read instead of a timer insertion and
//! removal (and the io_uring timeout re-arming that follows) per blocked read. Nothing
//! here touches a socket: the table knows connections by slab key only, so a
//! descriptor number reused after a close can never be hit, and a timed-out socket is
//! left whole to drain the client's input after its 408 (a socket whose read side was
//! shut would answer that input with a reset).

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

/// Initial read and write buffer size; most requests and pipelined batches fit.
pub const BUFFER_SIZE: usize = 16 << 10;
/// Most spare buffer sets kept for reuse (8 MiB): past a burst, the rest are freed.
pub const MAX_SPARE: usize = 256;
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

    /// Back to the base size, for reuse by another connection.
    fn reset(&mut self) {
        self.read.truncate(BUFFER_SIZE);
        self.read.shrink_to_fit();
        self.write.clear();
        self.write.shrink_to(BUFFER_SIZE);
        self.body = Vec::new();
    }

    /// Bytes held beyond the base size: what the memory budget is charged for.
    pub fn extra(&self) -> usize {
        self.read.len().saturating_sub(BUFFER_SIZE)
            + self.write.capacity().saturating_sub(BUFFER_SIZE)
            + self.body.capacity()
    }
}

/// Why a connection's wait for input was ended from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// Its deadline passed.
    Expired,
    /// The shard is stopping.
    Shutdown,
}

/// A live connection as the shard sees it.
struct Live {
    /// The connection must have received something by then (set before each read).
    deadline: Instant,
    interrupt: Option<Interrupt>,
    /// The connection's task, while it waits for input.
    waiter: Option<Waker>,
}

struct Table {
    live: Slab<Live>,
    spare: Vec<Buffers>,
    max: usize,
    /// The memory budget, and what live connections are charged against it now.
    budget: usize,
    charged: usize,
}

/// Live connections (by slab key) and spare buffer sets.
pub struct Connections {
    table: RefCell<Table>,
}

impl Connections {
    /// A table that holds at most `max` live connections, whose buffers may grow by
    /// `budget` bytes in all.
    pub fn new(max: usize, budget: usize) -> Rc<Connections> {
        Rc::new(Connections {
            table: RefCell::new(Table {
                live: Slab::new(),
                spare: Vec::new(),
                max,
                budget,
                charged: 0,
            }),
        })
    }

    pub fn live(&self) -> usize {
        self.table.borrow().live.len()
    }

    /// Takes a slot and a buffer set for a new connection, whose first read must
    /// complete by `deadline`; `None` at the connection limit.
    pub fn open(self: &Rc<Self>, deadline: Instant) -> Option<Slot> {
        let mut table = self.table.borrow_mut();
        if table.live.len() >= table.max {
            return None;
        }
        let key = table.live.insert(Live {
            deadline,
            interrupt: None,
            waiter: None,
        });
        let buffers = table.spare.pop().unwrap_or_else(Buffers::new);
        Some(Slot {
            conns: Rc::clone(self),
            key,
            buffers: Some(buffers),
            charged: 0,
        })
    }

    /// Changes a connection's charge from `*charged` to `bytes`: refused (false) when
    /// it grows past the budget, unless `force`d.
    fn recharge(&self, charged: &mut usize, bytes: usize, force: bool) -> bool {
        let mut table = self.table.borrow_mut();
        let others = table.charged - *charged;
        if bytes > *charged && others + bytes > table.budget && !force {
            return false;
        }
        table.charged = others + bytes;
        *charged = bytes;
        true
    }

    fn close(&self, key: usize, charged: usize, mut buffers: Buffers) {
        let mut table = self.table.borrow_mut();
        table.live.remove(key);
        table.charged -= charged;
        if table.spare.len() < MAX_SPARE {
            buffers.reset();
            table.spare.push(buffers);
        }
    }

    /// Connection `key` must receive something by `deadline`: set before each read. A
    /// deadline that passed while the connection was busy elsewhere (answering,
    /// waiting for the disk or for a slow reader of its responses) is forgotten: only a
    /// wait for input can be late.
    pub fn set_deadline(&self, key: usize, deadline: Instant) {
        if let Some(live) = self.table.borrow_mut().live.get_mut(key) {
            live.deadline = deadline;
            if live.interrupt == Some(Interrupt::Expired) {
                live.interrupt = None;
            }
        }
    }

    /// Resolves once connection `key`'s wait for input is interrupted: its deadline
    /// passed, or the shard is stopping. Raced against each read.
    pub async fn interrupted(&self, key: usize) -> Interrupt {
        poll_fn(|cx| {
            let mut table = self.table.borrow_mut();
            let Some(live) = table.live.get_mut(key) else {
                return Poll::Ready(Interrupt::Shutdown);
            };
            if let Some(interrupt) = live.interrupt {
                return Poll::Ready(interrupt);
            }
            match &mut live.waiter {
                Some(waker) => waker.clone_from(cx.waker()),
                None => live.waiter = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// Interrupts every live connection's wait for input: one waiting for the next
    /// request ends, so the connection closes once its responses are written.
    pub fn shutdown_reads(&self) {
        for (_, live) in self.table.borrow_mut().live.iter_mut() {
            interrupt(live, Interrupt::Shutdown);
        }
    }

    /// The shard's sweeper: ends the reads of connections past their deadline, until
    /// the executor ends.
    pub async fn sweep(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(SWEEP_EVERY).await;
            self.expire(Instant::now());
        }
    }

    /// Interrupts the wait of every connection past its deadline at `now`.
    fn expire(&self, now: Instant) {
        for (_, live) in self.table.borrow_mut().live.iter_mut() {
            if live.interrupt.is_none() && live.deadline <= now {
                interrupt(live, Interrupt::Expired);
            }
        }
    }
}

fn interrupt(live: &mut Live, why: Interrupt) {
    live.interrupt.get_or_insert(why);
    if let Some(waker) = live.waiter.take() {
        waker.wake();
    }
}

/// A connection's place in the table and its buffers; both go back to the table when
/// the connection task ends, even by unwinding.
pub struct Slot {
    conns: Rc<Connections>,
    key: usize,
    buffers: Option<Buffers>,
    /// What this connection is charged against the memory budget.
    charged: usize,
}

impl Slot {
    pub fn key(&self) -> usize {
        self.key
    }

    pub fn buffers(&mut self) -> &mut Buffers {
        self.buffers.get_or_insert_with(Buffers::new)
    }

    /// The table and the buffers at once: a read fills the buffers while it races the
    /// table's interrupt.
    pub fn parts(&mut self) -> (&Connections, &mut Buffers) {
        (&self.conns, self.buffers.get_or_insert_with(Buffers::new))
    }

    /// Charges the budget for what the buffers hold now plus `more` bytes about to be
    /// read into them; false (nothing changed) when the budget cannot cover it.
    pub fn reserve(&mut self, more: usize) -> bool {
        let bytes = self.buffers().extra() + more;
        bytes <= self.charged || self.conns.recharge(&mut self.charged, bytes, false)
    }

    /// Charges the budget for exactly what the buffers hold now, even past it (it was
    /// spent already): that leaves less for new bodies until it shrinks.
    pub fn settle(&mut self) {
        let bytes = self.buffers().extra();
        // The common case, a connection at its base size, touches no shared state.
        if bytes != self.charged {
            self.conns.recharge(&mut self.charged, bytes, true);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(buffers) = self.buffers.take() {
            self.conns.close(self.key, self.charged, buffers);
        }
    }
}
