//! The shard's flusher task: takes the pending batch, writes each write group with one
//! write and one `fdatasync` (rotating segments as they fill), then wakes the waiters
//! and reports each record of the group as durable. It keeps the manifest current: a
//! new segment is listed before any record goes into it, ids are reserved a block
//! ahead, and a clean stop is marked once everything is synced.

use std::future::poll_fn;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use log::{error, info, warn};

use super::manifest::{Listed, Manifest, RESERVE_BLOCK};
use super::record::{decode, Decoded, Record, HEADER_LEN};
use super::segment::{Segment, Spare};
use super::Durability;
use super::{Batch, Log, SpareState};

/// How often segment creation is retried while it fails (a full disk): soon enough
/// that writes resume within a second of space returning, rarely enough to cost nothing.
pub const CREATE_RETRY: Duration = Duration::from_secs(1);

/// How often a stop that waits for space to write acknowledged records says so.
const STOP_WAIT_SAY: Duration = Duration::from_secs(10);

impl Log {
    /// Runs until [`Log::close`] (after writing everything pending) or the first I/O
    /// error. `last` is the recovered last segment to continue and its end, if any.
    /// `on_durable` sees every record once its group is on stable storage, with its
    /// offset in its segment.
    pub async fn run_flusher(
        self: Rc<Self>,
        last: Option<(PathBuf, u64)>,
        mut on_durable: impl FnMut(&Record<'_>, u64),
    ) {
        let result = self.flush_loop(&self, last, &mut on_durable).await;
        let mut state = self.state.borrow_mut();
        if let Err(e) = result {
            if state.started {
                crate::base::task::end_process(format_args!(
                    "shard {}: log write failed, nothing more can be acknowledged: {e}",
                    self.shard
                ));
            }
            error!("shard {}: cannot open its log for writing: {e}", self.shard);
            state.failed = true;
            state.unsupported = e.kind() == io::ErrorKind::Unsupported;
        }
        state.stopped = true;
        for waiter in state.waiters.drain(..) {
            waiter.wake();
        }
        for waiter in [state.start_waiter.take(), state.stop_waiter.take()]
            .into_iter()
            .flatten()
        {
            waiter.wake();
        }
    }

    /// The next batch to write, once there is one; `None` once closed and drained.
    /// While idle and asked to ([`Log::look`]), it returns an empty batch: the caller
    /// looks at the live segment then, as it does before each write group.
    async fn next_batch(&self) -> Option<Batch> {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if !state.pending.bytes.is_empty() {
                let spare = std::mem::take(&mut state.spare);
                Poll::Ready(Some(std::mem::replace(&mut state.pending, spare)))
            } else if state.closed {
                Poll::Ready(None)
            } else if std::mem::take(&mut state.look) {
                Poll::Ready(Some(Batch::default()))
            } else {
                state.flusher = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    async fn flush_loop(
        &self,
        me: &Rc<Log>,
        last: Option<(PathBuf, u64)>,
        on_durable: &mut impl FnMut(&Record<'_>, u64),
    ) -> io::Result<()> {
        // A segment before any record: start-up then knows there is room for one.
        let mut segment = Some(match last {
            Some((path, pos)) => {
                Spare::check_filesystem(&self.dir).await?;
                Segment::open(&path, pos).await?
            }
            None => {
                let next_seq = self.state.borrow().next_seq;
                self.segment_for(None, next_seq, 0).await?
            }
        });
        {
            let mut state = self.state.borrow_mut();
            state.started = true;
            if let Some(waiter) = state.start_waiter.take() {
                waiter.wake();
            }
        }
        while let Some(mut batch) = self.next_batch().await {
            if batch.groups.is_empty() {
                if let Some(s) = &segment {
                    if let Some(fault) = s.check().await? {
                        self.stop_writes(s, fault, &[]).await;
                        return Ok(());
                    }
                }
                continue;
            }
            let mut at = 0;
            for group in &batch.groups {
                let bytes = &batch.bytes[at..group.end];
                let current = segment.take();
                let s = segment.insert(
                    self.segment_for(current, group.first_seq, bytes.len())
                        .await?,
                );
                let began = Instant::now();
                let start = s.pos;
                if let Some(fault) = s.write_watched(bytes).await? {
                    self.stop_writes(s, fault, &batch.bytes[at..]).await;
                    return Ok(());
                }
                if s.pos > self.segment_bytes / 2 {
                    self.prepare_spare(me);
                }
                at = group.end;
                let mut metrics = self.metrics.borrow_mut();
                metrics.sync.observe_duration(began.elapsed());
                metrics
                    .group_records
                    .observe(group.last_seq - group.first_seq + 1);
                metrics.bytes += bytes.len() as u64;
                // Counted before anyone is told: a client reads its own write.
                each_record(bytes, &mut |record, offset| {
                    metrics.records[record.kind.index()].1 += 1;
                    on_durable(record, start + offset);
                });
                drop(metrics);
                let mut state = self.state.borrow_mut();
                state.durable_seq = group.last_seq;
                state.durable_head = (group.last_seq, group.last_hash);
                state.log_end = group.last_seq + 1;
                for waiter in state.waiters.drain(..) {
                    waiter.wake();
                }
            }
            batch.clear();
            self.state.borrow_mut().spare = batch;
            self.renew_reservation().await?;
        }
        if let Some(segment) = segment {
            // Closing a deleted segment would lose it: looked at once more first.
            if let Some(fault) = segment.check().await? {
                self.stop_writes(&segment, fault, &[]).await;
                return Ok(());
            }
            segment.close().await;
        }
        self.mark_clean().await
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
            s.close().await;
        }
        let (created, prepared) = self.create_segment(first_seq).await?;
        let mut manifest = self.manifest.borrow().clone();
        manifest.segments.push(Listed {
            first_seq,
            size: self.segment_bytes,
        });
        self.write_manifest(manifest).await?;
        // A scan now ends at this segment's start, even before a record goes into it.
        self.state.borrow_mut().log_end = first_seq;
        let how = if prepared { " (prepared ahead)" } else { "" };
        info!(
            "shard {}: new segment {}{how}",
            self.shard,
            created.path.display()
        );
        Ok(created)
    }

    /// Once the current segment is half full: prepares the next one beside the flusher,
    /// unless one is prepared or being prepared (or failed since the last rotation).
    fn prepare_spare(&self, me: &Rc<Log>) {
        {
            let mut spare = self.spare.borrow_mut();
            if !matches!(*spare, SpareState::None) {
                return;
            }
            *spare = SpareState::Preparing;
        }
        let log = Rc::clone(me);
        crate::base::task::spawn("prepare a segment", async move {
            let prepared = Spare::prepare(&log.dir, log.segment_bytes).await;
            *log.spare.borrow_mut() = match prepared {
                Ok(spare) => SpareState::Ready(spare),
                Err(e) => {
                    info!("shard {}: no spare segment prepared: {e}", log.shard);
                    SpareState::Failed
                }
            };
        })
        .detach();
    }

    /// Creates segment `first_seq`: from the prepared spare when there is one, else
    /// anew, retrying while that fails: nothing was written, so a failure (no space
    /// for the preallocation, say) is not fatal. Meanwhile appends are refused, and
    /// what is pending waits. A shutdown ends the wait with an error, unless records
    /// acknowledged with durability `async` are pending: then it waits on for space.
    /// Also says whether the segment is the prepared spare.
    async fn create_segment(&self, first_seq: u64) -> io::Result<(Segment, bool)> {
        let spare = {
            let mut state = self.spare.borrow_mut();
            match std::mem::replace(&mut *state, SpareState::None) {
                SpareState::Ready(spare) => Some(spare),
                SpareState::Preparing => {
                    *state = SpareState::Preparing;
                    None
                }
                SpareState::None | SpareState::Failed => None,
            }
        };
        if let Some(spare) = spare {
            match Segment::from_spare(spare, &self.dir, self.shard, first_seq).await {
                Ok(segment) => return Ok((segment, true)),
                Err(e) => warn!(
                    "shard {}: the prepared segment failed, creating one: {e}",
                    self.shard
                ),
            }
        }
        // When a stop that waits for space last said so.
        let mut stop_said = None;
        loop {
            match Segment::create(&self.dir, self.shard, first_seq, self.segment_bytes).await {
                Ok(segment) => {
                    if std::mem::take(&mut self.state.borrow_mut().no_space) {
                        info!(
                            "shard {}: segment created again; accepting writes",
                            self.shard
                        );
                    }
                    return Ok((segment, false));
                }
                // A filesystem without fallocate never gets better: fatal, not waited out.
                Err(e) if e.kind() == io::ErrorKind::Unsupported => return Err(e),
                Err(e) => {
                    let mut state = self.state.borrow_mut();
                    if state.closed {
                        let unsynced = (state.durable_seq + 1, state.next_seq - 1);
                        // Async records were acknowledged already: a clean stop waits
                        // for space for them as long as it takes (the supervisor's stop
                        // timeout bounds it). Sync ones were not: they are refused.
                        if self.durability == Durability::Sync || unsynced.0 > unsynced.1 {
                            return Err(io::Error::other(format!(
                                "stopping while no segment can be created; records from {first_seq} on are not written: {e}"
                            )));
                        }
                        if !stop_said.is_some_and(|at: Instant| at.elapsed() < STOP_WAIT_SAY) {
                            stop_said = Some(Instant::now());
                            warn!(
                                "shard {}: stopping, waiting for space in {} to write {} acknowledged records (s{}-{}..s{}-{}): {e}",
                                self.shard,
                                self.dir.display(),
                                unsynced.1 + 1 - unsynced.0,
                                self.shard,
                                unsynced.0,
                                self.shard,
                                unsynced.1,
                            );
                        }
                    }
                    if !state.no_space {
                        warn!(
                            "shard {}: cannot create a segment, refusing writes and retrying every {CREATE_RETRY:?}: {e}",
                            self.shard
                        );
                        state.no_space = true;
                    }
                }
            }
            glommio::timer::sleep(CREATE_RETRY).await;
        }
    }

    /// Reserves the next block of ids once less than half a block is left.
    async fn renew_reservation(&self) -> io::Result<()> {
        let (next_seq, reserved_seq) = {
            let state = self.state.borrow();
            (state.next_seq, state.reserved_seq)
        };
        if next_seq + RESERVE_BLOCK / 2 < reserved_seq {
            return Ok(());
        }
        // Cloned only here: once per half block of ids, not once per batch.
        let mut manifest = self.manifest.borrow().clone();
        manifest.reserved_seq = next_seq + RESERVE_BLOCK;
        self.write_manifest(manifest).await
    }

    /// After a clean stop (everything appended is written and synced): the log ends
    /// exactly here, and the next run continues at the next id, skipping no more.
    async fn mark_clean(&self) -> io::Result<()> {
        let (log_end, next_seq) = {
            let state = self.state.borrow();
            (state.log_end, state.next_seq)
        };
        let mut manifest = self.manifest.borrow().clone();
        manifest.clean_end = Some(log_end);
        manifest.reserved_seq = next_seq;
        self.write_manifest(manifest).await
    }

    /// Writes `manifest` durably (on the blocking pool), then makes it current.
    pub(super) async fn write_manifest(&self, manifest: Manifest) -> io::Result<()> {
        let dir = self.dir.clone();
        let written = manifest.clone();
        glommio::executor()
            .spawn_blocking(move || written.write(&dir))
            .await?;
        self.state.borrow_mut().reserved_seq = manifest.reserved_seq;
        *self.manifest.borrow_mut() = manifest;
        Ok(())
    }
}

/// Calls `f` for each record of an encoded write group, with its offset in the group.
fn each_record(bytes: &[u8], f: &mut impl FnMut(&Record<'_>, u64)) {
    let mut at = 0;
    while let Decoded::Record(record, len) = decode(&bytes[at..], None) {
        f(&record, at as u64);
        at += len;
    }
}
