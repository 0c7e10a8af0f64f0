//! Reading a shard's log back: at start-up (verify, cut a torn tail, resume), and for
//! the offline `export` and `verify` commands, which may run beside a live server.
//!
//! The rule for a bad record: the log is written one write group at a time (one write,
//! one `fdatasync`), the next group only after the previous one is synced, and a record
//! is acknowledged only once its group is synced. So only the last group of the last
//! segment can be torn by a crash. Each record carries its position in its group, so
//! `seq - group index` names its group. An invalid record in the last segment after
//! which every valid record belongs to a group that started at or before it (or after
//! which nothing valid follows) is a torn tail: cut (zeroed) at recovery. A valid record
//! of a *later* group after a bad one, a bad record in an earlier segment, or a
//! sequence gap between segments is corruption of acknowledged data: the server refuses
//! to start and names the file and offset.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::log::record::{
    decode, decode_header, field, u16_at, u64_at, Decoded, Kind, Record, FIXED_LEN, HEADER_LEN,
};

/// Most bytes one write batch holds (a single larger record is a batch of its own).
pub const BATCH_MAX: usize = 1 << 20;

/// A segment file of a shard.
#[derive(Clone, Debug)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub first_seq: u64,
}

/// Segment files are named by their first sequence number, 20 digits, so names sort
/// in log order.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

pub fn shard_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(format!("shard-{shard}"))
}

/// The segment files of a shard directory, in order. A missing directory has none.
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegmentFile>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("listing {}: {e}", dir.display()),
            ))
        }
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(first_seq) = stem.parse::<u64>() {
            segments.push(SegmentFile {
                path: entry.path(),
                first_seq,
            });
        }
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// Removes `.seg.tmp` files: segments whose creation a crash interrupted before they
/// were renamed into place (they hold no record). Returns how many.
pub fn remove_unfinished(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.to_str().is_some_and(|p| p.ends_with(".seg.tmp")) {
            fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Corruption that must not be cut silently.
#[derive(Debug)]
pub struct Corruption {
    pub path: PathBuf,
    pub offset: u64,
    pub reason: String,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.path.display(),
            self.offset,
            self.reason
        )
    }
}

/// A torn tail found at the end of the last segment.
#[derive(Debug, Clone)]
pub struct TornTail {
    pub path: PathBuf,
    pub offset: u64,
    /// Where the non-zero bytes after `offset` end (what a cut must zero).
    pub dirty_end: u64,
    /// Valid-looking records after the torn one, dropped with it (never acknowledged).
    pub dropped_records: u64,
    pub reason: &'static str,
}

/// What a scan of one shard found.
#[derive(Debug, Default)]
pub struct ShardScan {
    pub segments: usize,
    pub records: u64,
    pub record_bytes: u64,
    /// The sequence number the next record gets.
    pub next_seq: u64,
    /// The last segment and the offset where its valid records end.
    pub last: Option<(SegmentFile, u64)>,
    pub torn: Option<TornTail>,
}

/// Scans every segment of shard `shard` in `dir`, calling `each` for every valid
/// record in order. Corruption is an error; a torn tail is reported, not changed.
pub fn scan_shard(
    dir: &Path,
    shard: u16,
    mut each: impl FnMut(&Record<'_>),
) -> Result<ShardScan, Corruption> {
    let io_err = |path: &Path, e: io::Error| Corruption {
        path: path.to_path_buf(),
        offset: 0,
        reason: format!("cannot read: {e}"),
    };
    let segments = list_segments(dir).map_err(|e| io_err(dir, e))?;
    let mut scan = ShardScan {
        next_seq: 1,
        ..ShardScan::default()
    };
    for (i, segment) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let bytes = fs::read(&segment.path).map_err(|e| io_err(&segment.path, e))?;
        let corrupt = |offset: usize, reason: String| Corruption {
            path: segment.path.clone(),
            offset: offset as u64,
            reason,
        };
        let (header_shard, first_seq) =
            decode_header(&bytes).map_err(|r| corrupt(0, r.to_string()))?;
        if header_shard != shard || first_seq != segment.first_seq {
            return Err(corrupt(
                0,
                "segment header disagrees with its shard or file name".into(),
            ));
        }
        if first_seq != scan.next_seq && !(i == 0 && first_seq > 0) {
            return Err(corrupt(
                0,
                format!(
                    "sequence gap: expected first record {}, segment starts at {first_seq}",
                    scan.next_seq
                ),
            ));
        }
        scan.next_seq = first_seq;
        scan.segments += 1;
        let mut offset = HEADER_LEN;
        loop {
            match decode(&bytes[offset..], Some((shard, scan.next_seq))) {
                Decoded::Record(record, len) => {
                    each(&record);
                    scan.records += 1;
                    scan.record_bytes += len as u64;
                    scan.next_seq += 1;
                    offset += len;
                }
                Decoded::End => break,
                Decoded::Invalid(reason) => {
                    let later = valid_records_after(&bytes, offset + 1, shard, scan.next_seq);
                    // A later group was written after this record's group was synced.
                    let acknowledged = later
                        .iter()
                        .find(|&&(_, group_first)| group_first > scan.next_seq);
                    if let Some(&(at, _)) = acknowledged {
                        return Err(corrupt(
                            offset,
                            format!("{reason}, and a record of a later write group follows at offset {at}"),
                        ));
                    }
                    if !is_last {
                        return Err(corrupt(
                            offset,
                            format!("{reason}, in a segment that is not the last"),
                        ));
                    }
                    let dirty_end = last_nonzero(&bytes).map_or(offset, |i| i + 1);
                    scan.torn = Some(TornTail {
                        path: segment.path.clone(),
                        offset: offset as u64,
                        dirty_end: dirty_end.max(offset) as u64,
                        dropped_records: later.len() as u64,
                        reason,
                    });
                    break;
                }
            }
        }
        if is_last {
            scan.last = Some((segment.clone(), offset as u64));
        } else if offset < bytes.len() && bytes[offset..].iter().any(|&b| b != 0) {
            return Err(corrupt(
                offset,
                "bytes after the last record of a closed segment".into(),
            ));
        }
    }
    Ok(scan)
}

/// Valid records of `shard` with a sequence number of at least `min_seq` from `from`
/// on: (offset, first sequence number of the record's write group). Zero runs are
/// skipped a word at a time; most other offsets fail the cheap checks before the CRC.
fn valid_records_after(bytes: &[u8], from: usize, shard: u16, min_seq: u64) -> Vec<(usize, u64)> {
    let mut found = Vec::new();
    let mut at = from;
    while at + FIXED_LEN <= bytes.len() {
        if bytes[at..at + 8] == [0; 8] {
            at += 8;
            continue;
        }
        let seq = u64_at(bytes, at + field::SEQ);
        let plausible = Kind::from_byte(bytes[at + field::KIND]).is_some()
            && u16_at(bytes, at + field::SHARD) == shard
            && seq >= min_seq;
        if plausible {
            if let Decoded::Record(record, len) = decode(&bytes[at..], None) {
                found.push((at, record.seq - u64::from(record.group_index)));
                at += len;
                continue;
            }
        }
        at += 1;
    }
    found
}

/// Index of the last non-zero byte, scanning back a 4 KiB block at a time.
fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    let mut end = bytes.len();
    while end > 0 {
        let start = end.saturating_sub(4096);
        if let Some(i) = bytes[start..end].iter().rposition(|&b| b != 0) {
            return Some(start + i);
        }
        end = start;
    }
    None
}
