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
//! Files: [`record`] is the format byte by byte, [`segment`] one segment file,
//! [`manifest`] the segments, reserved ids and clean-shutdown mark of a shard,
//! [`watch`] what was done to the live segment from outside and saving its records,
//! [`time`] the writer's clock (`receivedAt` never backwards; the idempotency window),
//! `flusher` the task that writes, `rotate` the segments it writes to, [`files`] a shard directory's files by name
//! and a directory's fsync,
//! [`recover`] reading back (start-up recovery, export, verify), [`checks`] the record
//! checks it shares with [`salvage`], [`export`] and [`verify`] the offline commands,
//! [`id`] the record id and hex as they print them, [`heads`] the saved chain heads
//! `verify` checks, [`datadir`] the
//! directory's lock, [`evidence`] every place that knows which ids were given (and the
//! rule that the next id is past all of them), [`retire`] the `retire-shard` command,
//! [`lost`] the ids that damage took, as `verify` and `export --salvage` report them.
//!
//! A write or sync error once the log has started is fatal for the whole process: it is
//! never retried (after a failed `fdatasync` the page state is unknown), nothing waiting
//! is acknowledged, and the process exits non-zero with a line naming the shard, so a
//! supervisor restarts it and recovery decides what is on disk (PostgreSQL treats a
//! failed fsync the same way). Before it has started (the last segment cannot be opened
//! for writing, say) it is a start-up failure. Failing to *create* a segment
//! (a full disk) is not: nothing was written, so the flusher retries every
//! second while appends are refused, and resumes by itself. A clean stop waits there
//! too while records acknowledged with durability `async` are still unwritten. A live
//! segment deleted, replaced or made read-only under the server (looked at before each
//! write group, every second while idle, and at the stop) stops the shard's writes
//! until a restart, once what it holds is saved ([`watch`]).

pub mod backup;
pub mod checks;
pub mod datadir;
pub mod evidence;
pub mod export;
pub mod files;
mod flusher;
pub mod heads;
pub mod id;
pub mod locations;
pub mod lost;
pub mod manifest;
mod metrics;
pub mod open;
pub mod record;
pub mod recover;
pub mod retire;
mod rotate;
pub mod salvage;
pub mod segment;
pub mod time;
pub mod verify;
pub mod watch;
pub mod window;

use std::cell::RefCell;
use std::future::poll_fn;
use std::path::PathBuf;
use std::task::{Poll, Waker};
use std::time::Instant;

use manifest::Manifest;
pub use metrics::{Durability, LogMetrics};
use record::{Hash, Kind, Record, GENESIS};
use recover::BATCH_MAX;
use time::ShardTime;
pub use watch::Fault;

/// Why an append or a wait failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogError {
    /// The shard is shutting down.
    Closed,
    /// More than [`MAX_PENDING`] bytes wait for the disk: refuse rather than grow
    /// without bound (in practice with durability `async`, where nothing waits).
    Behind,
    /// The record does not fit the format (see [`record::Unencodable`]).
    Unencodable,
    /// No new segment can be created, or no more ids reserved in the manifest (the
    /// disk is full); retried until it can.
    NoSpace,
    /// The live segment was deleted, replaced or made read-only under the server:
    /// the shard's writes stopped until a restart.
    Stopped(Fault),
}

/// A record appended: its sequence number and the `receivedAt` it was stamped with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub received_ns: u64,
}

/// Where a writer continues a recovered log.
#[derive(Clone, Copy, Debug)]
pub struct Resume {
    /// The sequence number after the last record in the segments.
    pub log_end: u64,
    /// The next record's sequence number (later than `log_end` if ids were skipped).
    pub next_seq: u64,
    /// The last record's hash, the next record's `prev` ([`GENESIS`] for none).
    pub chain: Hash,
    /// The last record's sequence number (0 for none).
    pub head_seq: u64,
}

