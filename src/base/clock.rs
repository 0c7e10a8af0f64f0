//! Server time: UTC nanoseconds since the Unix epoch, and RFC 3339 text both ways,
//! without allocation (civil-date arithmetic after Howard Hinnant's algorithms).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in nanoseconds since the epoch (UTC).
pub fn now_ns() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    #[cfg(feature = "test-seams")]
    let now = now.saturating_add_signed(seam::OFFSET_NS.load(std::sync::atomic::Ordering::Relaxed));
    now
}

/// A wall clock set wrong on purpose, for the tests of clock steps (`test-seams` builds
/// only).
#[cfg(feature = "test-seams")]
pub mod seam {
    use std::sync::atomic::{AtomicI64, Ordering};

    pub(super) static OFFSET_NS: AtomicI64 = AtomicI64::new(0);

    /// From now on [`super::now_ns`] reads `seconds` off the real time.
    pub fn set_offset(seconds: i64) {
        OFFSET_NS.store(seconds.saturating_mul(1_000_000_000), Ordering::Relaxed);
    }

    /// How often [`follow`] re-reads its file.
    const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

    /// Sets the offset to the seconds written in `path` now and, on a thread of its
    /// own, every `FOLLOW_EVERY` from then on: rewriting the file steps the clock
    /// while the server runs. A file missing or not a number leaves the offset as it is.
    pub fn follow(path: std::path::PathBuf) -> std::io::Result<()> {
        let read = move || {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Ok(seconds) = text.trim().parse() {
                set_offset(seconds);
            }
        };
        read();
        std::thread::Builder::new()
            .name("clock seam".into())
            .spawn(move || loop {
                std::thread::sleep(FOLLOW_EVERY);
                read();
            })
            .map(drop)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` is always 30 bytes.
pub const RFC3339_LEN: usize = 30;

/// Formats `ns` as RFC 3339 UTC with nanoseconds.
pub fn format_rfc3339(ns: u64) -> [u8; RFC3339_LEN] {
    let secs = ns / 1_000_000_000;
    let nanos = ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    put(&mut out[0..4], y as u64);
    put(&mut out[5..7], m as u64);
    put(&mut out[8..10], d as u64);
    put(&mut out[11..13], rem / 3600);
    put(&mut out[14..16], rem % 3600 / 60);
    put(&mut out[17..19], rem % 60);
    put(&mut out[20..29], nanos);
    out
}

/// "00" to "99", so that digits are written two per division.
const PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0; 2]; 100];
    let mut i = 0;
    while i < 100 {
        pairs[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    pairs
};

/// Writes the last `dst.len()` decimal digits of `v`, zero-padded.
fn put(dst: &mut [u8], mut v: u64) {
    let mut end = dst.len();
    while end >= 2 {
        dst[end - 2..end].copy_from_slice(&PAIRS[(v % 100) as usize]);
        v /= 100;
        end -= 2;
    }
    if end == 1 {
        dst[0] = b'0' + (v % 10) as u8;
    }
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days in month `m` (1 to 12) of year `y`, leap years counted.
pub fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Whether `s` is an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with
/// real calendar dates (leap seconds allowed as `:60`).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
    };
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    if !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let frac = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if frac == 0 {
            return false;
        }
        i += 1 + frac;
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', ..] if b.len() == i + 6 => {
            matches!((digits(i + 1..i + 3), b[i + 3], digits(i + 4..i + 6)), (Some(oh), b':', Some(om)) if oh <= 23 && om <= 59)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(&format_rfc3339(0), b"1970-01-01T00:00:00.000000000Z");
        // 2026-11-26T08:15:30.5Z
        assert_eq!(
            &format_rfc3339(1_795_680_930_500_000_000),
            b"2026-11-26T08:15:30.500000000Z"
        );
        // A leap day.
        assert_eq!(
            &format_rfc3339(951_782_400_000_000_001),
            b"2000-02-29T00:00:00.000000001Z"
        );
    }

    #[test]
    fn recognises_rfc3339() {
        for ok in [
            "2026-11-26T08:15:30Z",
            "2026-11-26T08:15:30.123+01:00",
            "2024-02-29T23:59:60z",
            "2026-01-01 00:00:00-05:30",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "2026-11-26",
            "2026-11-26T08:15:30",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T08:15:30.Z",
            "2026-11-26T08:15:30+0100",
            "2026-11-26T08:15:30Zjunk",
            "yesterday",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
