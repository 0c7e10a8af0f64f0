//! The checks shared by the strict scan ([`crate::log::recover`]), which stops at the
//! first failure, and the salvage scan ([`crate::log::salvage`]), which reports each
//! and reads on: the segment files against the manifest, and what a valid record and
//! a segment's chaining must pass beyond their checksums (a failure there cannot come
//! from a crash: it is an edit).

use std::fs;
use std::io;
use std::path::Path;

use crate::log::files::{segment_name, SegmentFile};
use crate::log::manifest::{Listed, Manifest, MANIFEST};
use crate::log::record::{fits_version, Hash, Record};
use crate::log::recover::Corruption;
use crate::log::window::Window;

/// Why a chained segment may not be followed by an unchained one.
const UNCHAINED_AFTER_CHAINED: &str = "an unchained (version 1) segment after a chained one";

/// Why zeros that are followed by data do not end a segment's records.
const ZEROS_THEN_DATA: &str = "zeros where a record should start, with data after them";

/// A segment whose chaining is `chained`, after segments one of which was chained
/// (`chained_before`): an unchained one may not follow a chained one.
pub fn chaining_order(chained_before: bool, chained: bool) -> Option<&'static str> {
    (chained_before && !chained).then_some(UNCHAINED_AFTER_CHAINED)
}

/// A record whose kind or chaining its segment's `version` does not have.
pub fn version_mismatch(record: &Record<'_>, version: u16) -> Option<&'static str> {
    (!fits_version(record, version))
        .then_some("record kind or chaining disagrees with its segment's version: edited")
}

/// A record whose `prev` is not `before`, the hash of the record before it (`None`:
/// unknown, nothing to check).
pub fn chain_break(record: &Record<'_>, before: Option<&Hash>) -> Option<String> {
    let broken = record.prev.zip(before).is_some_and(|(p, b)| p != b);
    broken.then(|| {
        format!(
            "hash chain broken: record {} does not follow the record before it \
             (history edited)",
            record.seq
        )
    })
}

/// Zeros where a record should start at `at` end a segment's records only if nothing
/// but zeros follows them: `None` then, else why not.
pub fn zeros_end(w: &mut Window, at: u64) -> io::Result<Option<&'static str>> {
    Ok(w.any_nonzero_from(at)?.then_some(ZEROS_THEN_DATA))
}

/// Segments without a `MANIFEST`: which segments and ids the shard had can no longer
/// be checked, so this is damage, never a log to continue ([`crate::log::evidence`]).
pub fn no_manifest(dir: &Path) -> Corruption {
    Corruption::at(
        &dir.join(MANIFEST),
        0,
        "missing: the shard has segments but no MANIFEST, so which segments and ids it had \
         cannot be checked",
    )
}

/// Checks the segment files against the manifest: each listed one present and at least
/// its preallocated size. Returns the unlisted ones, which may only follow every listed
/// one (created just before a crash; the scan then finds them empty).
pub fn check_listing(
    dir: &Path,
    segments: &[SegmentFile],
    manifest: Option<&Manifest>,
) -> Result<Vec<Listed>, Corruption> {
    let Some(manifest) = manifest else {
        return Ok(Vec::new());
    };
    for listed in &manifest.segments {
        let path = dir.join(segment_name(listed.first_seq));
        let len = match fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Corruption::at(
                    &path,
                    0,
                    "segment listed in the manifest is missing",
                ))
            }
            Err(e) => return Err(Corruption::unreadable(&path, e)),
        };
        if len < listed.size {
            return Err(Corruption::at(
                &path,
                len as usize,
                format!(
                    "segment is {len} bytes, shorter than the {} it was preallocated to: truncated",
                    listed.size
                ),
            ));
        }
    }
    let last_listed = manifest.segments.last().map_or(0, |s| s.first_seq);
    let mut unlisted = Vec::new();
    for segment in segments {
        if manifest
            .segments
            .iter()
            .any(|l| l.first_seq == segment.first_seq)
        {
            continue;
        }
        if segment.first_seq <= last_listed {
            return Err(Corruption::at(
                &segment.path,
                0,
                "segment not listed in the manifest (copied in?)",
            ));
        }
        let size = fs::metadata(&segment.path)
            .map_err(|e| Corruption::unreadable(&segment.path, e))?
            .len();
        unlisted.push(Listed {
            first_seq: segment.first_seq,
            size,
        });
    }
    Ok(unlisted)
}
