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
//!
//! The scan also follows the hash chain ([`crate::log::record`]): a valid record whose
//! `prev` is not the hash of the record before it, or whose chaining disagrees with its
//! segment's version, cannot come from a crash (its checksum holds): it is an edit, and
//! corruption wherever it is.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::log::checks::{self, check_listing, no_manifest};
use crate::log::files::{list_segments, segment_name, SegmentFile};
use crate::log::manifest::{Listed, Manifest, MANIFEST};
use crate::log::record::{
    decode, decode_header, field, hash, u32_at, Decoded, Hash, Record, FIXED_LEN, GENESIS,
    HEADER_LEN, MAX_PAYLOAD,
};
use crate::log::window::Window;

/// Most bytes one write batch holds (a single larger record is a batch of its own).
pub const BATCH_MAX: usize = 1 << 20;

/// A problem that must not be cut silently: corruption of acknowledged data, or a file
/// that cannot be read at all (`unreadable`: permissions, I/O errors).
#[derive(Debug)]
pub struct Corruption {
    pub path: PathBuf,
    pub offset: u64,
    pub reason: String,
    pub unreadable: bool,
}

impl Corruption {
    pub fn at(path: &Path, offset: usize, reason: impl Into<String>) -> Corruption {
        Corruption {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason: reason.into(),
            unreadable: false,
        }
    }

    pub fn unreadable(path: &Path, e: impl fmt::Display) -> Corruption {
        Corruption {
            path: path.to_path_buf(),
            offset: 0,
            reason: e.to_string(),
            unreadable: true,
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unreadable {
            return write!(f, "cannot read {}: {}", self.path.display(), self.reason);
        }
        write!(
            f,
            "{} at offset {}: {}",
            self.path.display(),
            self.offset,
            self.reason
        )
    }
}

/// A torn tail found at the end of the last segment: the last write group, never
/// synced, that a crash left partly written.
#[derive(Debug, Clone)]
pub struct TornTail {
    pub path: PathBuf,
    pub offset: u64,
    /// Where the non-zero bytes after `offset` end (what a cut must zero).
    pub dirty_end: u64,
    /// Valid records after the damaged bytes, cut with them (never acknowledged: their
    /// group was never synced). How many records the damaged bytes held is unknown.
    pub valid_after: u64,
    pub reason: &'static str,
}

/// What a scan of one shard found.
#[derive(Debug, Default)]
pub struct ShardScan {
    pub segments: usize,
    pub records: u64,
    pub record_bytes: u64,
    /// The sequence number after the last valid record.
    pub next_seq: u64,
    /// The last segment and the offset where its valid records end.
    pub last: Option<(SegmentFile, u64)>,
    /// The last segment's format version: only one of the version written now is
    /// continued.
    pub last_version: u16,
    /// The chain's head: the last valid record's sequence number and hash.
    pub head: Option<(u64, Hash)>,
    pub torn: Option<TornTail>,
    /// The shard's manifest, if it has one.
    pub manifest: Option<Manifest>,
    /// Segments on disk that the manifest does not list yet: created just before a
    /// crash, holding no record.
    pub unlisted: Vec<Listed>,
}

impl ShardScan {
    /// The sequence number new records start at: past every valid record and every id
    /// the manifest says may have been given out.
    pub fn resume_seq(&self) -> u64 {
        let reserved = self.manifest.as_ref().map_or(0, |m| m.reserved_seq);
        self.next_seq.max(reserved)
    }
}

/// How far a scan has come, for progress reports: every `PROGRESS_RECORDS` records
/// and at the end of each segment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanProgress {
    pub segments_done: usize,
    pub segments: usize,
    pub records: u64,
    /// Bytes of segment files scanned (records, then the zeros after them), of all.
    pub bytes: u64,
    pub total_bytes: u64,
}

/// A scanned record's place in its segment and its hash.
#[derive(Clone, Copy, Debug)]
pub struct Scanned {
    pub offset: u64,
    pub hash: Hash,
}

/// Hears how far `export` or `verify` has come: the shard being read and its scan's
/// progress (a salvage scan reports nothing until its shard is done).
pub type Progress<'p> = &'p mut dyn FnMut(u16, &ScanProgress);

/// Records between two progress reports within a segment.
const PROGRESS_RECORDS: u64 = 8192;

