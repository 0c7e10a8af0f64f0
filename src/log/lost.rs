//! The ids that damage took: what an operator records as lost, derived from the
//! evidence on both sides of each gap (the sequence numbers of the records that
//! survive around it, segment names, the `MANIFEST`'s segment list, clean-shutdown
//! mark and reservation).
//!
//! A gap is reported only next to damage (skipped bytes, a damaged or unreadable
//! segment, a segment shorter than its preallocated size, a listed segment that is
//! missing): ids skipped after a crash leave gaps between segments too, which lose
//! nothing. A reported range may still include such skipped ids, never given to any
//! record, when damage and a skip meet; it never leaves out an id that damage took.

use std::fmt;

/// A range of ids given to records that no longer verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lost {
    pub shard: u16,
    pub first: u64,
    /// The last id lost; `None` when the log's end is lost and unknown.
    pub last: Option<u64>,
    /// With an unknown end: the most it can be (the last id reserved), if known.
    pub at_most: Option<u64>,
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shard = self.shard;
        match (self.last, self.at_most) {
            (Some(last), _) if last == self.first => write!(f, "s{shard}-{last} (1 id)"),
            (Some(last), _) => write!(
                f,
                "s{shard}-{}..s{shard}-{last} ({} ids)",
                self.first,
                last - self.first + 1
            ),
            (None, Some(most)) => write!(
                f,
                "s{shard}-{}.. (the log's end is lost: up to s{shard}-{most} at most, the \
                 last id reserved)",
                self.first
            ),
            (None, None) => write!(f, "s{shard}-{}.. (the log's end is lost)", self.first),
        }
    }
}

/// Follows a salvage scan and collects the ranges lost.
#[derive(Debug)]
pub struct Gaps {
    shard: u16,
    /// The first id a loss here could start at: past the last record that verified,
    /// and at or past the first id of the segment being read when the damage is in it.
    from: u64,
    /// Damage seen since the last record that verified.
    damaged: bool,
    pub lost: Vec<Lost>,
}

impl Gaps {
    pub fn new(shard: u16) -> Gaps {
        Gaps {
            shard,
            from: 1,
            damaged: false,
            lost: Vec::new(),
        }
    }

    /// Damage: the records it hid are lost, up to the next record that verifies.
    pub fn damage(&mut self) {
        self.damaged = true;
    }

    /// A segment whose first id is `first_seq` begins. Without damage before it, ids
    /// below it were skipped, not lost.
    pub fn segment(&mut self, first_seq: u64) {
        if !self.damaged {
            self.from = self.from.max(first_seq);
        }
    }

    /// Record `seq` verified: after damage, every id between is lost.
    pub fn record(&mut self, seq: u64) {
        if self.damaged && seq > self.from {
            self.push(Some(seq - 1), None);
        }
        self.damaged = false;
        self.from = seq + 1;
    }

    /// The scan is over. After damage, the ids from the last record that verified up
    /// to the clean-shutdown mark `clean_end` are lost, or, without one, every id from
    /// there on, up to the reservation `reserved` at most.
    pub fn end(mut self, clean_end: Option<u64>, reserved: Option<u64>) -> Vec<Lost> {
        if self.damaged {
            match clean_end {
                Some(end) if end > self.from => self.push(Some(end - 1), None),
                Some(_) => {}
                None => self.push(None, reserved.map(|r| r.saturating_sub(1))),
            }
        }
        self.lost
    }

    fn push(&mut self, last: Option<u64>, at_most: Option<u64>) {
        self.lost.push(Lost {
            shard: self.shard,
            first: self.from,
            last,
            at_most,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_lost_only_next_to_damage() {
        let mut gaps = Gaps::new(0);
        gaps.segment(1);
        (1..=10).for_each(|s| gaps.record(s));
        // Ids skipped after a crash: a new segment, nothing lost.
        gaps.segment(100);
        gaps.record(100);
        gaps.damage();
        gaps.record(105);
        // Damage at a segment's start: lost from its first id, not from before it.
        gaps.segment(200);
        gaps.damage();
        gaps.record(203);
        gaps.damage();
        let lost = gaps.end(Some(300), None);
        let text: Vec<String> = lost.iter().map(|l| l.to_string()).collect();
        assert_eq!(
            text,
            [
                "s0-101..s0-104 (4 ids)",
                "s0-200..s0-202 (3 ids)",
                "s0-204..s0-299 (96 ids)"
            ]
        );
        let mut open = Gaps::new(1);
        open.record(7);
        open.damage();
        assert_eq!(
            open.end(None, Some(1000))[0].to_string(),
            "s1-8.. (the log's end is lost: up to s1-999 at most, the last id reserved)"
        );
    }
}
