//! The `Date` header value, formatted once per second per shard instead of per response.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

/// IMF-fixdate is always 29 bytes: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const LEN: usize = 29;
/// How often the value is refreshed: half its one-second resolution, so it is never
/// more than 0.5 s stale.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// One shard's cached `Date` value; refreshed by [`DateCache::run`].
pub struct DateCache {
    value: Cell<[u8; LEN]>,
}

impl DateCache {
    pub fn new() -> Self {
        let cache = DateCache {
            value: Cell::new([b' '; LEN]),
        };
        cache.refresh();
        cache
    }

    pub fn get(&self) -> [u8; LEN] {
        self.value.get()
    }

    fn refresh(&self) {
        let text = httpdate::fmt_http_date(SystemTime::now());
        let mut bytes = [b' '; LEN];
        let n = text.len().min(LEN);
        bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
        self.value.set(bytes);
    }

    /// Refreshes the value every `REFRESH_EVERY` until the shard's executor ends.
    pub async fn run(self: std::rc::Rc<Self>) {
        loop {
            glommio::timer::sleep(REFRESH_EVERY).await;
            self.refresh();
        }
    }
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}
