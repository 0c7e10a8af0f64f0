//! Time along a shard's chain: the `receivedAt` its writer stamps never goes backwards,
//! and the idempotency window is measured on a clock the wall clock cannot step.
//!
//! The shard's own clock starts, when the log is opened, at the earlier of the wall
//! clock and the last `receivedAt` stored, and from there advances with the monotonic
//! clock only. So the time the server was down, and any step of the wall clock (at a
//! restart or while running, forwards or back), does not count towards a key's age: a
//! key is forgotten only once its shard has run for the window since storing it
//! (measured along the stored chain for keys recovered at start). A record's
//! `receivedAt` is the latest of the wall clock, the shard's own clock and the previous
//! record's `receivedAt`: while the wall clock is behind, it continues from the shard's
//! own clock (or stays at the previous value), and the first record that finds the
//! wall clock behind logs the step once.

use std::time::Instant;

/// One shard's writer clock; see the module doc.
#[derive(Clone, Copy, Debug)]
pub struct ShardTime {
    /// The shard's own clock at `base`.
    base_ns: u64,
    base: Instant,
    /// The last `receivedAt` stamped or stored.
    last_ns: u64,
    /// The current step backwards has been logged.
    said: bool,
}

impl ShardTime {
    /// The clock of a log whose last stored record was received at `last_ns` (0 for
    /// none), opened when the wall clock reads `wall_ns`.
    pub fn new(last_ns: u64, wall_ns: u64) -> ShardTime {
        let base_ns = if last_ns == 0 {
            wall_ns
        } else {
            wall_ns.min(last_ns)
        };
        ShardTime {
            base_ns,
            base: Instant::now(),
            last_ns,
            said: false,
        }
    }

    /// The shard's own clock now: what the idempotency window is measured on.
    pub fn own_ns(&self) -> u64 {
        let elapsed = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.base_ns.saturating_add(elapsed)
    }

    /// The `receivedAt` of a record taken in when the wall clock read `wall_ns`; with
    /// it, by how much the wall clock is behind the previous record, the first time a
    /// step backwards is seen (to be logged once).
    pub fn stamp(&mut self, wall_ns: u64) -> (u64, Option<u64>) {
        let behind = self.last_ns.saturating_sub(wall_ns);
        let step = (behind > 0 && !self.said).then_some(behind);
        self.said = behind > 0;
        self.last_ns = self.last_ns.max(wall_ns).max(self.own_ns());
        (self.last_ns, step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_behind_the_chain_neither_moves_received_at_back_nor_says_it_twice() {
        let mut time = ShardTime::new(10_000_000_000_000, 10_000_000_000_000);
        let (first, step) = time.stamp(10_000_000_000_500);
        assert!(first >= 10_000_000_000_500 && step.is_none());
        // The wall clock steps back an hour: stamps go on from the chain, said once.
        let back = 10_000_000_000_500 - 3_600_000_000_000;
        let (second, step) = time.stamp(back);
        assert!(second >= first);
        assert_eq!(step, Some(first - back));
        let (third, step) = time.stamp(back + 1);
        assert!(third >= second && step.is_none());
    }

    #[test]
    fn the_own_clock_starts_at_the_earlier_of_the_wall_and_the_chain() {
        // The chain ended two hours before the wall clock says (downtime, or a clock
        // behind then): the own clock does not count them.
        let chain = 1_000_000_000_000_000;
        let time = ShardTime::new(chain, chain + 7_200_000_000_000);
        assert!(time.own_ns() >= chain && time.own_ns() < chain + 1_000_000_000);
        // A chain ahead of the wall (a clock ahead then): the wall.
        let time = ShardTime::new(chain, chain - 7_200_000_000_000);
        assert!(time.own_ns() < chain);
    }
}
