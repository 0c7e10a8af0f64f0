//! The flusher's segments: the current one while a write group fits, else a new one,
//! listed in the manifest before any record goes into it. A new one is the spare
//! prepared ahead once the current one is half full, when there is one; creating one
//! is retried while it fails (a full disk), with appends refused meanwhile.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::manifest::Listed;
use super::record::HEADER_LEN;
use super::segment::{Segment, Spare};
use super::Durability;
use super::{Log, SpareState};

/// How often segment creation is retried while it fails (a full disk): soon enough
/// that writes resume within a second of space returning, rarely enough to cost nothing.
pub const CREATE_RETRY: Duration = Duration::from_secs(1);

/// How often a stop that waits for space to write acknowledged records says so.
const STOP_WAIT_SAY: Duration = Duration::from_secs(10);

impl Log {
    /// The segment a group of `len` bytes starting at `first_seq` goes to: the current
    /// one, or a new one when there is none or the group would pass `segment_bytes`
    /// (a group larger than a whole segment still goes into a fresh one of its own).
    pub(super) async fn segment_for(
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
    pub(super) fn prepare_spare(&self, me: &Rc<Log>) {
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
        if let Some(spare) = self.take_spare() {
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
                Err(e) => self.creation_failed(first_seq, &e, &mut stop_said)?,
            }
            glommio::timer::sleep(CREATE_RETRY).await;
        }
    }

    /// The prepared spare segment, if one is ready (one still being prepared is left
    /// to finish).
    fn take_spare(&self) -> Option<Spare> {
        let mut state = self.spare.borrow_mut();
        match std::mem::replace(&mut *state, SpareState::None) {
            SpareState::Ready(spare) => Some(spare),
            SpareState::Preparing => {
                *state = SpareState::Preparing;
                None
            }
            SpareState::None | SpareState::Failed => None,
        }
    }

    /// Segment `first_seq` could not be created (`e`): writes are refused until one
    /// can. During a stop, an error unless acknowledged records wait to be written;
    /// then it says so every [`STOP_WAIT_SAY`] (`stop_said`: when it last did).
    fn creation_failed(
        &self,
        first_seq: u64,
        e: &io::Error,
        stop_said: &mut Option<Instant>,
    ) -> io::Result<()> {
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
                *stop_said = Some(Instant::now());
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
        Ok(())
    }
}
