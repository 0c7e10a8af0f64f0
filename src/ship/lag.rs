//! How many records the shipper is behind: per shard, the records the log holds from
//! the cursor on. Sequence numbers are contiguous within a segment but not across
//! segments (a server started after a crash begins a new segment past every id it had
//! reserved, up to 2^20 later), so records are counted segment by segment, never taken
//! as the difference of two ids. A segment is read once its records are final; the
//! last one is read on from where the previous look stopped.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::log::files::list_segments;
use crate::log::record::{Decoded, HEADER_LEN};
use crate::log::window::Window;

/// Per shard, per segment (by its first sequence number): its records counted so far.
#[derive(Default)]
pub struct Lag {
    shards: BTreeMap<u16, Shard>,
}

#[derive(Default)]
struct Shard {
    segments: BTreeMap<u64, Counted>,
    looked: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Counted {
    /// One past the last record counted.
    end_seq: u64,
    /// Where the next record would start.
    offset: u64,
    /// A later segment exists: nothing more comes into this one.
    closed: bool,
}

impl Lag {
    /// Counts shard `shard`'s new records in `dir`, at most once per `every`.
    /// A log that cannot be read leaves the count as it was: it is only for the
    /// progress line, and the shipping scan reports damage itself.
    pub fn look(&mut self, shard: u16, dir: &Path, every: Duration) {
        let state = self.shards.entry(shard).or_default();
        if state.looked.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        state.looked = Some(Instant::now());
        let Ok(segments) = list_segments(dir) else {
            return;
        };
        state
            .segments
            .retain(|first, _| segments.iter().any(|s| s.first_seq == *first));
        for (i, segment) in segments.iter().enumerate() {
            let closed = i + 1 < segments.len();
            let from = state
                .segments
                .get(&segment.first_seq)
                .copied()
                .unwrap_or(Counted {
                    end_seq: segment.first_seq,
                    offset: HEADER_LEN as u64,
                    closed: false,
                });
            if from.closed {
                continue;
            }
            if let Ok((end_seq, offset)) = count(&segment.path, shard, from) {
                let counted = Counted {
                    end_seq,
                    offset,
                    closed,
                };
                state.segments.insert(segment.first_seq, counted);
            }
        }
    }

    /// Records counted in every shard's log at or past its cursor (0 when none).
    pub fn behind(&self, cursors: &BTreeMap<u16, u64>) -> u64 {
        self.shards
            .iter()
            .map(|(shard, state)| {
                let cursor = cursors.get(shard).copied().unwrap_or(0);
                state
                    .segments
                    .iter()
                    .map(|(&first, c)| c.end_seq.saturating_sub(first.max(cursor)))
                    .sum::<u64>()
            })
            .sum()
    }
}

/// Walks the records of the segment at `path` from `from` on (checking each one's CRC,
/// shard and sequence number); where they end.
fn count(path: &Path, shard: u16, from: Counted) -> io::Result<(u64, u64)> {
    let mut window = Window::open(path)?;
    let (mut seq, mut offset) = (from.end_seq, from.offset);
    while let Decoded::Record(_, len) = window.decode_at(offset, Some((shard, seq)))? {
        seq += 1;
        offset += len as u64;
    }
    Ok((seq, offset))
}
