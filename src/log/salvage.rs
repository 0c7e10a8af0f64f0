//! Reading past damage, for people: `verify` lists every problem of a corrupt shard,
//! and `export --salvage` emits every record that still verifies. A salvage scan reads
//! each segment on its own, keeps every record whose checksum, shard and order hold,
//! and after damage resynchronises at the next valid record, reporting each byte
//! range it skipped. It never writes. A record whose `prev` does not match the record
//! just before it is still emitted (an auditor must see every byte) and reported as a
//! break in the hash chain. It also says which ids the damage took ([`crate::log::lost`]).

use std::path::Path;

use crate::log::files::{list_segments, SegmentFile};
use crate::log::lost::{Gaps, Lost};
use crate::log::manifest::{Listed, Manifest};
use crate::log::record::{
    decode, decode_header, fits_version, hash, Decoded, Hash, Record, GENESIS, HEADER_LEN,
    VERSION_UNCHAINED,
};
use crate::log::recover::{check_listing, no_manifest, Corruption};
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
    let segments = match list_segments(dir) {
        Ok(segments) => segments,
        Err(e) => {
            salvage.problems.push(Corruption::unreadable(dir, e));
            return salvage;
        }
    };
    let manifest = match Manifest::read(dir, shard) {
        Ok(None) if !segments.is_empty() => {
            salvage.problems.push(no_manifest(dir));
            None
        }
        Ok(manifest) => manifest,
        Err(e) => {
            salvage.problems.push(Corruption::at(dir, 0, e));
            None
        }
    };
    if let Err(problem) = check_listing(dir, &segments, manifest.as_ref()) {
        salvage.problems.push(problem);
    }
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
        if let Err(problem) = salvage_segment(
            &segment.path,
            shard,
            &mut last,
            &mut |r, h| {
                each(r, h);
                salvage.records += 1;
            },
            (&mut salvage.problems, &mut gaps),
        ) {
            salvage.problems.push(problem);
            // The records the error hid are unknown: the next one's prev cannot be judged.
            last.hash = None;
            gaps.damage();
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

/// Salvages one segment: every record of `shard` past `last.seq` that verifies goes to
/// `each`, every damaged range or chain break to `problems`. An I/O error ends the
/// segment.
fn salvage_segment(
    path: &Path,
    shard: u16,
    last: &mut Last,
    each: &mut impl FnMut(&Record<'_>, &Hash),
    (problems, gaps): (&mut Vec<Corruption>, &mut Gaps),
) -> Result<(), Corruption> {
    let unreadable = |e: std::io::Error| Corruption::unreadable(path, e);
    let mut w = Window::open(path).map_err(unreadable)?;
    // Unknown with a damaged header: then records are not judged by their version.
    let version = match decode_header(w.get(0, HEADER_LEN).map_err(unreadable)?) {
        Ok(header) => Some(header.version),
        Err(reason) => {
            problems.push(Corruption::at(path, 0, reason));
            gaps.damage();
            None
        }
    };
    let chained = version.map(|v| v != VERSION_UNCHAINED);
    if chained == Some(false) && last.chained {
        problems.push(Corruption::at(
            path,
            0,
            "an unchained (version 1) segment after a chained one",
        ));
    }
    last.chained |= chained == Some(true);
    let mut at = (HEADER_LEN as u64).min(w.file_len());
    while at < w.file_len() {
        let bytes = w.record_bytes(at).map_err(unreadable)?;
        let reason = match decode(bytes, None) {
            Decoded::Record(record, len) if record.shard == shard && record.seq > last.seq => {
                if version.is_some_and(|v| !fits_version(&record, v)) {
                    problems.push(Corruption::at(
                        path,
                        at as usize,
                        "record kind or chaining disagrees with its segment's version: edited",
                    ));
                }
                if record
                    .prev
                    .zip(last.hash.as_ref())
                    .is_some_and(|(p, h)| p != h)
                {
                    problems.push(Corruption::at(
                        path,
                        at as usize,
                        format!(
                            "hash chain broken: record {} does not follow the record before it \
                             (history edited)",
                            record.seq
                        ),
                    ));
                }
                let hash = hash(&bytes[..len]);
                gaps.record(record.seq);
                each(&record, &hash);
                last.seq = record.seq;
                last.hash = Some(hash);
                at += len as u64;
                continue;
            }
            Decoded::End => None,
            Decoded::Invalid(reason) => Some(reason),
            Decoded::Record(..) => Some("a record of another shard, or out of order"),
        };
        let reason = match reason {
            Some(reason) => reason,
            None if !w.any_nonzero_from(at).map_err(unreadable)? => break,
            None => "zeros where a record should start, with data after them",
        };
        last.hash = None;
        gaps.damage();
        let next = w
            .next_record(at + 1, shard, last.seq + 1)
            .map_err(unreadable)?;
        let end = match next {
            Some((offset, _, _)) => offset,
            None => w.nonzero_end(at).map_err(unreadable)?.max(at + 1),
        };
        problems.push(Corruption::at(
            path,
            at as usize,
            format!("skipped bytes {at}..{end} ({} bytes): {reason}", end - at),
        ));
        match next {
            Some((offset, _, _)) => at = offset,
            None => break,
        }
    }
    Ok(())
}