impl Resume {
    /// An empty log.
    pub const FRESH: Resume = Resume {
        log_end: 1,
        next_seq: 1,
        chain: GENESIS,
        head_seq: 0,
    };
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
    /// The hash of its last record.
    last_hash: Hash,
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
    /// The flusher failed because the filesystem lacks what the log needs (fallocate).
    unsupported: bool,
    closed: bool,
    /// Ids below this are reserved durably in the manifest; none beyond is given out.
    reserved_seq: u64,
    /// The sequence number after the last record in the segments (what a scan finds):
    /// below `next_seq` when ids were skipped after a crash and none written since.
    log_end: u64,
    /// The hash of the last record appended: the next one's `prev`.
    chain: Hash,
    /// The last durable record's sequence number and hash: the chain's head on disk.
    durable_head: (u64, Hash),
    /// No new segment could be created (a full disk): writes wait and are refused.
    no_space: bool,
    /// Set while the last renewal of the reservation failed (a full disk): when it
    /// is tried again. Meanwhile the ids left are given out, then writes are refused.
    reserve_retry_at: Option<Instant>,
    /// The flusher has a segment to write to (or has ended): the log can take records.
    started: bool,
    /// The flusher has ended (everything appended is durable, or the log failed).
    stopped: bool,
    /// What was done to the live segment under the server, once it was found.
    fault: Option<Fault>,
    /// Stamps `receivedAt`; the idempotency window's clock.
    time: ShardTime,
    /// The flusher is to look at its live segment (it is idle).
    look: bool,
    waiters: Vec<Waker>,
    flusher: Option<Waker>,
    /// Who waits in [`Log::started`] and [`Log::stopped`].
    start_waiter: Option<Waker>,
    stop_waiter: Option<Waker>,
}

impl State {
    /// Whether the log takes a record now, or why not.
    #[inline]
    fn admits(&self) -> Result<(), LogError> {
        if self.closed {
            return Err(LogError::Closed);
        }
        if let Some(fault) = self.fault {
            return Err(LogError::Stopped(fault));
        }
        if self.no_space || self.out_of_ids() {
            return Err(LogError::NoSpace);
        }
        if self.pending.bytes.len() >= MAX_PENDING || self.next_seq >= self.reserved_seq {
            return Err(LogError::Behind);
        }
        Ok(())
    }

    /// Every reserved id is given and no more could be reserved.
    fn out_of_ids(&self) -> bool {
        self.reserve_retry_at.is_some() && self.next_seq >= self.reserved_seq
    }
}

/// The write group a record `seq` of `len` bytes, encoded at `start` of the batch,
/// goes into: the open one while it stays within [`BATCH_MAX`], else a new one.
#[inline]
fn group_for(groups: &mut Vec<Group>, start: usize, seq: u64, len: usize) -> &mut Group {
    let group_start = groups.len().checked_sub(2).map_or(0, |i| groups[i].end);
    match groups.last() {
        Some(g) if g.end - group_start + len <= BATCH_MAX => {}
        _ => groups.push(Group {
            end: start,
            first_seq: seq,
            last_seq: seq,
            last_hash: GENESIS,
        }),
    }
    groups.last_mut().expect("one at least")
}

/// One shard's log writer.
pub struct Log {
    shard: u16,
    dir: PathBuf,
    segment_bytes: u64,
    durability: Durability,
    /// Ids are reserved this many at a time ([`manifest::RESERVE_BLOCK`]).
    reserve_block: u64,
    state: RefCell<State>,
    /// The manifest as last written; only the flusher changes it.
    manifest: RefCell<Manifest>,
    /// Counted by the flusher, per write group.
    metrics: RefCell<LogMetrics>,
    /// The next segment, prepared ahead (see [`segment::Spare`]).
    spare: RefCell<SpareState>,
}

/// Where the next segment's preparation stands.
enum SpareState {
    None,
    Preparing,
    Ready(segment::Spare),
    /// It failed (a full disk): not tried again until the next rotation.
    Failed,
}

