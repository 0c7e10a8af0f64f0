//! Reading past damage, for people: `verify` lists every problem of a corrupt shard,
//! and `export --salvage` emits every record that still verifies. A salvage scan reads
//! each segment on its own, keeps every record whose checksum, shard and order hold,
//! and after damage resynchronises at the next valid record, reporting each byte
//! range it skipped. It never writes. A record whose `prev` does not match the record
//! just before it is still emitted (an auditor must see every byte) and reported as a
//! break in the hash chain. It also says which ids the damage took ([`crate::log::lost`]).

use std::path::Path;

use crate::log::checks::{self, check_listing, no_manifest};
use crate::log::files::{list_segments, SegmentFile};
use crate::log::lost::{Gaps, Lost};
use crate::log::manifest::{Listed, Manifest};
use crate::log::record::{
    decode, decode_header, hash, Decoded, Hash, Record, GENESIS, HEADER_LEN, VERSION_UNCHAINED,
};
use crate::log::recover::Corruption;
use crate::log::window::Window;

/// What a salvage scan of one shard found.
#[derive(Debug, Default)]
pub struct Salvage {
    pub records: u64,
    /// Every problem: skipped byte ranges, unreadable files, listing problems.
    pub problems: Vec<Corruption>,
    /// The ids the problems took ([`crate::log::lost`]).
    pub lost: Vec<Lost>,
}

/// Scans shard `shard` in `dir` past every problem, calling `each` for each record
/// that verifies, in order, with its hash.
pub fn salvage_shard(dir: &Path, shard: u16, mut each: impl FnMut(&Record<'_>, &Hash)) -> Salvage {
    let mut salvage = Salvage::default();
    let Some((segments, manifest)) = read_listing(dir, shard, &mut salvage.problems) else {
        return salvage;
    };
    let mut last = Last {
        seq: 0,
        hash: Some(GENESIS),
        chained: false,
    };
    let listed = manifest.as_ref().map_or(&[][..], |m| &m.segments[..]);
    // A listed segment that is missing hides ids up to the next one present.
    let missing = |from: u64, to: u64| {
        listed.iter().any(|l| {
            (from..to).contains(&l.first_seq)
                && !segments.iter().any(|s| s.first_seq == l.first_seq)
        })
    };
    let mut gaps = Gaps::new(shard);
    let mut before = 0;
    for segment in &segments {
        if missing(before, segment.first_seq) {
            gaps.damage();
        }
        before = segment.first_seq + 1;
        gaps.segment(segment.first_seq);
        let mut found = Found {
            problems: &mut salvage.problems,
            gaps: &mut gaps,
        };
        let mut take = |r: &Record<'_>, h: &Hash| {
            each(r, h);
            salvage.records += 1;
        };
        if let Err(problem) =
            salvage_segment(&segment.path, shard, &mut last, &mut take, &mut found)
        {
            found.problems.push(problem);
            // The records the error hid are unknown: the next one's prev cannot be judged.
            last.hash = None;
            found.gaps.damage();
        }
        if truncated(segment, listed) {
            gaps.damage();
        }
    }
    if missing(before, u64::MAX) {
        gaps.damage();
    }
    salvage.lost = gaps.end(
        manifest.as_ref().and_then(|m| m.clean_end),
        manifest.as_ref().map(|m| m.reserved_seq),
    );
    salvage
}

/// The shard's segment files and its manifest, each problem with them going to
/// `problems`; `None` when the directory cannot be listed.
fn read_listing(
    dir: &Path,
    shard: u16,
    problems: &mut Vec<Corruption>,
) -> Option<(Vec<SegmentFile>, Option<Manifest>)> {
    let segments = match list_segments(dir) {
        Ok(segments) => segments,
        Err(e) => {
            problems.push(Corruption::unreadable(dir, e));
            return None;
        }
    };
    let manifest = match Manifest::read(dir, shard) {
        Ok(None) if !segments.is_empty() => {
            problems.push(no_manifest(dir));
            None
        }
        Ok(manifest) => manifest,
        Err(e) => {
            problems.push(Corruption::at(dir, 0, e));
            None
        }
    };
    if let Err(problem) = check_listing(dir, &segments, manifest.as_ref()) {
        problems.push(problem);
    }
    Some((segments, manifest))
}

/// Whether `segment` is shorter than the size the manifest lists for it: its end is cut.
fn truncated(segment: &SegmentFile, listed: &[Listed]) -> bool {
    let size = listed.iter().find(|l| l.first_seq == segment.first_seq);
    let len = std::fs::metadata(&segment.path).map_or(0, |m| m.len());
    size.is_some_and(|l| len < l.size)
}

