//! Reading past damage, for people: `verify` lists every problem of a corrupt shard,
//! and `export --salvage` emits every record that still verifies. A salvage scan reads
//! each segment on its own, keeps every record whose checksum, shard and order hold,
//! and after damage resynchronises at the next valid record, reporting each byte
//! range it skipped. It never writes.

use std::fs;
use std::path::Path;

use crate::log::manifest::Manifest;
use crate::log::record::{decode, decode_header, Decoded, Record, HEADER_LEN};
use crate::log::recover::{check_listing, last_nonzero, list_segments, next_record, Corruption};

/// What a salvage scan of one shard found.
#[derive(Debug, Default)]
pub struct Salvage {
    pub records: u64,
    /// Every problem: skipped byte ranges, unreadable files, listing problems.
    pub problems: Vec<Corruption>,
}

/// Scans shard `shard` in `dir` past every problem, calling `each` for each record
/// that verifies, in order.
pub fn salvage_shard(dir: &Path, shard: u16, mut each: impl FnMut(&Record<'_>)) -> Salvage {
    let mut salvage = Salvage::default();
    let segments = match list_segments(dir) {
        Ok(segments) => segments,
        Err(e) => {
            salvage.problems.push(Corruption::unreadable(dir, e));
            return salvage;
        }
    };
    let manifest = match Manifest::read(dir, shard) {
        Ok(manifest) => manifest,
        Err(e) => {
            salvage.problems.push(Corruption::at(dir, 0, e));
            None
        }
    };
    if let Err(problem) = check_listing(dir, &segments, manifest.as_ref()) {
        salvage.problems.push(problem);
    }
    let mut last_seq = 0;
    for segment in &segments {
        let bytes = match fs::read(&segment.path) {
            Ok(bytes) => bytes,
            Err(e) => {
                salvage
                    .problems
                    .push(Corruption::unreadable(&segment.path, e));
                continue;
            }
        };
        if let Err(reason) = decode_header(&bytes) {
            salvage
                .problems
                .push(Corruption::at(&segment.path, 0, reason));
        }
        let mut at = HEADER_LEN.min(bytes.len());
        while at < bytes.len() {
            let reason = match decode(&bytes[at..], None) {
                Decoded::Record(record, len) if record.shard == shard && record.seq > last_seq => {
                    each(&record);
                    salvage.records += 1;
                    last_seq = record.seq;
                    at += len;
                    continue;
                }
                Decoded::End if last_nonzero(&bytes[at..]).is_none() => break,
                Decoded::End => "zeros where a record should start, with data after them",
                Decoded::Invalid(reason) => reason,
                Decoded::Record(..) => "a record of another shard, or out of order",
            };
            let next = next_record(&bytes, at + 1, shard, last_seq + 1);
            let end = match &next {
                Some((offset, _, _)) => *offset,
                None => last_nonzero(&bytes)
                    .map_or(bytes.len(), |i| i + 1)
                    .max(at + 1),
            };
            salvage.problems.push(Corruption::at(
                &segment.path,
                at,
                format!("skipped bytes {at}..{end} ({} bytes): {reason}", end - at),
            ));
            match next {
                Some((offset, _, _)) => at = offset,
                None => break,
            }
        }
    }
    salvage
}
