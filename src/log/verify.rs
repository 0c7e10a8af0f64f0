//! `epro-ingest verify`: checks every record and the hash chain of every shard, and
//! reports (and checks saved heads, [`crate::log::heads`]). It only reads, so it is
//! safe beside a running server: a record being written at the end of a shard's last
//! segment is seen as an incomplete tail and left out.

use std::fs;
use std::path::Path;

use crate::log::evidence::{check_copy, copied_shards, copy_path};
use crate::log::files::{shard_dir, shards_of};
use crate::log::heads::{Against, Head};
use crate::log::lost::Lost;
use crate::log::record::{Hash, Record};
use crate::log::recover::{scan_shard_from, Corruption, Progress, Scanned, ShardScan};
use crate::log::salvage::salvage_shard;

/// What `verify` found in one shard: the strict scan's result, for a damaged shard
/// every problem a salvage scan finds past the first and the ids lost, and what became of its saved
/// head, if one was given.
pub struct ShardReport {
    pub shard: u16,
    pub result: Result<ShardScan, Corruption>,
    pub problems: Vec<Corruption>,
    /// The ids its damage took ([`crate::log::lost`]).
    pub lost: Vec<Lost>,
    pub against: Option<(Head, Against)>,
    /// The first record whose `receivedAt` is earlier than its predecessor's.
    pub backwards: Option<Backwards>,
}

/// A record received, by its `receivedAt`, before the record it follows in its shard:
/// the writer never stamps that, so it was forged or edited (or written by a version
/// that let a clock step through).
#[derive(Clone, Copy, Debug)]
pub struct Backwards {
    pub seq: u64,
    /// Its offset in its segment.
    pub offset: u64,
    pub received_ns: u64,
    pub previous_seq: u64,
    pub previous_ns: u64,
}

impl ShardReport {
    /// The shard's chain head as scanned (up to the damage, for a damaged shard).
    pub fn head(&self) -> Option<Head> {
        let scan = self.result.as_ref().ok()?;
        Some(
            scan.head
                .map_or(Head::empty(self.shard), |(seq, hash)| Head {
                    shard: self.shard,
                    seq,
                    hash,
                }),
        )
    }
}

/// `epro-ingest verify`: scans every shard, and checks each head in `saved` against
/// the log; the caller prints the reports and exits non-zero if any shard is damaged
/// or any saved head no longer holds. A saved head of a shard the data directory does
/// not have is an error.
pub fn verify(
    data_dir: &Path,
    saved: &[Head],
    progress: Progress<'_>,
) -> Result<Vec<ShardReport>, String> {
    let mut shards = shards_of(data_dir)?;
    if let Some(lost) = saved
        .iter()
        .find(|h| h.seq > 0 && !shards.iter().any(|(s, _)| *s == h.shard))
    {
        return Err(format!(
            "{}: no shard-{} directory, but a head was saved for it (seq {}): \
             its whole log is gone",
            data_dir.display(),
            lost.shard,
            lost.seq
        ));
    }
    // A shard whose reservation is copied but whose directory is gone is judged too.
    for shard in copied_shards(data_dir) {
        if !shards.iter().any(|(s, _)| *s == shard) {
            shards.push((shard, shard_dir(data_dir, usize::from(shard))));
        }
    }
    Ok(shards
        .into_iter()
        .map(|(shard, dir)| {
            let saved = saved.iter().find(|h| h.shard == shard).copied();
            verify_shard(data_dir, (shard, &dir), saved, &mut *progress)
        })
        .collect())
}

/// Verifies shard `shard` in `dir`: its reservation's copy, then a strict scan, and
/// past a damaged one a salvage scan for every problem and the ids lost.
fn verify_shard(
    data_dir: &Path,
    (shard, dir): (u16, &Path),
    saved: Option<Head>,
    progress: Progress<'_>,
) -> ShardReport {
    let mut seen = Seen {
        saved,
        found: None,
        previous: None,
        backwards: None,
    };
    let result = copy_holds(data_dir, shard, dir).and_then(|_| {
        scan_shard_from(
            dir,
            shard,
            0,
            |r, at| seen.record(r, at),
            |p| progress(shard, p),
        )
    });
    let (problems, lost) = match &result {
        Ok(_) => (Vec::new(), Vec::new()),
        Err(_) => {
            let found = salvage_shard(dir, shard, |_, _| {});
            (found.problems, found.lost)
        }
    };
    let whole = result.is_ok();
    ShardReport {
        shard,
        result,
        problems,
        lost,
        against: saved.map(|h| (h, Against::judge(&h, seen.found, whole))),
        backwards: seen.backwards,
    }
}

/// Checks the copy of shard `shard`'s reservation against its log in `dir`
/// ([`crate::log::evidence`]), as a problem at the copy.
fn copy_holds(data_dir: &Path, shard: u16, dir: &Path) -> Result<u64, Corruption> {
    check_copy(data_dir, shard, dir).map_err(|e| {
        let path = copy_path(data_dir, shard);
        match fs::read(&path) {
            Err(io) if io.kind() != std::io::ErrorKind::NotFound => {
                Corruption::unreadable(&path, io)
            }
            _ => Corruption::at(&path, 0, e),
        }
    })
}

/// What `verify` watches for as a shard's records go by: the saved head's record, and
/// the first `receivedAt` that goes backwards.
struct Seen {
    saved: Option<Head>,
    /// The hash of the saved head's record, once seen.
    found: Option<Hash>,
    /// The last record's sequence number and `receivedAt`.
    previous: Option<(u64, u64)>,
    backwards: Option<Backwards>,
}

impl Seen {
    fn record(&mut self, r: &Record<'_>, at: &Scanned) {
        if self.saved.is_some_and(|h| h.seq == r.seq) {
            self.found = Some(at.hash);
        }
        if let Some((previous_seq, previous_ns)) = self.previous {
            if r.received_ns < previous_ns && self.backwards.is_none() {
                self.backwards = Some(Backwards {
                    seq: r.seq,
                    offset: at.offset,
                    received_ns: r.received_ns,
                    previous_seq,
                    previous_ns,
                });
            }
        }
        self.previous = Some((r.seq, r.received_ns));
    }
}