/// The last record salvaged: its sequence number, and its hash unless bytes were
/// skipped since (then the next record's `prev` cannot be checked); and whether a
/// chained (version 2 or 3) segment came before.
struct Last {
    seq: u64,
    hash: Option<Hash>,
    chained: bool,
}

/// What a salvage scan reports as it goes: each problem, and the damage for the ids
/// it took.
struct Found<'a> {
    problems: &'a mut Vec<Corruption>,
    gaps: &'a mut Gaps,
}

/// Salvages one segment: every record of `shard` past `last.seq` that verifies goes to
/// `each`, every damaged range or chain break to `found`. An I/O error ends the
/// segment.
fn salvage_segment(
    path: &Path,
    shard: u16,
    last: &mut Last,
    each: &mut impl FnMut(&Record<'_>, &Hash),
    found: &mut Found<'_>,
) -> Result<(), Corruption> {
    let unreadable = |e: std::io::Error| Corruption::unreadable(path, e);
    let mut w = Window::open(path).map_err(unreadable)?;
    let version = segment_version(&mut w, path, last, found)?;
    let mut at = (HEADER_LEN as u64).min(w.file_len());
    while at < w.file_len() {
        let bytes = w.record_bytes(at).map_err(unreadable)?;
        let reason = match decode(bytes, None) {
            Decoded::Record(record, len) if record.shard == shard && record.seq > last.seq => {
                let hash = hash(&bytes[..len]);
                let problems = record_problems(&record, version, last.hash.as_ref());
                for why in problems.into_iter().flatten() {
                    found.problems.push(Corruption::at(path, at as usize, why));
                }
                found.gaps.record(record.seq);
                each(&record, &hash);
                last.seq = record.seq;
                last.hash = Some(hash);
                at += len as u64;
                continue;
            }
            Decoded::End => match checks::zeros_end(&mut w, at).map_err(unreadable)? {
                Some(reason) => reason,
                None => break,
            },
            Decoded::Invalid(reason) => reason,
            Decoded::Record(..) => "a record of another shard, or out of order",
        };
        last.hash = None;
        found.gaps.damage();
        match skip_damage(&mut w, path, at, (shard, last.seq + 1), reason, found)? {
            Some(next) => at = next,
            None => break,
        }
    }
    Ok(())
}

/// The version of a segment's header, checked against the chaining before it; unknown
/// with a damaged header: then records are not judged by their version.
fn segment_version(
    w: &mut Window,
    path: &Path,
    last: &mut Last,
    found: &mut Found<'_>,
) -> Result<Option<u16>, Corruption> {
    let header = w
        .get(0, HEADER_LEN)
        .map_err(|e| Corruption::unreadable(path, e))?;
    let version = match decode_header(header) {
        Ok(header) => Some(header.version),
        Err(reason) => {
            found.problems.push(Corruption::at(path, 0, reason));
            found.gaps.damage();
            None
        }
    };
    let chained = version.map(|v| v != VERSION_UNCHAINED);
    if let Some(why) = chained.and_then(|c| checks::chaining_order(last.chained, c)) {
        found.problems.push(Corruption::at(path, 0, why));
    }
    last.chained |= chained == Some(true);
    Ok(version)
}

/// What is wrong with a record that is still salvaged: its kind or chaining against its
/// segment's `version` (if known), its `prev` against the hash `before` it (if known).
fn record_problems(
    record: &Record<'_>,
    version: Option<u16>,
    before: Option<&Hash>,
) -> [Option<String>; 2] {
    let edited = version.and_then(|v| checks::version_mismatch(record, v));
    [
        edited.map(String::from),
        checks::chain_break(record, before),
    ]
}

/// Reports the damaged bytes from `at` (for `reason`) up to the next record that can
/// be the shard's `next` (shard, sequence number) or later, and returns where that
/// record starts; `None` when none follows.
fn skip_damage(
    w: &mut Window,
    path: &Path,
    at: u64,
    (shard, next_seq): (u16, u64),
    reason: &str,
    found: &mut Found<'_>,
) -> Result<Option<u64>, Corruption> {
    let unreadable = |e: std::io::Error| Corruption::unreadable(path, e);
    let next = w.next_record(at + 1, shard, next_seq).map_err(unreadable)?;
    let end = match next {
        Some((offset, _, _)) => offset,
        None => w.nonzero_end(at).map_err(unreadable)?.max(at + 1),
    };
    found.problems.push(Corruption::at(
        path,
        at as usize,
        format!("skipped bytes {at}..{end} ({} bytes): {reason}", end - at),
    ));
    Ok(next.map(|(offset, _, _)| offset))
}
