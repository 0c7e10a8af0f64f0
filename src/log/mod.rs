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

use std::cell::{Cell, RefCell};
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

struct State {
    /// Encoded records not yet taken by the flusher, and the spare buffer it swaps in.
    pending: Vec<u8>,
    spare: Vec<u8>,
    next_seq: u64,
    /// The write group being filled in `pending`: its first record and its size. A new
    /// group starts with an empty `pending` or when one would pass `BATCH_MAX`.
    group_first_seq: u64,
    group_bytes: usize,
    /// Every record up to this sequence number is on stable storage.
    durable_seq: u64,
    failed: bool,
    closed: bool,
    waiters: Vec<Waker>,
    flusher: Option<Waker>,
}

/// One shard's log writer.
pub struct Log {
    shard: u16,
    dir: PathBuf,
    segment_bytes: u64,
    durability: Durability,
    state: RefCell<State>,
    /// The flusher has finished (after close or failure).
    stopped: Cell<bool>,
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
                pending: Vec::with_capacity(BATCH_MAX),
                spare: Vec::with_capacity(BATCH_MAX),
                next_seq,
                group_first_seq: next_seq,
                group_bytes: 0,
                durable_seq: next_seq - 1,
                failed: false,
                closed: false,
                waiters: Vec::new(),
                flusher: None,
            }),
            stopped: Cell::new(false),
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
        if state.pending.len() >= MAX_PENDING {
            return Err(LogError::Behind);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let len = Record::encoded_len(principal, body);
        if state.pending.is_empty() || state.group_bytes + len > BATCH_MAX {
            state.group_first_seq = seq;
            state.group_bytes = 0;
        }
        state.group_bytes += len;
        let record = Record {
            kind,
            shard: self.shard,
            seq,
            received_ns,
            // Bounded by BATCH_MAX records.
            group_index: (seq - state.group_first_seq) as u32,
            principal,
            body,
        };
        record.encode(&mut state.pending);
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
        while !self.stopped.get() {
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
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
        for waiter in state.waiters.drain(..) {
            waiter.wake();
        }
        self.stopped.set(true);
    }

    async fn flush_loop(&self, last: Option<(PathBuf, u64)>) -> io::Result<()> {
        let mut segment = match last {
            Some((path, pos)) => Some(Segment::open(&path, pos).await?),
            None => None,
        };
        loop {
            let batch = poll_fn(|cx| {
                let mut state = self.state.borrow_mut();
                if !state.pending.is_empty() {
                    let spare = std::mem::take(&mut state.spare);
                    Poll::Ready(Some(std::mem::replace(&mut state.pending, spare)))
                } else if state.closed {
                    Poll::Ready(None)
                } else {
                    state.flusher = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            let Some(mut batch) = batch else {
                if let Some(segment) = segment {
                    segment.close().await?;
                }
                return Ok(());
            };
            let mut at = 0;
            while at < batch.len() {
                let (end, first_seq, last_seq) = chunk(&batch, at);
                let rotate = match &segment {
                    None => true,
                    Some(s) => {
                        s.pos > HEADER_LEN as u64 && s.pos + (end - at) as u64 > self.segment_bytes
                    }
                };
                if rotate {
                    if let Some(old) = segment.take() {
                        old.close().await?;
                    }
                    let created =
                        Segment::create(&self.dir, self.shard, first_seq, self.segment_bytes)
                            .await?;
                    info!(
                        "shard {}: new segment {}",
                        self.shard,
                        created.path.display()
                    );
                    segment = Some(created);
                }
                if let Some(s) = segment.as_mut() {
                    s.write(&batch[at..end]).await?;
                }
                at = end;
                let mut state = self.state.borrow_mut();
                state.durable_seq = last_seq;
                for waiter in state.waiters.drain(..) {
                    waiter.wake();
                }
            }
            batch.clear();
            self.state.borrow_mut().spare = batch;
        }
    }
}

/// The write group of `batch` starting at `at` (groups were cut by `append` at
/// `BATCH_MAX` bytes): (end offset, first and last sequence numbers).
fn chunk(batch: &[u8], at: usize) -> (usize, u64, u64) {
    let field = |offset: usize, range: std::ops::Range<usize>| -> u64 {
        let bytes = &batch[offset + range.start..offset + range.end];
        bytes.iter().rev().fold(0, |n, &b| (n << 8) | u64::from(b))
    };
    let len_at = |offset: usize| 8 + field(offset, 4..8) as usize;
    let first_seq = field(at, 12..20);
    let mut last_seq = first_seq;
    let mut end = at + len_at(at);
    while end < batch.len() && field(end, 32..36) != 0 {
        last_seq = field(end, 12..20);
        end += len_at(end);
    }
    (end, first_seq, last_seq)
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
