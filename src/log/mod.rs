//! The durable record: one append-only log per shard, written only by its shard.
//!
//! Handlers [`Log::append`] a record (encoded at once into the pending batch) and get
//! its sequence number; the connection then awaits [`Log::durable`] for the highest
//! sequence number among the responses it is about to write, so one wait covers a
//! whole pipelined batch. The shard's flusher task ([`Log::run_flusher`]) takes
//! everything pending, writes it with one write and one `fdatasync` per write group
//! of at most [`recover::BATCH_MAX`] bytes, and wakes the waiters: one sync covers every
//! record appended while the previous one ran (group commit).
//!
//! Files: [`record`] is the format byte by byte, [`segment`] one segment
//! file, [`recover`] reading back (start-up recovery, export, verify), [`export`] the
//! offline commands.
//!
//! A write or sync error is fatal for the shard's log: it is never retried (after a
//! failed `fdatasync` the page state is unknown), waiters get an error, and every later
//! append is refused, so the shard answers 503 to writes.

pub mod export;
pub mod record;
pub mod recover;
pub mod segment;

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::{Poll, Waker};

use log::{error, info};

use crate::config::Durability;
use record::{Kind, Record, HEADER_LEN};
use recover::BATCH_MAX;
use segment::Segment;

/// Why an append or a wait failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogError {
    /// A write or fdatasync failed earlier: this shard no longer stores records.
    Failed,
    /// The shard is shutting down.
    Closed,
    /// More than [`MAX_PENDING`] bytes wait for the disk: refuse rather than grow
    /// without bound (in practice with durability `async`, where nothing waits).
    Behind,
}

/// Most bytes of records that may wait for the flusher.
pub const MAX_PENDING: usize = 64 << 20;

/// A write group of the pending batch: records written with one write and one
/// `fdatasync`. `append` cuts groups as it encodes, so the flusher never re-parses
/// the bytes it is given.
#[derive(Clone, Copy, Debug)]
struct Group {
    /// Where the group ends in the batch (it starts where the previous one ends).
    end: usize,
    first_seq: u64,
    last_seq: u64,
}

/// The encoded records waiting for the flusher, cut into write groups.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    groups: Vec<Group>,
}

