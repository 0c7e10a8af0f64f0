//! `epro-ingest verify`'s report: a line per shard (what it holds, its torn tail, its
//! damage and the ids that damage took, a `receivedAt` that goes backwards, a saved
//! head's verdict), then what a clean result does not cover.

use std::path::Path;

use super::out;
use super::progress::{advance, progress_bar};
use crate::log::heads::{self, Against, Head};
use crate::log::verify::{self, Backwards, ShardReport};

/// Checks every record of `data_dir` (against the saved heads in `against`, if any)
/// and prints the report; with `heads`, stdout is the heads file and the report goes to
/// stderr. An error when anything is damaged or tampered with.
pub fn verify(data_dir: &Path, heads: bool, against: Option<&Path>) -> Result<(), String> {
    let saved = saved_heads(against)?;
    let bar = progress_bar(data_dir, "verify");
    let reports = verify::verify(data_dir, &saved, &mut advance(&bar));
    bar.finish_and_clear();
    let reports = reports?;
    let say = Say { heads };
    let mut tally = Tally::default();
    for report in &reports {
        tally.backwards += usize::from(say_backwards(report, say));
        tally.corrupt += usize::from(say_scan(report, say));
        tally.broken += usize::from(say_against(report, say));
    }
    if heads {
        for head in reports.iter().filter_map(|r| r.head()) {
            out::print(&head.line());
        }
    }
    tally.verdict(reports.len())?;
    say_not_covered(&reports, against.is_some(), say);
    say.line(format!("ok: {} shards verified", reports.len()));
    Ok(())
}

/// The heads saved in `against` by an earlier `verify --heads`; none without it.
fn saved_heads(against: Option<&Path>) -> Result<Vec<Head>, String> {
    let Some(file) = against else {
        return Ok(Vec::new());
    };
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    heads::parse(&text).map_err(|e| format!("{}: {e}", file.display()))
}

/// Where the report goes: stdout, or stderr with `--heads`, whose stdout is the heads
/// file.
#[derive(Clone, Copy)]
struct Say {
    heads: bool,
}

impl Say {
    fn line(self, line: String) {
        if self.heads {
            eprintln!("{line}");
        } else {
            out::print(&(line + "\n"));
        }
    }
}

/// The shards with each kind of problem.
#[derive(Default)]
struct Tally {
    corrupt: usize,
    broken: usize,
    backwards: usize,
}

impl Tally {
    /// The error for the worst kind of problem found, if any.
    fn verdict(&self, shards: usize) -> Result<(), String> {
        let Tally {
            corrupt,
            broken,
            backwards,
        } = *self;
        if corrupt > 0 {
            return Err(format!(
                "{corrupt} of {shards} shards damaged or unreadable; `export --salvage` \
                 recovers every record that still verifies"
            ));
        }
        if broken > 0 {
            return Err(format!(
                "{broken} saved heads no longer hold: the log was rewritten or truncated"
            ));
        }
        if backwards > 0 {
            return Err(format!(
                "{backwards} shards have a record received before the one it follows"
            ));
        }
        Ok(())
    }
}

/// A record received before the one it follows, if the shard has one: true if so.
fn say_backwards(report: &ShardReport, say: Say) -> bool {
    let Some(b) = &report.backwards else {
        return false;
    };
    let Backwards {
        seq,
        offset,
        received_ns,
        previous_seq,
        previous_ns,
    } = *b;
    let at = |ns| String::from_utf8_lossy(&crate::base::clock::format_rfc3339(ns)).into_owned();
    say.line(format!(
        "shard {}: TIME GOES BACKWARDS: record {seq} (offset {offset}) was received at {}, \
         {:.3} s before record {previous_seq} ({}): the writer never stamps that, so it was \
         forged or edited (or written by a version that let a clock step through)",
        report.shard,
        at(received_ns),
        (previous_ns - received_ns) as f64 / 1e9,
        at(previous_ns),
    ));
    true
}

/// What the shard holds and its torn tail, or its damage: true if damaged or unreadable.
fn say_scan(report: &ShardReport, say: Say) -> bool {
    let shard = report.shard;
    match &report.result {
        Ok(scan) => {
            say.line(format!(
                "shard {shard}: {} segments, {} records, {} bytes, next sequence number {}",
                scan.segments, scan.records, scan.record_bytes, scan.next_seq
            ));
            if let Some(torn) = &scan.torn {
                say.line(format!(
                    "shard {shard}: incomplete tail at {} offset {} ({}): being written, or torn by a crash \
                     (cut at the next start)",
                    torn.path.display(),
                    torn.offset,
                    torn.reason
                ));
            }
            false
        }
        Err(problem) => {
            let what = if problem.unreadable { "" } else { "CORRUPT: " };
            say.line(format!("shard {shard}: {what}{problem}"));
            for more in &report.problems {
                say.line(format!("shard {shard}: problem: {more}"));
            }
            for lost in &report.lost {
                say.line(format!("shard {shard}: LOST ids {lost}"));
            }
            true
        }
    }
}

/// The saved head's verdict, if one was saved for the shard: true if it no longer holds.
fn say_against(report: &ShardReport, say: Say) -> bool {
    let Some((saved, verdict)) = &report.against else {
        return false;
    };
    let (shard, seq) = (report.shard, saved.seq);
    say.line(match verdict {
        Against::Holds => format!("shard {shard}: saved head seq {seq} holds"),
        Against::Rewritten(now) => {
            let now = Head {
                hash: *now,
                ..*saved
            }
            .line();
            format!(
                "shard {shard}: TAMPERED: record {seq} no longer has the saved hash \
                 (it, or history before it, was rewritten); the log has {}",
                now.trim_end()
            )
        }
        Against::NotReached => format!(
            "shard {shard}: saved head seq {seq} not checked: the log is damaged \
             or unreadable before it (see above)"
        ),
        Against::Missing => format!(
            "shard {shard}: TAMPERED: record {seq} of the saved head is gone \
             (history truncated or cut)"
        ),
    });
    matches!(verdict, Against::Rewritten(_) | Against::Missing)
}

/// The chain shows that records follow one another, not that the newest ones are the
/// ones written: said on every run, so a clean result is not read as more.
fn say_not_covered(reports: &[ShardReport], against: bool, say: Say) {
    if !against {
        say.line(
            "not covered: without --against, a tail rewritten and re-chained, a cut tail and a \
             rewritten MANIFEST all verify; check against heads kept off this machine \
             (`verify --against FILE`; docs/tamper-evidence.md)"
                .to_string(),
        );
        return;
    }
    for report in reports.iter().filter(|r| r.result.is_ok()) {
        let shard = report.shard;
        say.line(match &report.against {
            Some((saved, _)) => format!(
                "shard {shard}: not covered: records after seq {} and the MANIFEST \
                 (only a later saved head covers them)",
                saved.seq
            ),
            None => format!(
                "shard {shard}: not covered: no saved head; its records and MANIFEST \
                 are checked only against themselves"
            ),
        });
    }
}
