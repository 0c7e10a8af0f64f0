//! The rules every value of a [`Config`] must meet, group by group, in the order a
//! config file's first problem is reported.

use super::{Config, ConfigError, LimitsConfig, MAX_SEGMENT_BYTES};
use crate::domain::auth::Principal;
use crate::domain::validate::MAX_ID;
use crate::http::parse::MAX_HEADERS_CAP;

/// The problem with `key`, as `check-config` and `serve` print it.
fn bad(key: &str, rule: &str) -> Result<(), ConfigError> {
    Err(ConfigError(format!("{key}: {rule}")))
}

impl Config {
    /// The first value that breaks a rule, named by its key.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        self.check_process()?;
        l.check_requests()?;
        l.check_timeouts()?;
        l.check_memory()?;
        self.check_rates()?;
        l.check_backlog()?;
        check_principals(&self.principals, self.from_file)
    }

    /// Shards, CPUs and what the log and the idempotency keys keep.
    fn check_process(&self) -> Result<(), ConfigError> {
        if self.shards == Some(0) {
            return bad("shards", "must be at least 1");
        }
        if matches!(&self.cpus, Some(cpus) if cpus.is_empty()) {
            return bad("cpus", "must list at least one CPU");
        }
        if !(64 << 10..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return bad(
                "segment_bytes",
                "must be between 65536 and 1073741824 (1 GiB)",
            );
        }
        if !(1..=24 * 366).contains(&self.idempotency_window_hours) {
            return bad(
                "idempotency_window_hours",
                "must be between 1 and 8784 (a year)",
            );
        }
        Ok(())
    }

    /// Each principal's rate limit and burst, then the defaults for the others.
    fn check_rates(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let rates = self
            .principals
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("principals[{i}]."), p.rate_per_second, p.burst))
            .chain([(
                "limits.default_".to_string(),
                l.default_rate_per_second,
                l.default_burst,
            )]);
        for (prefix, rate, burst) in rates {
            if rate.is_some_and(|r| !(r.is_finite() && r > 0.0 && r <= 1e9)) {
                return bad(
                    &format!("{prefix}rate_per_second"),
                    "must be a number above 0 (requests a second)",
                );
            }
            if burst == Some(0) {
                return bad(&format!("{prefix}burst"), "must be at least 1");
            }
        }
        Ok(())
    }
}

impl LimitsConfig {
    /// The sizes of one request and the connections a shard holds.
    fn check_requests(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 || self.max_body_bytes > 1 << 30 {
            return bad("limits.max_body_bytes", "must be between 1 and 1073741824");
        }
        if !(256..=1 << 20).contains(&self.max_head_bytes) {
            return bad("limits.max_head_bytes", "must be between 256 and 1048576");
        }
        if !(1..=MAX_HEADERS_CAP).contains(&self.max_headers) {
            return bad("limits.max_headers", "must be between 1 and 128");
        }
        if self.max_connections == 0 {
            return bad("limits.max_connections", "must be at least 1");
        }
        Ok(())
    }

    /// Every deadline is at least a millisecond: 0 would close every connection.
    fn check_timeouts(&self) -> Result<(), ConfigError> {
        let timeouts = [
            ("limits.header_timeout_ms", self.header_timeout_ms),
            ("limits.idle_timeout_ms", self.idle_timeout_ms),
            ("limits.request_timeout_ms", self.request_timeout_ms),
            ("limits.body_timeout_ms", self.body_timeout_ms),
        ];
        match timeouts.iter().find(|(_, ms)| *ms == 0) {
            Some((key, _)) => bad(key, "must be at least 1"),
            None => Ok(()),
        }
    }

    /// The memory budget holds one largest request; shedding starts below the log's cap.
    fn check_memory(&self) -> Result<(), ConfigError> {
        if self
            .memory_budget_bytes
            .is_some_and(|b| b < self.largest_request())
        {
            return bad(
                "limits.memory_budget_bytes",
                &format!(
                    "must hold one largest request: at least {} (max_head_bytes + 4 x \
                     max_body_bytes + 64 KiB)",
                    self.largest_request()
                ),
            );
        }
        if !(1..=64 << 20).contains(&self.shed_pending_bytes) {
            return bad(
                "limits.shed_pending_bytes",
                "must be between 1 and 67108864 (the log's cap on bytes waiting for the disk)",
            );
        }
        Ok(())
    }

    /// What may wait: responses in the kernel's send queue, records not yet durable.
    fn check_backlog(&self) -> Result<(), ConfigError> {
        if self.send_buffer_bytes != 0 && !(4096..=16 << 20).contains(&self.send_buffer_bytes) {
            return bad(
                "limits.send_buffer_bytes",
                "must be 0 (the kernel's autotuning) or between 4096 and 16777216",
            );
        }
        if self.shed_inflight == 0 {
            return bad("limits.shed_inflight", "must be at least 1");
        }
        Ok(())
    }
}

/// A config file names at least one principal; each has its own id and token.
fn check_principals(principals: &[Principal], from_file: bool) -> Result<(), ConfigError> {
    if from_file && principals.is_empty() {
        return bad(
            "principals",
            "the config file lists none, so every request would get 401: add a [[principals]] \
             entry (without a config file, an admin token is generated instead)",
        );
    }
    for (i, p) in principals.iter().enumerate() {
        check_principal(p, i, &principals[..i])?;
    }
    Ok(())
}

/// Principal `i` against the rules and against the principals before it.
fn check_principal(p: &Principal, i: usize, before: &[Principal]) -> Result<(), ConfigError> {
    if p.id.is_empty() || p.id.len() > MAX_ID {
        return bad(&format!("principals[{i}].id"), "must be 1 to 128 bytes");
    }
    // Ids go into log lines, JSON and the record's principal field, where a 0x00
    // separates a keyed record's idempotency key.
    if p.id.chars().any(char::is_control) {
        return bad(
            &format!("principals[{i}].id"),
            "must not contain control characters",
        );
    }
    if before.iter().any(|q| q.id == p.id) {
        return bad(
            &format!("principals[{i}].id"),
            "is already used by another principal",
        );
    }
    if p.token.len() < 16 {
        return bad(
            &format!("principals[{i}].token"),
            "must be at least 16 characters",
        );
    }
    if before.iter().any(|q| q.token == p.token) {
        return bad(
            &format!("principals[{i}].token"),
            "is already used by another principal",
        );
    }
    Ok(())
}