impl Batch {
    fn with_capacity(bytes: usize) -> Self {
        Batch {
            bytes: Vec::with_capacity(bytes),
            // Groups per batch: MAX_PENDING / BATCH_MAX in the worst case, one or two
            // in practice; reserved so steady state never grows it.
            groups: Vec::with_capacity(MAX_PENDING / BATCH_MAX + 1),
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.groups.clear();
    }
}

struct State {
    /// Encoded records not yet taken by the flusher, and the spare batch it swaps in.
    pending: Batch,
    spare: Batch,
    next_seq: u64,
    /// Every record up to this sequence number is on stable storage.
    durable_seq: u64,
    failed: bool,
    closed: bool,
    /// The flusher has ended (everything appended is durable, or the log failed).
    stopped: bool,
    waiters: Vec<Waker>,
    flusher: Option<Waker>,
    /// Who waits in [`Log::stopped`].
    stop_waiter: Option<Waker>,
}

/// One shard's log writer.
pub struct Log {
    shard: u16,
    dir: PathBuf,
    segment_bytes: u64,
    durability: Durability,
    state: RefCell<State>,
}

impl Log {
    /// A writer that continues after a recovered log whose next record is `next_seq`.
    pub fn new(
        shard: u16,
        dir: PathBuf,
        segment_bytes: u64,
        durability: Durability,
        next_seq: u64,
    ) -> Log {
        Log {
            shard,
            dir,
            segment_bytes,
            durability,
            state: RefCell::new(State {
                pending: Batch::with_capacity(BATCH_MAX),
                spare: Batch::with_capacity(BATCH_MAX),
                next_seq,
                durable_seq: next_seq - 1,
                failed: false,
                closed: false,
                stopped: false,
                waiters: Vec::new(),
                flusher: None,
                stop_waiter: None,
            }),
        }
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Whether new records can still be stored.
    pub fn is_healthy(&self) -> bool {
        let state = self.state.borrow();
        !state.failed && !state.closed
    }

    /// Encodes a record into the pending batch; returns its sequence number.
    pub fn append(
        &self,
        kind: Kind,
        principal: &str,
        received_ns: u64,
        body: &[u8],
    ) -> Result<u64, LogError> {
        let mut state = self.state.borrow_mut();
        if state.failed {
            return Err(LogError::Failed);
        }
        if state.closed {
            return Err(LogError::Closed);
        }
        if state.pending.bytes.len() >= MAX_PENDING {
            return Err(LogError::Behind);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let pending = &mut state.pending;
        let start = pending.bytes.len();
        let len = Record::encoded_len(principal, body);
        let groups = pending.groups.len();
        let group_start = groups.checked_sub(2).map_or(0, |i| pending.groups[i].end);
        let group = match pending.groups.last_mut() {
            // Continue the open group while it stays within BATCH_MAX.
            Some(g) if g.end - group_start + len <= BATCH_MAX => g,
            _ => {
                pending.groups.push(Group {
                    end: start,
                    first_seq: seq,
                    last_seq: seq,
                });
                pending.groups.last_mut().expect("pushed above")
            }
        };
        let record = Record {
            kind,
            shard: self.shard,
            seq,
            received_ns,
            // Bounded by BATCH_MAX records.
            group_index: (seq - group.first_seq) as u32,
            principal,
            body,
        };
        record.encode(&mut pending.bytes);
        group.end = pending.bytes.len();
        group.last_seq = seq;
        if let Some(flusher) = state.flusher.take() {
            flusher.wake();
        }
        Ok(seq)
    }

    /// Resolves once record `seq` is on stable storage.
    pub async fn durable(&self, seq: u64) -> Result<(), LogError> {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.durable_seq >= seq {
                Poll::Ready(Ok(()))
            } else if state.failed {
                Poll::Ready(Err(LogError::Failed))
            } else {
                state.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Stops taking records; the flusher writes what is pending and ends.
    pub fn close(&self) {
        let mut state = self.state.borrow_mut();
        state.closed = true;
        if let Some(flusher) = state.flusher.take() {
            flusher.wake();
        }
    }

    /// Resolves when the flusher has ended (everything appended is durable, or failed).
    pub async fn stopped(&self) {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.stopped {
                Poll::Ready(())
            } else {
                state.stop_waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// The flusher: runs until [`Log::close`] (after writing everything pending) or
    /// the first I/O error. `last` is the recovered last segment and its end, if any.
    pub async fn run_flusher(self: Rc<Self>, last: Option<(PathBuf, u64)>) {
        let result = self.flush_loop(last).await;
        let mut state = self.state.borrow_mut();
        if let Err(e) = result {
            error!(
                "shard {}: log write failed, refusing all further writes: {e}",
                self.shard
            );
            state.failed = true;
        }
        state.stopped = true;
        for waiter in state.waiters.drain(..) {
            waiter.wake();
        }
        if let Some(waiter) = state.stop_waiter.take() {
            waiter.wake();
        }
    }

    /// The next batch to write, once there is one; `None` once closed and drained.
    async fn next_batch(&self) -> Option<Batch> {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if !state.pending.bytes.is_empty() {
                let spare = std::mem::take(&mut state.spare);
                Poll::Ready(Some(std::mem::replace(&mut state.pending, spare)))
            } else if state.closed {
                Poll::Ready(None)
            } else {
                state.flusher = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    async fn flush_loop(&self, last: Option<(PathBuf, u64)>) -> io::Result<()> {
        let mut segment = match last {
            Some((path, pos)) => Some(Segment::open(&path, pos).await?),
            None => None,
        };
        while let Some(mut batch) = self.next_batch().await {
            let mut at = 0;
            for group in &batch.groups {
                let bytes = &batch.bytes[at..group.end];
                let current = segment.take();
                let s = segment.insert(
                    self.segment_for(current, group.first_seq, bytes.len())
                        .await?,
                );
                s.write(bytes).await?;
                at = group.end;
                let mut state = self.state.borrow_mut();
                state.durable_seq = group.last_seq;
                for waiter in state.waiters.drain(..) {
                    waiter.wake();
                }
            }
            batch.clear();
            self.state.borrow_mut().spare = batch;
        }
        match segment {
            Some(segment) => segment.close().await,
            None => Ok(()),
        }
    }

    /// The segment a group of `len` bytes starting at `first_seq` goes to: the current
    /// one, or a new one when there is none or the group would pass `segment_bytes`
    /// (a group larger than a whole segment still goes into a fresh one of its own).
    async fn segment_for(
        &self,
        current: Option<Segment>,
        first_seq: u64,
        len: usize,
    ) -> io::Result<Segment> {
        if let Some(s) = current {
            if s.pos <= HEADER_LEN as u64 || s.pos + len as u64 <= self.segment_bytes {
                return Ok(s);
            }
            s.close().await?;
        }
        let created = Segment::create(&self.dir, self.shard, first_seq, self.segment_bytes).await?;
        info!(
            "shard {}: new segment {}",
            self.shard,
            created.path.display()
        );
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_are_refused_when_the_disk_falls_behind() {
        // No flusher runs, as when the disk stalls: pending grows to the cap, then stops.
        let log = Log::new(0, PathBuf::from("unused"), 1 << 20, Durability::Async, 1);
        let body = vec![b'x'; 64 << 10];
        let mut stored = 0;
        while log.append(Kind::Report, "p", 0, &body).is_ok() {
            stored += 1;
        }
        assert_eq!(
            log.append(Kind::Report, "p", 0, b"{}"),
            Err(LogError::Behind)
        );
        let per_record = Record::encoded_len("p", &body);
        assert_eq!(stored, MAX_PENDING.div_ceil(per_record));
    }
}
