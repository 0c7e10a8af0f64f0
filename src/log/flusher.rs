//! The shard's flusher task: takes the pending batch, writes each write group with one
//! write and one `fdatasync` (rotating segments as they fill: `rotate`), then wakes the
//! waiters and reports each record of the group as durable. It keeps the manifest
//! current: a new segment is listed before any record goes into it, ids are reserved a
//! block ahead, and a clean stop is marked once everything is synced.

use std::future::poll_fn;
use std::io;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use log::{error, info, warn};

use super::manifest::{Manifest, MANIFEST};
use super::record::{decode, Decoded, Record};
use super::rotate::CREATE_RETRY;
use super::segment::{Segment, Spare};
use super::{Batch, Group, Log};

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
        let mut segment = Some(self.first_segment(last).await?);
        self.set_started();
        while let Some(mut batch) = self.next_batch().await {
            if batch.groups.is_empty() {
                if let Some(s) = &segment {
                    if self.found_fault(s).await?.is_break() {
                        return Ok(());
                    }
                }
                // Idle with every id given (a renewal failed): try again.
                self.renew_reservation().await?;
                continue;
            }
            if self
                .write_batch(me, &mut segment, &batch, on_durable)
                .await?
                .is_break()
            {
                return Ok(());
            }
            batch.clear();
            self.state.borrow_mut().spare = batch;
            self.renew_reservation().await?;
        }
        if let Some(segment) = segment {
            // Closing a deleted segment would lose it: looked at once more first.
            if self.found_fault(&segment).await?.is_break() {
                return Ok(());
            }
            segment.close().await;
        }
        self.mark_clean().await
    }

    /// The segment the flusher starts with: the recovered `last` one continued, or a
    /// new one.
    async fn first_segment(&self, last: Option<(PathBuf, u64)>) -> io::Result<Segment> {
        match last {
            Some((path, pos)) => {
                Spare::check_filesystem(&self.dir).await?;
                Segment::open(&path, pos).await
            }
            None => {
                let next_seq = self.state.borrow().next_seq;
                self.segment_for(None, next_seq, 0).await
            }
        }
    }

    /// The log can take records: wakes whoever waits in [`Log::started`].
    fn set_started(&self) {
        let mut state = self.state.borrow_mut();
        state.started = true;
        if let Some(waiter) = state.start_waiter.take() {
            waiter.wake();
        }
    }

    /// Looks at the live segment `s`; if something was done to it, stops the shard's
    /// writes (`Break`).
    async fn found_fault(&self, s: &Segment) -> io::Result<ControlFlow<()>> {
        if let Some(fault) = s.check().await? {
            self.stop_writes(s, fault, &[]).await;
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Writes each write group of `batch` with one write and one `fdatasync`, rotating
    /// segments as they fill, and tells of each group once it is durable. `Break` when
    /// something done to the live segment stopped the shard's writes.
    async fn write_batch(
        &self,
        me: &Rc<Log>,
        segment: &mut Option<Segment>,
        batch: &Batch,
        on_durable: &mut impl FnMut(&Record<'_>, u64),
    ) -> io::Result<ControlFlow<()>> {
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
                return Ok(ControlFlow::Break(()));
            }
            if s.pos > self.segment_bytes / 2 {
                self.prepare_spare(me);
            }
            at = group.end;
            self.count_group(group, bytes, began, |record, offset| {
                on_durable(record, start + offset)
            });
            self.group_durable(group);
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Counts a durable write group (`bytes`, written and synced since `began`) and
    /// reports each of its records, with its offset in the group, to `on_durable`.
    fn count_group(
        &self,
        group: &Group,
        bytes: &[u8],
        began: Instant,
        mut on_durable: impl FnMut(&Record<'_>, u64),
    ) {
        let mut metrics = self.metrics.borrow_mut();
        metrics.sync.observe_duration(began.elapsed());
        metrics
            .group_records
            .observe(group.last_seq - group.first_seq + 1);
        metrics.bytes += bytes.len() as u64;
        // Counted before anyone is told: a client reads its own write.
        each_record(bytes, &mut |record, offset| {
            metrics.records[record.kind.index()].1 += 1;
            on_durable(record, offset);
        });
    }

    /// Every record up to the end of `group` is durable: wakes who waits for it.
    fn group_durable(&self, group: &Group) {
        let mut state = self.state.borrow_mut();
        state.durable_seq = group.last_seq;
        state.durable_head = (group.last_seq, group.last_hash);
        state.log_end = group.last_seq + 1;
        for waiter in state.waiters.drain(..) {
            waiter.wake();
        }
    }

    /// Reserves the next block of ids once less than half a block is left. No room
    /// for the manifest (ENOSPC, EDQUOT) is not fatal: the ids still reserved are
    /// given out, then writes are refused ([`LogError::NoSpace`](super::LogError))
    /// until a renewal gets through; it is tried again after write groups and while
    /// idle, about every [`CREATE_RETRY`]. Any other failure is, as for a write.
    async fn renew_reservation(&self) -> io::Result<()> {
        let (next_seq, reserved_seq, retry_at) = {
            let state = self.state.borrow();
            (state.next_seq, state.reserved_seq, state.reserve_retry_at)
        };
        if next_seq + self.reserve_block / 2 < reserved_seq
            || retry_at.is_some_and(|at| Instant::now() < at)
        {
            return Ok(());
        }
        let started = Instant::now();
        // Cloned only here: once per half block of ids, not once per batch.
        let mut manifest = self.manifest.borrow().clone();
        manifest.reserved_seq = next_seq + self.reserve_block;
        let written = self.write_manifest(manifest).await;
        let mut state = self.state.borrow_mut();
        match written {
            Ok(()) => {
                if state.reserve_retry_at.take().is_some() {
                    info!("shard {}: ids reserved again", self.shard);
                }
            }
            Err(e) if !no_room(&e) => return Err(e),
            Err(e) => {
                if state.reserve_retry_at.is_none() {
                    warn!(
                        "shard {}: cannot reserve more ids in {}: {e}; {} left, then writes are refused until it can, retried every {CREATE_RETRY:?}",
                        self.shard,
                        self.dir.join(MANIFEST).display(),
                        state.reserved_seq.saturating_sub(state.next_seq),
                    );
                }
                // From the attempt's start, less a little: the idle shard's next look
                // comes about a second after the one that tried.
                state.reserve_retry_at = Some(started + CREATE_RETRY * 9 / 10);
            }
        }
        Ok(())
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

/// Whether `e` says the filesystem has no room (a full disk or quota), which passes.
fn no_room(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}
