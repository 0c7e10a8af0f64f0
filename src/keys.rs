//! Idempotency keys: which shard owns a key, and the owner's table of the keys it has
//! stored. A submit or tag with a key (its body's `submissionId`, or an
//! `Idempotency-Key` header) is stored by the key's owner shard only, so one shard
//! decides, with no lock, whether a key is new, a retry of the same bytes or a reuse
//! with different bytes. The table is rebuilt from the logs at start-up: a record on
//! disk with a key is the key's truth.
//!
//! Memory: a key costs its map entry (48 bytes, in a table kept at most 7/8 full) and
//! a heap copy of principal and key: measured at 166 bytes per key for a million
//! 36-byte UUID keys of a 12-byte principal.
//! Keys older than the window (`idempotency_window_hours`) are forgotten: a retry
//! after that is stored as a new record.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::log::record::Kind;
use crate::log::LogError;

/// Longest `Idempotency-Key` header value: with a principal id of up to 128 bytes and
/// a separator it fits the record's principal field (255 bytes).
pub const MAX_HEADER_KEY: usize = 126;

/// Where a keyed record was stored, and what is needed to answer a retry of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub shard: u16,
    pub seq: u64,
    pub received_ns: u64,
    /// A hash of the body: a retry must send the same bytes.
    pub body_hash: u64,
}

/// A keyed record on its way to its owner shard, validated and authorized by the
/// shard that received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedWrite {
    pub kind: Kind,
    pub principal: String,
    pub key: String,
    /// The key is the body's `submissionId` (else it came only as a header, and the
    /// record carries it).
    pub key_in_body: bool,
    pub received_ns: u64,
    pub body: Vec<u8>,
}

/// The owner's answer to a [`KeyedWrite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyedAnswer {
    /// Stored now (and durable, with durability `sync`).
    Stored(Entry),
    /// Stored before, from the same bytes: the first answer again.
    Replayed(Entry),
    /// The key was used before with other bytes.
    Conflict,
    Refused(LogError),
}

/// What the table says about a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Not seen within the window: store it.
    New,
    /// Stored already, from the same bytes: answer as the first time.
    Replay(Entry),
    /// Stored already, from other bytes (or as another kind).
    Conflict,
}

/// The keys one shard owns: `principal`, 0x00, `key` to where its record is.
#[derive(Default)]
pub struct KeyTable {
    map: HashMap<Box<str>, Entry>,
    /// Where a lookup joins principal and key, so that it allocates nothing.
    scratch: String,
}

impl KeyTable {
    /// What `principal`'s `key` is now, for a `kind` record with this body hash.
    pub fn lookup(&mut self, principal: &str, key: &str, kind: Kind, body_hash: u64) -> Lookup {
        self.scratch.clear();
        self.scratch.push_str(principal);
        self.scratch.push('\0');
        self.scratch.push_str(key);
        match self.map.get(self.scratch.as_str()) {
            None => Lookup::New,
            Some(e) if e.body_hash == body_hash && e.kind == kind => Lookup::Replay(*e),
            Some(_) => Lookup::Conflict,
        }
    }

    /// Remembers a stored key. If it is known already (two copies stored before keys
    /// were enforced, or by different shards), the earlier record stays its answer.
    pub fn insert(&mut self, principal: &str, key: &str, entry: Entry) {
        self.insert_joined(map_key(principal, key), entry);
    }

    fn insert_joined(&mut self, joined: Box<str>, entry: Entry) {
        let kept = self.map.entry(joined).or_insert(entry);
        if (entry.received_ns, entry.shard, entry.seq) < (kept.received_ns, kept.shard, kept.seq) {
            *kept = entry;
        }
    }

    /// Forgets keys received before `oldest_ns`.
    pub fn expire(&mut self, oldest_ns: u64) {
        self.map.retain(|_, e| e.received_ns >= oldest_ns);
    }

    /// Takes out the keys another shard owns (after a change in the number of shards),
    /// by owner, for handing over.
    pub fn take_foreign(&mut self, me: usize, shards: usize) -> Vec<(usize, Box<str>, Entry)> {
        let mut foreign = Vec::new();
        self.map.retain(|joined, entry| {
            let (principal, key) = joined.split_once('\0').unwrap_or((joined, ""));
            let owner = owner(principal, key, shards);
            if owner != me {
                foreign.push((owner, joined.clone(), *entry));
            }
            owner == me
        });
        foreign
    }

