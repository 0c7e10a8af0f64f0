//! What a recovered shard does every so often, each a timer's loop run inside one of
//! its gates: keys past the idempotency window are forgotten, the live segment is
//! looked at, rate limits are shared with the other shards.

use std::rc::Rc;
use std::time::Duration;

use crate::config::Config;
use crate::domain::{keys, ratelimit};
use crate::shard::context::Context;

/// How often keys past the idempotency window are forgotten.
const KEY_EXPIRY_EVERY: Duration = Duration::from_secs(600);

/// [`KEY_EXPIRY_EVERY`], or the period a test sets (`test-seams` builds).
fn key_expiry_every(config: &Config) -> Duration {
    #[cfg(feature = "test-seams")]
    if let Some(ms) = config.test_seams.key_expiry_every_ms {
        return Duration::from_millis(ms);
    }
    let _ = config;
    KEY_EXPIRY_EVERY
}

/// The idempotency window, in nanoseconds.
pub fn window_ns(config: &Config) -> u64 {
    config.idempotency_window_hours * 3600 * 1_000_000_000
}

/// Every [`ratelimit::PERIOD`] while some principal has a limit (a reload may add or
/// remove them): tells the other shards what each principal tried here, and
/// rebalances this shard's share of every limit.
pub async fn share_rate_limits(ctx: Rc<Context>) {
    loop {
        glommio::timer::sleep(ratelimit::PERIOD).await;
        if !ctx.limiter().is_active() {
            continue;
        }
        let demand = ctx.limiter().tick();
        if let Some(peers) = ctx.peers() {
            peers.send_demand(&demand).await;
        }
    }
}

/// How often an idle shard looks at its live segment.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Has the log look at its live segment every `WATCH_EVERY` ([`Log::look`](crate::log::Log::look)); a busy
/// one looks before each write group anyway.
pub async fn watch_log(ctx: Rc<Context>) {
    loop {
        glommio::timer::sleep(WATCH_EVERY).await;
        if let Some(log) = ctx.log() {
            log.look();
        }
    }
}

/// Forgets keys past the idempotency window, every `KEY_EXPIRY_EVERY`: measured on
/// the shard's own clock, which no step of the wall clock moves ([`crate::log::time`]).
/// One part of the key table at a time, yielding to the shard's requests between
/// parts once the executor's time slice is spent, so a large table's scan does not
/// hold the shard for its whole length.
pub async fn expire_keys(ctx: Rc<Context>) {
    let every = key_expiry_every(ctx.config());
    loop {
        glommio::timer::sleep(every).await;
        if let Some(log) = ctx.log() {
            let oldest = log.own_ns().saturating_sub(window_ns(ctx.config()));
            for part in 0..keys::PARTS {
                ctx.keys().expire_part(part, oldest);
                glommio::yield_if_needed().await;
            }
        }
    }
}
