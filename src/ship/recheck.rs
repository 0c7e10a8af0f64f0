//! The shipper's check of the log against what it already shipped: the last record
//! shipped for a (node, shard) is read again from the log, and must still be there
//! with the hash PostgreSQL holds for it. A log rewritten behind the shipper (even
//! re-chained to its end, or only its last record edited, which the chain alone cannot
//! see) or cut stops it before it ships more.

use std::path::Path;

use crate::log::files::list_segments;
use crate::log::record::{Hash, Record};
use crate::ship::schema::Shipped;

/// The last shipped record to look for in this pass's scan.
pub struct Recheck {
    /// The record, when it has a hash (rows shipped before hashes have none) and the
    /// log still has the segment it belongs in (after `retire-shard` it does not: the
    /// shard's new log starts past every old id).
    expect: Option<(u64, Vec<u8>)>,
    seen: bool,
}

impl Recheck {
    /// What to look for in shard directory `dir`, given the last shipped row.
    pub fn new(last: Option<Shipped>, dir: &Path) -> Recheck {
        let expect = last.and_then(|l| {
            let seq = l.seq as u64;
            let covered = list_segments(dir)
                .is_ok_and(|segments| segments.iter().any(|s| s.first_seq <= seq));
            Some((seq, l.sha256?)).filter(|_| covered)
        });
        Recheck {
            expect,
            seen: false,
        }
    }

    /// The sequence number the scan must start from to meet the record (`cursor` when
    /// there is none to look for).
    pub fn from(&self, cursor: u64) -> u64 {
        self.expect
            .as_ref()
            .map_or(cursor, |&(seq, _)| seq.min(cursor))
    }

    /// Looks at a scanned record; why to stop if it is the shipped one, changed.
    pub fn observe(&mut self, record: &Record<'_>, hash: &Hash) -> Option<String> {
        let (seq, shipped) = self.expect.as_ref()?;
        if record.seq != *seq {
            return None;
        }
        self.seen = true;
        (shipped[..] != hash[..]).then(|| {
            format!(
                "record {seq} is not what was shipped (its sha256 differs from \
                 PostgreSQL's row): the log was rewritten"
            )
        })
    }

    /// After a whole scan: why to stop if the record was not met.
    pub fn finish(&self) -> Option<String> {
        let (seq, _) = self.expect.as_ref()?;
        (!self.seen).then(|| {
            format!(
                "record {seq} was shipped but is no longer in the log: history was cut or \
                 replaced"
            )
        })
    }
}
