//! Refusals in the access log, bounded: per shard and status, the first
//! [`LINES_PER_SECOND`] refusals of a second get a line each, and the rest of that
//! second are folded into one line written once the second is over
//! (`... and 12345 more 401 in 2026-11-27T08:15:30Z`). A flood of bad tokens, rate-limited
//! clients or garbage framing then costs a few hundred lines a second, not megabytes.

/// Lines per shard, status and second before refusals are folded.
pub const LINES_PER_SECOND: u32 = 100;
/// Distinct refusal statuses tracked; there are fewer than this.
const CODES: usize = 16;

/// Whether a status is a refusal whose lines may be folded: any 4xx, and 503 (shed,
/// not ready, timed out). Other 5xx are rare and always worth a line.
pub fn is_refusal(code: [u8; 3]) -> bool {
    code[0] == b'4' || code == *b"503"
}

#[derive(Clone, Copy)]
struct Tally {
    code: [u8; 3],
    second: u64,
    lines: u32,
    folded: u64,
}

/// One shard's counts for the current second, per refusal status.
pub struct Folds {
    tallies: [Tally; CODES],
    used: usize,
}

/// Refusals of one status folded into one line: `count` of them in `second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Folded {
    pub code: [u8; 3],
    pub second: u64,
    pub count: u64,
}

impl Folds {
    pub const fn new() -> Folds {
        const EMPTY: Tally = Tally {
            code: [0; 3],
            second: 0,
            lines: 0,
            folded: 0,
        };
        Folds {
            tallies: [EMPTY; CODES],
            used: 0,
        }
    }

    /// Whether a refusal with `code` in `second` gets a line of its own; `Some` in
    /// the second place: an earlier second's folded refusals of this status, whose
    /// line is due now.
    pub fn take(&mut self, code: [u8; 3], second: u64) -> (bool, Option<Folded>) {
        let at = match self.tallies[..self.used]
            .iter()
            .position(|t| t.code == code)
        {
            Some(at) => at,
            None if self.used < CODES => {
                self.used += 1;
                self.tallies[self.used - 1] = Tally {
                    code,
                    second,
                    lines: 0,
                    folded: 0,
                };
                self.used - 1
            }
            None => return (true, None),
        };
        let tally = &mut self.tallies[at];
        let mut due = None;
        if tally.second != second {
            due = close(tally);
            *tally = Tally {
                code,
                second,
                lines: 0,
                folded: 0,
            };
        }
        if tally.lines < LINES_PER_SECOND {
            tally.lines += 1;
            return (true, due);
        }
        tally.folded += 1;
        (false, due)
    }

    /// Hands every status's folded refusals of seconds before `second` to `f`.
    pub fn due(&mut self, second: u64, mut f: impl FnMut(Folded)) {
        for tally in &mut self.tallies[..self.used] {
            if tally.second < second {
                if let Some(folded) = close(tally) {
                    f(folded);
                }
            }
        }
    }
}

/// The tally's folded refusals, if any, and none left behind.
fn close(tally: &mut Tally) -> Option<Folded> {
    let count = std::mem::take(&mut tally.folded);
    (count > 0).then_some(Folded {
        code: tally.code,
        second: tally.second,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_gets_its_lines_then_folds_and_the_fold_is_due_once() {
        let mut folds = Folds::new();
        let lines = (0..250).filter(|_| folds.take(*b"401", 7).0).count();
        assert_eq!(lines, LINES_PER_SECOND as usize);
        // Another status has a budget of its own.
        assert_eq!(folds.take(*b"429", 7), (true, None));
        let mut due = Vec::new();
        folds.due(7, |f| due.push(f));
        assert!(due.is_empty(), "the second is not over");
        let expected = Folded {
            code: *b"401",
            second: 7,
            count: 250 - u64::from(LINES_PER_SECOND),
        };
        assert_eq!(folds.take(*b"401", 8), (true, Some(expected)));
        folds.due(9, |f| due.push(f));
        assert!(due.is_empty(), "{due:?}: already written");
    }

    #[test]
    fn the_timer_writes_a_fold_when_no_refusal_follows() {
        let mut folds = Folds::new();
        for _ in 0..=LINES_PER_SECOND {
            folds.take(*b"503", 3);
        }
        let mut due = Vec::new();
        folds.due(4, |f| due.push(f));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 1);
        assert!(is_refusal(*b"413") && is_refusal(*b"503") && !is_refusal(*b"500"));
    }
}