    /// Takes in keys handed over by another shard.
    pub fn take_in(&mut self, keys: Vec<(Box<str>, Entry)>) {
        for (joined, entry) in keys {
            self.insert_joined(joined, entry);
        }
    }
}

fn map_key(principal: &str, key: &str) -> Box<str> {
    let mut joined = String::with_capacity(principal.len() + 1 + key.len());
    joined.push_str(principal);
    joined.push('\0');
    joined.push_str(key);
    joined.into_boxed_str()
}

/// The shard that owns `principal`'s `key` among `shards`: a stable hash (CRC32C), the
/// same in every process and every run with that many shards.
pub fn owner(principal: &str, key: &str, shards: usize) -> usize {
    let crc = crc32c::crc32c_append(crc32c::crc32c(principal.as_bytes()), key.as_bytes());
    // Multiply-shift spreads the CRC's bits over the shard range.
    ((u64::from(crc) * shards as u64) >> 32) as usize
}

/// A 64-bit hash of a body (SipHash): a retry with different bytes is told apart from
/// one with the same bytes except with odds of 2^-64. Computed afresh at every start,
/// so it need not be stable across builds.
pub fn body_hash(body: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
}

/// Whether `value` is a usable `Idempotency-Key`: 1 to [`MAX_HEADER_KEY`] visible ASCII
/// characters (the draft allows a quoted string; its quotes are part of the key here).
pub fn valid_header_key(value: &[u8]) -> Option<&str> {
    let visible = value.iter().all(|b| (0x21..=0x7e).contains(b));
    if value.is_empty() || value.len() > MAX_HEADER_KEY || !visible {
        return None;
    }
    std::str::from_utf8(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, received_ns: u64, body_hash: u64) -> Entry {
        Entry {
            kind: Kind::Report,
            shard: 0,
            seq,
            received_ns,
            body_hash,
        }
    }

    #[test]
    fn a_key_is_new_then_replayed_for_the_same_bytes_and_a_conflict_for_others() {
        let mut table = KeyTable::default();
        assert_eq!(table.lookup("p", "k", Kind::Report, 7), Lookup::New);
        table.insert("p", "k", entry(3, 10, 7));
        assert_eq!(
            table.lookup("p", "k", Kind::Report, 7),
            Lookup::Replay(entry(3, 10, 7))
        );
        assert_eq!(table.lookup("p", "k", Kind::Report, 8), Lookup::Conflict);
        assert_eq!(table.lookup("p", "k", Kind::Tag, 7), Lookup::Conflict);
        // Keys are per principal.
        assert_eq!(table.lookup("q", "k", Kind::Report, 7), Lookup::New);
        // The earlier copy stays the answer; old keys expire.
        table.insert("p", "k", entry(9, 5, 7));
        assert_eq!(
            table.lookup("p", "k", Kind::Report, 7),
            Lookup::Replay(entry(9, 5, 7))
        );
        table.expire(6);
        assert_eq!(table.lookup("p", "k", Kind::Report, 7), Lookup::New);
    }

    #[test]
    fn owners_are_stable_and_spread() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let key = format!("key-{i}");
            let shard = owner("site-app-001", &key, 4);
            assert_eq!(shard, owner("site-app-001", &key, 4));
            counts[shard] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(owner("p", "k", 1), 0);
    }

    #[test]
    fn foreign_keys_are_handed_to_their_owners() {
        let mut table = KeyTable::default();
        for i in 0..100 {
            table.insert("p", &format!("k{i}"), entry(i, i, 0));
        }
        let foreign = table.take_foreign(0, 2);
        assert_eq!(table.map.len() + foreign.len(), 100);
        assert!(foreign.iter().all(|(owner, joined, _)| {
            let (p, k) = joined.split_once('\0').unwrap();
            *owner == 1 && owner_is(p, k, 1)
        }));
        let mut other = KeyTable::default();
        other.take_in(foreign.into_iter().map(|(_, j, e)| (j, e)).collect());
        assert_eq!(table.map.len() + other.map.len(), 100);
    }

    fn owner_is(p: &str, k: &str, shard: usize) -> bool {
        owner(p, k, 2) == shard
    }
}