impl Log {
    /// A writer that continues a recovered log at `resume`, under `manifest` as
    /// written to disk (its reservation covers `resume.next_seq`), reserving ids
    /// `reserve_block` at a time, stamping time with `time`.
    pub fn new(
        dir: PathBuf,
        segment_bytes: u64,
        durability: Durability,
        resume: Resume,
        manifest: Manifest,
        reserve_block: u64,
        time: ShardTime,
    ) -> Log {
        let Resume {
            log_end,
            next_seq,
            chain,
            head_seq,
        } = resume;
        Log {
            shard: manifest.shard,
            dir,
            segment_bytes,
            durability,
            reserve_block,
            state: RefCell::new(State {
                reserved_seq: manifest.reserved_seq,
                log_end,
                chain,
                durable_head: (head_seq, chain),
                no_space: false,
                reserve_retry_at: None,
                pending: Batch::with_capacity(BATCH_MAX),
                spare: Batch::with_capacity(BATCH_MAX),
                next_seq,
                durable_seq: next_seq - 1,
                failed: false,
                unsupported: false,
                closed: false,
                started: false,
                stopped: false,
                fault: None,
                time,
                look: false,
                waiters: Vec::new(),
                flusher: None,
                start_waiter: None,
                stop_waiter: None,
            }),
            manifest: RefCell::new(manifest),
            metrics: RefCell::new(LogMetrics::new(&Kind::NAMES)),
            spare: RefCell::new(SpareState::None),
        }
    }

