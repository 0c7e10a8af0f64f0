//! `epro-ingest verify`'s report: a line per shard (what it holds, its torn tail, its
//! damage and the ids that damage took, a `receivedAt` that goes backwards, a saved
//! head's verdict), then what a clean result does not cover.

use std::path::Path;

use super::progress::{advance, progress_bar};
use crate::log::{export, heads};

/// Checks every record of `data_dir` (against the saved heads in `against`, if any)
/// and prints the report; with `heads`, stdout is the heads file and the report goes to
/// stderr. An error when anything is damaged or tampered with.
pub fn verify(data_dir: &Path, heads: bool, against: Option<&Path>) -> Result<(), String> {
    let saved = match against {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("reading {}: {e}", file.display()))?;
            heads::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?
        }
        None => Vec::new(),
    };
    let bar = progress_bar(data_dir, "verify");
    let reports = export::verify(data_dir, &saved, &mut advance(&bar));
    bar.finish_and_clear();
    let reports = reports?;
    // With --heads, stdout is the heads file; the report goes to stderr.
    let say = |line: String| {
        if heads {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let mut corrupt = 0;
    let mut broken = 0;
    let mut backwards = 0;
    for report in &reports {
        let shard = report.shard;
        if let Some(b) = &report.backwards {
            backwards += 1;
            let at =
                |ns| String::from_utf8_lossy(&crate::base::clock::format_rfc3339(ns)).into_owned();
            say(format!(
                "shard {shard}: TIME GOES BACKWARDS: record {} (offset {}) was received at {}, \
                 {:.3} s before record {} ({}): the writer never stamps that, so it was \
                 forged or edited (or written by a version that let a clock step through)",
                b.seq,
                b.offset,
                at(b.received_ns),
                (b.previous_ns - b.received_ns) as f64 / 1e9,
                b.previous_seq,
                at(b.previous_ns),
            ));
        }
        match &report.result {
            Ok(scan) => {
                say(format!(
                    "shard {shard}: {} segments, {} records, {} bytes, next sequence number {}",
                    scan.segments, scan.records, scan.record_bytes, scan.next_seq
                ));
                if let Some(torn) = &scan.torn {
                    say(format!(
                        "shard {shard}: incomplete tail at {} offset {} ({}): being written, or torn by a crash \
                         (cut at the next start)",
                        torn.path.display(),
                        torn.offset,
                        torn.reason
                    ));
                }
            }
            Err(problem) => {
                corrupt += 1;
                let what = if problem.unreadable { "" } else { "CORRUPT: " };
                say(format!("shard {shard}: {what}{problem}"));
                for more in &report.problems {
                    say(format!("shard {shard}: problem: {more}"));
                }
                for lost in &report.lost {
                    say(format!("shard {shard}: LOST ids {lost}"));
                }
            }
        }
        if let Some((saved, verdict)) = &report.against {
            let seq = saved.seq;
            match verdict {
                heads::Against::Holds => {
                    say(format!("shard {shard}: saved head seq {seq} holds"));
                }
                heads::Against::Rewritten(now) => {
                    broken += 1;
                    let now = heads::Head {
                        hash: *now,
                        ..*saved
                    }
                    .line();
                    say(format!(
                        "shard {shard}: TAMPERED: record {seq} no longer has the saved hash \
                         (it, or history before it, was rewritten); the log has {}",
                        now.trim_end()
                    ));
                }
                heads::Against::NotReached => {
                    say(format!(
                        "shard {shard}: saved head seq {seq} not checked: the log is damaged \
                         or unreadable before it (see above)"
                    ));
                }
                heads::Against::Missing => {
                    broken += 1;
                    say(format!(
                        "shard {shard}: TAMPERED: record {seq} of the saved head is gone \
                         (history truncated or cut)"
                    ));
                }
            }
        }
    }
    if heads {
        for head in reports.iter().filter_map(|r| r.head()) {
            print!("{}", head.line());
        }
    }
    if corrupt > 0 {
        return Err(format!(
            "{corrupt} of {} shards damaged or unreadable; `export --salvage` recovers every \
             record that still verifies",
            reports.len()
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
    // The chain shows that records follow one another, not that the newest ones are
    // the ones written: said on every run, so a clean result is not read as more.
    match against {
        None => say(
            "not covered: without --against, a tail rewritten and re-chained, a cut tail and a \
             rewritten MANIFEST all verify; check against heads kept off this machine \
             (`verify --against FILE`; README, \"Tamper evidence\")"
                .to_string(),
        ),
        Some(_) => {
            for report in reports.iter().filter(|r| r.result.is_ok()) {
                let shard = report.shard;
                say(match &report.against {
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
    }
    say(format!("ok: {} shards verified", reports.len()));
    Ok(())
}
