//! Per-principal rate limits, kept by every shard without a lock.
//!
//! A principal with a limit (`rate_per_second` R, `burst` B) has a token bucket on
//! each shard, refilled at `R x share` and holding at most `B x share` (at least one
//! token). The shares of one principal add up to 1 across the shards, so the process
//! as a whole admits R a second plus the burst, however the principal's connections
//! are spread. Every [`PERIOD`] each shard tells the others how many requests each
//! principal tried on it ([`Limiter::tick`]), and each shard sets its own share from
//! everyone's last counts: `(mine + 1) / (total + shards)`, so a shard that sees all of
//! a principal's traffic soon holds nearly all of its rate, and an idle one keeps a
//! sliver. Deciding a request reads only the local bucket: no message, no wait.

use std::time::{Duration, Instant};

/// How often shards exchange their demand and rebalance shares.
pub const PERIOD: Duration = Duration::from_millis(100);

/// A principal's configured limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Debug)]
struct Bucket {
    rate: Rate,
    share: f64,
    tokens: f64,
    last: Instant,
    /// Requests tried in the current period.
    demand: u32,
}

/// One shard's buckets, by principal index (`None`: unlimited).
#[derive(Debug)]
pub struct Limiter {
    shards: usize,
    buckets: Vec<Option<Bucket>>,
    /// Each shard's requests per principal in its last whole period (this shard's too).
    demand: Vec<Vec<u32>>,
    me: usize,
}

impl Limiter {
    /// Buckets for `rates` (by principal index), for shard `me` of `shards`.
    pub fn new(rates: &[Option<Rate>], me: usize, shards: usize, now: Instant) -> Limiter {
        let share = 1.0 / shards as f64;
        let buckets = rates
            .iter()
            .map(|rate| {
                rate.map(|rate| Bucket {
                    rate,
                    share,
                    tokens: (rate.burst * share).max(1.0),
                    last: now,
                    demand: 0,
                })
            })
            .collect();
        Limiter {
            shards,
            buckets,
            demand: vec![vec![0; rates.len()]; shards],
            me,
        }
    }

    /// Whether any principal has a limit (else there is nothing to exchange).
    pub fn is_active(&self) -> bool {
        self.buckets.iter().any(Option::is_some)
    }

    /// Takes a token for principal `i`: `Err(seconds)` to wait when there is none.
    pub fn take(&mut self, i: usize, now: Instant) -> Result<(), u32> {
        let Some(Some(b)) = self.buckets.get_mut(i) else {
            return Ok(());
        };
        b.demand = b.demand.saturating_add(1);
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.last = now;
        let capacity = (b.rate.burst * b.share).max(1.0);
        b.tokens = (b.tokens + elapsed * b.rate.per_second * b.share).min(capacity);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        // A token of the principal's own rate: where the retry lands, a share waits.
        Err((1.0 / b.rate.per_second).ceil().clamp(1.0, 3600.0) as u32)
    }

    /// Ends a period: returns this shard's demand per principal (for the other
    /// shards) and rebalances from everyone's last counts.
    pub fn tick(&mut self) -> Vec<u32> {
        let mine: Vec<u32> = self
            .buckets
            .iter_mut()
            .map(|b| b.as_mut().map_or(0, |b| std::mem::take(&mut b.demand)))
            .collect();
        self.demand[self.me].clone_from(&mine);
        self.rebalance();
        mine
    }

    /// Another shard's demand for its last period.
    pub fn peer_demand(&mut self, shard: usize, demand: Vec<u32>) {
        if shard < self.shards && demand.len() == self.buckets.len() {
            self.demand[shard] = demand;
        }
    }

    fn rebalance(&mut self) {
        for (i, bucket) in self.buckets.iter_mut().enumerate() {
            let Some(b) = bucket else { continue };
            let total: u64 = self.demand.iter().map(|d| u64::from(d[i])).sum();
            if total == 0 {
                continue; // nothing tried anywhere: keep the shares as they are
            }
            let mine = f64::from(self.demand[self.me][i]);
            b.share = (mine + 1.0) / (total as f64 + self.shards as f64);
            b.tokens = b.tokens.min((b.rate.burst * b.share).max(1.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: f64) -> Option<Rate> {
        Some(Rate { per_second, burst })
    }

    #[test]
    fn one_shard_admits_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut l = Limiter::new(&[rate(10.0, 5.0), None], 0, 1, t0);
        let admitted = (0..100).filter(|_| l.take(0, t0).is_ok()).count();
        assert_eq!(admitted, 5);
        assert_eq!(l.take(0, t0), Err(1));
        // One second later, ten more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| l.take(0, t1).is_ok()).count(), 5);
        let t2 = t1 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| l.take(0, t2).is_ok()).count(), 5);
        // Unlimited principals are never refused.
        assert!((0..1000).all(|_| l.take(1, t2).is_ok()));
    }

    #[test]
    fn shares_follow_demand_and_add_up_to_one() {
        let t0 = Instant::now();
        let rates = [rate(100.0, 10.0)];
        let mut a = Limiter::new(&rates, 0, 2, t0);
        let mut b = Limiter::new(&rates, 1, 2, t0);
        for _ in 0..50 {
            let _ = a.take(0, t0);
        }
        let (da, db) = (a.tick(), b.tick());
        a.peer_demand(1, db);
        b.peer_demand(0, da);
        // Recomputed from both counts at the next tick.
        a.tick();
        b.tick();
        let (sa, sb) = (
            a.buckets[0].as_ref().unwrap().share,
            b.buckets[0].as_ref().unwrap().share,
        );
        assert!((sa + sb - 1.0).abs() < 1e-9, "{sa} + {sb}");
        assert!(sa > 0.95, "{sa}");
    }
}