    /// A copy of the log's counters, and the bytes of records waiting for the disk.
    pub fn metrics(&self) -> (LogMetrics, u64) {
        let state = self.state.borrow();
        let mut metrics = self.metrics.borrow().clone();
        metrics.no_space = state.no_space || state.out_of_ids();
        (metrics, state.pending.bytes.len() as u64)
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Whether the log failed to start because its filesystem lacks `fallocate`.
    pub fn unsupported_filesystem(&self) -> bool {
        self.state.borrow().unsupported
    }

    /// Whether new records can still be stored.
    pub fn is_healthy(&self) -> bool {
        let state = self.state.borrow();
        !state.failed
            && !state.closed
            && !state.no_space
            && !state.out_of_ids()
            && state.fault.is_none()
    }

    /// What was done to the live segment under the server, if its writes stopped so.
    pub fn fault(&self) -> Option<Fault> {
        self.state.borrow().fault
    }

    /// The chain's head on stable storage: the last durable record's sequence number
    /// and hash ((0, [`GENESIS`]) for a log without records).
    pub fn durable_head(&self) -> (u64, Hash) {
        self.state.borrow().durable_head
    }

    /// Whether record `seq` was stored but is not durable yet.
    pub fn is_pending(&self, seq: u64) -> bool {
        let state = self.state.borrow();
        seq > state.durable_seq && seq < state.next_seq
    }

    /// What waits for the disk: bytes not yet taken by the flusher, and records
    /// stored but not yet durable.
    pub fn backlog(&self) -> (usize, u64) {
        let state = self.state.borrow();
        let unsynced = state.next_seq - 1 - state.durable_seq;
        (state.pending.bytes.len(), unsynced)
    }

    /// The shard's own clock, which the idempotency window is measured on (see [`time`]).
    pub fn own_ns(&self) -> u64 {
        self.state.borrow().time.own_ns()
    }

    /// Encodes a record taken in when the wall clock read `wall_ns` into the pending
    /// batch; returns its sequence number and `receivedAt` (never before the previous
    /// record's: see [`time`]).
    pub fn append(
        &self,
        kind: Kind,
        principal: &str,
        key: Option<&str>,
        wall_ns: u64,
        body: &[u8],
    ) -> Result<Appended, LogError> {
        let mut state = self.state.borrow_mut();
        state.admits()?;
        let len = Record::encoded_len(principal, key, body).map_err(|_| LogError::Unencodable)?;
        let received_ns = self.stamp(&mut state, wall_ns);
        let seq = state.next_seq;
        state.next_seq += 1;
        // Field by field from here: the record borrows the chain while the batch grows.
        let state = &mut *state;
        let pending = &mut state.pending;
        let start = pending.bytes.len();
        let group = group_for(&mut pending.groups, start, seq, len);
        let record = Record {
            kind,
            shard: self.shard,
            seq,
            received_ns,
            // Bounded by BATCH_MAX records.
            group_index: (seq - group.first_seq) as u32,
            principal,
            key,
            body,
            prev: Some(&state.chain),
        };
        // Cannot fail: encoded_len accepted these lengths above.
        record
            .encode(&mut pending.bytes)
            .map_err(|_| LogError::Unencodable)?;
        state.chain = record::hash(&pending.bytes[start..]);
        group.end = pending.bytes.len();
        group.last_seq = seq;
        group.last_hash = state.chain;
        if let Some(flusher) = state.flusher.take() {
            flusher.wake();
        }
        Ok(Appended { seq, received_ns })
    }

    /// Stamps `receivedAt` for a record taken in when the wall clock read `wall_ns`,
    /// saying so when the clock stepped back.
    #[inline]
    fn stamp(&self, state: &mut State, wall_ns: u64) -> u64 {
        let (received_ns, step) = state.time.stamp(wall_ns);
        if let Some(step) = step {
            log::warn!(
                "shard {}: the clock reads {:.3} s before the last receivedAt stored; \
                 receivedAt goes on from the shard's own clock until it catches up",
                self.shard,
                step as f64 / 1e9
            );
        }
        received_ns
    }

    /// Resolves once record `seq` is on stable storage.
    pub async fn durable(&self, seq: u64) -> Result<(), LogError> {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.durable_seq >= seq {
                Poll::Ready(Ok(()))
            } else if state.stopped {
                Poll::Ready(Err(state.fault.map_or(LogError::Closed, LogError::Stopped)))
            } else {
                state.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Has the flusher look at its live segment, if it is idle (see [`watch`]): the
    /// shard asks every second, so an idle shard finds a deleted segment too.
    pub fn look(&self) {
        let mut state = self.state.borrow_mut();
        state.look = true;
        if let Some(flusher) = state.flusher.take() {
            flusher.wake();
        }
    }

    /// Stops taking records; the flusher writes what is pending and ends.
    pub fn close(&self) {
        let mut state = self.state.borrow_mut();
        state.closed = true;
        if let Some(flusher) = state.flusher.take() {
            flusher.wake();
        }
    }

    /// Resolves once the flusher has a segment to write to, so the log can take records
    /// (or has ended: then [`Log::is_healthy`] says why not). While no segment can be
    /// created (a full disk), it waits.
    pub async fn started(&self) {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.started || state.stopped {
                Poll::Ready(())
            } else {
                state.start_waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_are_refused_when_the_disk_falls_behind() {
        // No flusher runs, as when the disk stalls: pending grows to the cap, then stops.
        let manifest = Manifest::new(0, 1 << 40);
        let log = Log::new(
            PathBuf::from("unused"),
            1 << 20,
            Durability::Async,
            Resume::FRESH,
            manifest,
            manifest::RESERVE_BLOCK,
            ShardTime::new(0, 1),
        );
        let body = vec![b'x'; 64 << 10];
        let mut stored = 0;
        while log.append(Kind::Report, "p", None, 0, &body).is_ok() {
            stored += 1;
        }
        assert_eq!(
            log.append(Kind::Report, "p", None, 0, b"{}"),
            Err(LogError::Behind)
        );
        let per_record = Record::encoded_len("p", None, &body).unwrap();
        assert_eq!(stored, MAX_PENDING.div_ceil(per_record));
    }
}