/// Scans every segment of shard `shard` in `dir` against its manifest, calling `each`
/// for every valid record in order. Corruption is an error; a torn tail is reported,
/// not changed.
/// `progress` hears how far it has come.
pub fn scan_shard(
    dir: &Path,
    shard: u16,
    mut each: impl FnMut(&Record<'_>),
    progress: impl FnMut(&ScanProgress),
) -> Result<ShardScan, Corruption> {
    scan_shard_from(dir, shard, 0, |r, _| each(r), progress)
}

/// [`scan_shard`], skipping every segment that ends before record `from_seq` (a
/// follower's cursor): the scan starts at the segment holding it, whose earlier
/// records `each` still sees. `each` also hears each record's offset in its segment
/// and its hash. The chain is checked from the first record scanned on (from the
/// shard's first record when `from_seq` is 0).
pub fn scan_shard_from(
    dir: &Path,
    shard: u16,
    from_seq: u64,
    each: impl FnMut(&Record<'_>, &Scanned),
    progress: impl FnMut(&ScanProgress),
) -> Result<ShardScan, Corruption> {
    // Segments first, then the manifest: beside a live server, the manifest read then
    // lists every segment seen (a segment is listed before any record goes into it).
    let segments = list_segments(dir).map_err(|e| Corruption::unreadable(dir, e))?;
    let sizes = segment_sizes(&segments)?;
    let manifest = read_manifest(dir, shard)?;
    if manifest.is_none() && !segments.is_empty() {
        return Err(no_manifest(dir));
    }
    let unlisted = check_listing(dir, &segments, manifest.as_ref())?;
    let start = segments
        .iter()
        .rposition(|s| s.first_seq <= from_seq)
        .unwrap_or(0);
    let mut walk = Walk {
        shard,
        scan: ShardScan {
            next_seq: 1,
            ..ShardScan::default()
        },
        chain: (start == 0).then_some(GENESIS),
        chained_before: false,
        done: ScanProgress {
            segments: segments.len(),
            total_bytes: sizes.iter().sum(),
            ..ScanProgress::default()
        },
        each,
        progress,
    };
    for (i, segment) in segments.iter().enumerate().skip(start) {
        // With a manifest, ids may have been skipped between segments (a block reserved
        // before a crash); never may a segment start inside what came before.
        let gap_allowed = manifest.is_some() || i == start;
        walk.segment(segment, i + 1 == segments.len(), gap_allowed)?;
        walk.segment_done(sizes[i]);
    }
    let mut scan = walk.scan;
    let (manifest, unlisted) = recheck_unlisted(dir, shard, &scan, manifest, unlisted)?;
    if let Some(end) = manifest.as_ref().and_then(|m| m.clean_end) {
        after_clean_shutdown(dir, &scan, end)?;
    }
    scan.manifest = manifest;
    scan.unlisted = unlisted;
    Ok(scan)
}

/// The size of each segment file: the whole of the scan's progress.
fn segment_sizes(segments: &[SegmentFile]) -> Result<Vec<u64>, Corruption> {
    let mut sizes = Vec::with_capacity(segments.len());
    for segment in segments {
        let meta = fs::metadata(&segment.path);
        sizes.push(
            meta.map_err(|e| Corruption::unreadable(&segment.path, e))?
                .len(),
        );
    }
    Ok(sizes)
}

fn read_manifest(dir: &Path, shard: u16) -> Result<Option<Manifest>, Corruption> {
    Manifest::read(dir, shard).map_err(|e| Corruption::at(&dir.join(MANIFEST), 0, e))
}

/// Records go into a segment only once the manifest lists it. Beside a live server a
/// segment seen unlisted may have been listed, then written, since the manifest was
/// read (a segment is renamed into place before it is listed): read it again first.
/// Returns the manifest and the segments still unlisted, none of which may hold records.
fn recheck_unlisted(
    dir: &Path,
    shard: u16,
    scan: &ShardScan,
    mut manifest: Option<Manifest>,
    mut unlisted: Vec<Listed>,
) -> Result<(Option<Manifest>, Vec<Listed>), Corruption> {
    if unlisted
        .first()
        .is_some_and(|u| scan.next_seq > u.first_seq)
    {
        manifest = read_manifest(dir, shard)?;
        let listed = |first_seq| {
            manifest
                .as_ref()
                .is_some_and(|m| m.segments.iter().any(|l| l.first_seq == first_seq))
        };
        unlisted.retain(|u| !listed(u.first_seq));
    }
    if let Some(first) = unlisted.first() {
        if scan.next_seq > first.first_seq {
            let path = dir.join(segment_name(first.first_seq));
            return Err(Corruption::at(
                &path,
                HEADER_LEN,
                "records in a segment the manifest does not list",
            ));
        }
    }
    Ok((manifest, unlisted))
}

/// A strict scan in progress: what it found so far, what the next segment and record
/// must follow, and who hears of each record and of the progress.
struct Walk<E, P> {
    shard: u16,
    scan: ShardScan,
    /// The hash the next record's `prev` must hold; unknown when starting mid-log.
    chain: Option<Hash>,
    /// Whether a chained segment came before.
    chained_before: bool,
    done: ScanProgress,
    each: E,
    progress: P,
}

impl<E: FnMut(&Record<'_>, &Scanned), P: FnMut(&ScanProgress)> Walk<E, P> {
    /// Scans one segment: its header, its records, and what follows them.
    fn segment(
        &mut self,
        segment: &SegmentFile,
        is_last: bool,
        gap_allowed: bool,
    ) -> Result<(), Corruption> {
        let path = &segment.path;
        let unreadable = |e: io::Error| Corruption::unreadable(path, e);
        let mut w = Window::open(path).map_err(unreadable)?;
        let version = self.header(&mut w, segment, gap_allowed)?;
        let offset = self.records(&mut w, path, version, is_last)?;
        if is_last {
            self.scan.last = Some((segment.clone(), offset));
            self.scan.last_version = version;
        } else if w.any_nonzero_from(offset).map_err(unreadable)? {
            return Err(Corruption::at(
                path,
                offset as usize,
                "bytes after the last record of a closed segment",
            ));
        }
        Ok(())
    }

    /// Checks a segment's header against its shard, its name, the records before it
    /// (`gap_allowed`: ids may have been skipped) and their chaining; returns its version.
    fn header(
        &mut self,
        w: &mut Window,
        segment: &SegmentFile,
        gap_allowed: bool,
    ) -> Result<u16, Corruption> {
        let path = &segment.path;
        let corrupt = |reason: String| Corruption::at(path, 0, reason);
        let header = w
            .get(0, HEADER_LEN)
            .map_err(|e| Corruption::unreadable(path, e))?;
        let header = decode_header(header).map_err(|r| corrupt(r.to_string()))?;
        let first_seq = header.first_seq;
        if header.shard != self.shard || first_seq != segment.first_seq {
            return Err(corrupt(
                "segment header disagrees with its shard or file name".into(),
            ));
        }
        let next_seq = self.scan.next_seq;
        let continues = first_seq == next_seq || (gap_allowed && first_seq > next_seq);
        if !continues {
            return Err(corrupt(format!(
                "sequence gap: expected first record {next_seq}, segment starts at {first_seq}"
            )));
        }
        if let Some(why) = checks::chaining_order(self.chained_before, header.chained) {
            return Err(corrupt(why.into()));
        }
        self.chained_before |= header.chained;
        self.scan.next_seq = first_seq;
        self.scan.segments += 1;
        Ok(header.version)
    }

    /// Scans a segment's records from its header on; returns where the valid ones end.
    /// Damage there is a torn tail, or corruption.
    fn records(
        &mut self,
        w: &mut Window,
        path: &Path,
        version: u16,
        is_last: bool,
    ) -> Result<u64, Corruption> {
        let unreadable = |e: io::Error| Corruption::unreadable(path, e);
        let mut offset = HEADER_LEN as u64;
        loop {
            let expect = Some((self.shard, self.scan.next_seq));
            let bytes = w.record_bytes(offset).map_err(unreadable)?;
            let reason = match decode(bytes, expect) {
                Decoded::Record(record, len) => {
                    self.record(&record, &bytes[..len], offset, version)
                        .map_err(|why| Corruption::at(path, offset as usize, why))?;
                    offset += len as u64;
                    continue;
                }
                Decoded::End if !is_last => return Ok(offset),
                Decoded::End => match checks::zeros_end(w, offset).map_err(unreadable)? {
                    Some(reason) => reason,
                    None => return Ok(offset),
                },
                Decoded::Invalid(reason) => reason,
            };
            let next = (self.shard, self.scan.next_seq);
            self.scan.torn = Some(torn_tail(w, path, offset, next, reason, is_last)?);
            return Ok(offset);
        }
    }

    /// Takes a valid record (`bytes` as encoded) at `offset` of a segment of `version`,
    /// once it is checked against the version and the chain.
    fn record(
        &mut self,
        record: &Record<'_>,
        bytes: &[u8],
        offset: u64,
        version: u16,
    ) -> Result<(), String> {
        if let Some(why) = checks::version_mismatch(record, version) {
            return Err(why.into());
        }
        if let Some(why) = checks::chain_break(record, self.chain.as_ref()) {
            return Err(why);
        }
        let hash = hash(bytes);
        self.chain = Some(hash);
        self.scan.head = Some((record.seq, hash));
        (self.each)(record, &Scanned { offset, hash });
        self.scan.records += 1;
        self.scan.record_bytes += bytes.len() as u64;
        self.scan.next_seq += 1;
        if self.scan.records % PROGRESS_RECORDS == 0 {
            (self.progress)(&ScanProgress {
                records: self.scan.records,
                bytes: self.done.bytes + offset + bytes.len() as u64,
                ..self.done
            });
        }
        Ok(())
    }

    /// Reports a segment of `size` bytes scanned.
    fn segment_done(&mut self, size: u64) {
        self.done.segments_done += 1;
        self.done.records = self.scan.records;
        self.done.bytes += size;
        (self.progress)(&self.done);
    }
}

/// Damaged bytes at `offset` of a segment: a torn tail if the last, never-synced write
/// group explains them, else corruption. `next` is the (shard, sequence number) the
/// damaged record should have had: its group's first record, or later in that group.
fn torn_tail(
    w: &mut Window,
    path: &Path,
    offset: u64,
    (shard, next_seq): (u16, u64),
    reason: &'static str,
    is_last: bool,
) -> Result<TornTail, Corruption> {
    let unreadable = |e: io::Error| Corruption::unreadable(path, e);
    let corrupt = |why: String| Corruption::at(path, offset as usize, why);
    if !is_last {
        return Err(corrupt(format!(
            "{reason}, in a segment that is not the last"
        )));
    }
    // A later group is written only after this record's group was synced.
    let mut valid_after = 0;
    let mut at = offset + 1;
    while let Some((found, group_first, len)) =
        w.next_record(at, shard, next_seq).map_err(unreadable)?
    {
        if group_first > next_seq {
            return Err(corrupt(format!(
                "{reason}, and a record of a later write group follows at offset {found}"
            )));
        }
        valid_after += 1;
        at = found + len as u64;
    }
    let dirty_end = w.nonzero_end(offset).map_err(unreadable)?;
    // One write group is at most BATCH_MAX bytes, or one record larger than that.
    let head = w.get(offset, FIXED_LEN).map_err(unreadable)?;
    let declared = if head.len() >= FIXED_LEN {
        u32_at(head, field::LEN) as usize + field::PAYLOAD
    } else {
        0
    };
    let group_max = BATCH_MAX.max(declared.min(MAX_PAYLOAD + field::PAYLOAD)) as u64;
    if dirty_end - offset > group_max {
        return Err(corrupt(format!(
            "{reason}, and {} damaged bytes follow: more than one write group",
            dirty_end - offset
        )));
    }
    Ok(TornTail {
        path: path.to_path_buf(),
        offset,
        dirty_end,
        valid_after,
        reason,
    })
}

/// After a clean shutdown nothing was being written: the log must end exactly where
/// the shutdown said, with no torn tail.
fn after_clean_shutdown(dir: &Path, scan: &ShardScan, end: u64) -> Result<(), Corruption> {
    if let Some(torn) = &scan.torn {
        return Err(Corruption::at(
            &torn.path,
            torn.offset as usize,
            format!(
                "{} after a clean shutdown (nothing was being written, so this is damage, not a torn write)",
                torn.reason
            ),
        ));
    }
    if scan.next_seq != end {
        return Err(Corruption::at(
            &dir.join(MANIFEST),
            0,
            format!(
                "the clean shutdown recorded the log ending before record {end}, but it ends before {}",
                scan.next_seq
            ),
        ));
    }
    Ok(())
}
