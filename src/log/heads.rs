//! Chain heads: each shard's last record and its hash, the value an operator saves
//! outside the machine (`verify --heads`) and later checks the log against
//! (`verify --against FILE`). A saved head still holds when the log still has that
//! record with that hash: then, through the chain, every record before it is the one
//! that was there when the head was saved. One line per shard:
//!
//! ```text
//! shard=0 seq=1234 sha256=<64 lowercase hex digits>
//! ```
//!
//! A shard with no record yet has `seq=0` and 64 zeros.

use crate::log::id::hex;
use crate::log::record::{Hash, GENESIS, HASH_LEN};

/// A shard's chain head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub shard: u16,
    /// The last record's sequence number; 0 for none.
    pub seq: u64,
    pub hash: Hash,
}

impl Head {
    /// The head of a shard with no record.
    pub fn empty(shard: u16) -> Head {
        Head {
            shard,
            seq: 0,
            hash: GENESIS,
        }
    }

    /// The head as one line, newline included.
    pub fn line(&self) -> String {
        let mut hash = Vec::with_capacity(2 * HASH_LEN);
        hex(&self.hash, &mut hash);
        format!(
            "shard={} seq={} sha256={}\n",
            self.shard,
            self.seq,
            String::from_utf8_lossy(&hash)
        )
    }
}

/// Parses a heads file; blank lines and `#` comments are skipped. A shard named twice
/// is an error.
pub fn parse(text: &str) -> Result<Vec<Head>, String> {
    let mut heads: Vec<Head> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let head = parse_line(line).map_err(|e| format!("line {}: {e}: {line:?}", n + 1))?;
        if heads.iter().any(|h| h.shard == head.shard) {
            return Err(format!("line {}: shard {} named twice", n + 1, head.shard));
        }
        heads.push(head);
    }
    if heads.is_empty() {
        return Err("no head in the file".into());
    }
    Ok(heads)
}

fn parse_line(line: &str) -> Result<Head, &'static str> {
    let mut fields = line.split_ascii_whitespace();
    let mut field = |name: &str| {
        fields
            .next()
            .and_then(|f| f.strip_prefix(name))
            .and_then(|f| f.strip_prefix('='))
    };
    let shard = field("shard").and_then(|v| v.parse().ok());
    let seq = field("seq").and_then(|v| v.parse().ok());
    let hash = field("sha256").and_then(parse_hex);
    match (shard, seq, hash, fields.next()) {
        (Some(shard), Some(seq), Some(hash), None) => Ok(Head { shard, seq, hash }),
        _ => Err("expected shard=<n> seq=<n> sha256=<64 hex digits>"),
    }
}

fn parse_hex(text: &str) -> Option<Hash> {
    let digits = text.as_bytes();
    if digits.len() != 2 * HASH_LEN {
        return None;
    }
    let mut hash = GENESIS;
    for (i, pair) in digits.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        hash[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(hash)
}

/// What became of a saved head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Against {
    /// The record is there with the saved hash.
    Holds,
    /// The record is there with another hash: it, or one before it, was rewritten.
    Rewritten(Hash),
    /// The log no longer reaches the record: history was truncated.
    Missing,
    /// The shard's log is damaged (or unreadable) before the record: not judged.
    NotReached,
}

impl Against {
    /// `found`: the hash of the saved head's record in the log now, if the scan met it;
    /// `whole`: whether the scan read the whole log (no damage stopped it).
    pub fn judge(saved: &Head, found: Option<Hash>, whole: bool) -> Against {
        match found {
            _ if saved.seq == 0 => Against::Holds,
            Some(hash) if hash == saved.hash => Against::Holds,
            Some(hash) => Against::Rewritten(hash),
            None if whole => Against::Missing,
            None => Against::NotReached,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_line_reads_back_as_itself() {
        let head = Head {
            shard: 3,
            seq: 1234,
            hash: crate::log::record::hash(b"x"),
        };
        let text = format!(
            "# saved 2026-11-27\n\n{}{}",
            head.line(),
            Head::empty(4).line()
        );
        assert_eq!(parse(&text), Ok(vec![head, Head::empty(4)]));
    }

    #[test]
    fn malformed_heads_files_are_refused_with_their_line() {
        let ok = Head::empty(0).line();
        let short = ok.replace("sha256=00", "sha256=");
        for (text, says) in [
            ("", "no head"),
            ("shard=0 seq=1\n", "line 1"),
            (short.as_str(), "line 1"),
            ("shard=x seq=1 sha256=00\n", "line 1"),
            (&*format!("{ok}{ok}"), "named twice"),
            (&*format!("{} extra\n", ok.trim()), "line 1"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
