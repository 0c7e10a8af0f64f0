//! The counted fields (patient, project, site) of the reports a shard validated and
//! appended but whose write group is not yet durable, oldest first. When a report
//! becomes durable the index counts it by these, instead of parsing its body a second
//! time: the fields are the ones the same validator read from the same bytes.
//!
//! The fields' text lives back to back in one reused buffer, removed in bulk once
//! counted, so after warm-up a report allocates nothing here. The queue holds at most
//! what waits for the disk (the log caps that).

use std::collections::VecDeque;

use crate::domain::validate::Submission;

/// The counted fields of one report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields<'a> {
    pub patient: &'a str,
    pub project: Option<&'a str>,
    pub site: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// The fields a valid report is counted by.
    pub fn of(report: &Submission<'a>) -> Self {
        Fields {
            patient: report.patient_id,
            project: report.project_id,
            site: report.site_id,
        }
    }
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    /// Where its text starts, counted from the first byte ever pushed.
    start: u64,
    patient: usize,
    project: Option<usize>,
    site: Option<usize>,
}

#[derive(Debug, Default)]
pub struct Pending {
    entries: VecDeque<Entry>,
    text: String,
    /// The position of `text`'s first byte, counted from the first byte ever pushed.
    base: u64,
}

/// Counted text is removed once there is at least this much of it and it is at least
/// half of the buffer, so removal costs O(1) a byte.
const RELEASE_AT: usize = 16 * 1024;

impl Pending {
    /// Remembers the fields of the report appended as `seq` (sequence numbers rise).
    pub fn push(&mut self, seq: u64, report: Fields<'_>) {
        let start = self.base + self.text.len() as u64;
        let mut put = |s: &str| {
            self.text.push_str(s);
            s.len()
        };
        let entry = Entry {
            seq,
            start,
            patient: put(report.patient),
            project: report.project.map(&mut put),
            site: report.site.map(&mut put),
        };
        self.entries.push_back(entry);
    }

    /// The fields of report `seq`, if this shard pushed them; entries of lower
    /// sequence numbers (never made durable) are dropped.
    pub fn take(&mut self, seq: u64) -> Option<Fields<'_>> {
        while self.entries.front().is_some_and(|e| e.seq < seq) {
            self.entries.pop_front();
        }
        if self.entries.front()?.seq != seq {
            return None;
        }
        self.release();
        let e = self.entries.pop_front()?;
        let mut at = usize::try_from(e.start - self.base).expect("within the buffer");
        let mut cut = |len: usize| {
            let s = &self.text[at..at + len];
            at += len;
            s
        };
        Some(Fields {
            patient: cut(e.patient),
            project: e.project.map(&mut cut),
            site: e.site.map(&mut cut),
        })
    }

    /// Removes the text of reports already counted, in bulk: all before the oldest
    /// entry, which is the one being taken.
    fn release(&mut self) {
        let Some(oldest) = self.entries.front().map(|e| e.start) else {
            return;
        };
        let counted = usize::try_from(oldest - self.base).expect("within the buffer");
        if counted >= RELEASE_AT && counted * 2 >= self.text.len() {
            self.text.drain(..counted);
            self.base = oldest;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report<'a>(patient: &'a str, project: Option<&'a str>, site: Option<&'a str>) -> Fields<'a> {
        Fields {
            patient,
            project,
            site,
        }
    }

    #[test]
    fn fields_come_back_by_sequence_number() {
        let mut p = Pending::default();
        p.push(3, report("P-1", Some("X"), None));
        p.push(4, report("P-2", None, Some("S")));
        p.push(6, report("P-3", Some("Y"), Some("T")));
        let want = |patient, project, site| Fields {
            patient,
            project,
            site,
        };
        assert_eq!(p.take(3), Some(want("P-1", Some("X"), None)));
        assert_eq!(p.take(4), Some(want("P-2", None, Some("S"))));
        // 5 was not pushed (a tag, say): nothing for it, and 6 stays.
        assert_eq!(p.take(5), None);
        assert_eq!(p.take(6), Some(want("P-3", Some("Y"), Some("T"))));
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn older_entries_never_made_durable_are_dropped() {
        let mut p = Pending::default();
        p.push(1, report("A", None, None));
        p.push(2, report("B", None, None));
        assert_eq!(
            p.take(2).map(|f| f.patient.to_owned()),
            Some("B".to_owned())
        );
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn the_buffer_stays_bounded_under_a_steady_stream() {
        let mut p = Pending::default();
        let patient = "P-".repeat(60);
        for seq in 1..=100_000u64 {
            p.push(seq, report(&patient, Some("PROJECT"), Some("SITE")));
            if seq > 10 {
                let f = p.take(seq - 10).expect("pushed");
                assert_eq!(f.patient, patient);
                assert_eq!(f.site, Some("SITE"));
            }
        }
        assert_eq!(p.len(), 10);
        assert!(p.text.len() < 4 * RELEASE_AT, "{}", p.text.len());
    }
}
