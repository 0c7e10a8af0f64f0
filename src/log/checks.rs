//! The checks a valid record and a segment's chaining must pass beyond their checksums,
//! shared by the strict scan ([`crate::log::recover`]), which stops at the first failure,
//! and the salvage scan ([`crate::log::salvage`]), which reports each and reads on.
//! A failure here cannot come from a crash (the checksums hold): it is an edit.

use std::io;

use crate::log::record::{fits_version, Hash, Record};
use crate::log::window::Window;

/// Why a chained segment may not be followed by an unchained one.
pub const UNCHAINED_AFTER_CHAINED: &str = "an unchained (version 1) segment after a chained one";

/// Why zeros that are followed by data do not end a segment's records.
pub const ZEROS_THEN_DATA: &str = "zeros where a record should start, with data after them";

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
