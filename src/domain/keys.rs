//! Idempotency keys: which shard owns a key, and the owner's table of the keys it has
//! stored. A submit, tag or FHIR create with a key (a report body's `submissionId`, or
//! an `Idempotency-Key` header) is stored by the key's owner shard only, so one shard
//! decides, with no lock, whether a key is new, a retry of the same bytes or a reuse
//! with different bytes. The table is rebuilt from the logs at start-up: a record on
//! disk with a key is the key's truth.
//!
//! Memory: a key costs its map entry (48 bytes, in a table kept at most 7/8 full) and
//! a heap copy of principal and key: measured at 166 bytes per key for a million
//! 36-byte UUID keys of a 12-byte principal.
//! Pauses: a hash map doubles as it grows and moves every key when it does, on the
//! request path. The table is [`PARTS`] maps, a key's part picked by its hash, so a
//! doubling moves a sixty-fourth of the keys, and forgetting old keys can go a part at a
//! time (`cargo bench --bench keys` measures both layouts).
//! Keys older than the window (`idempotency_window_hours`) are forgotten: a retry
//! after that is stored as a new record. The window is measured on the shard's own
//! clock, which no step of the wall clock moves ([`crate::log::time`]).

use std::collections::hash_map::Entry as Slot;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::domain::pending::Fields;
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

/// A keyed record, validated and authorized by the shard that received it, borrowed
/// from the request while its owner is that shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keyed<'a> {
    pub kind: Kind,
    pub principal: &'a str,
    pub key: &'a str,
    /// The key is the body's `submissionId` (else it came only as a header, and the
    /// record carries it).
    pub key_in_body: bool,
    pub received_ns: u64,
    pub body: &'a [u8],
    /// A report's counted fields, as its validation read them, so that the owner
    /// counts it once durable without parsing it again.
    pub report: Option<Fields<'a>>,
}

impl Keyed<'_> {
    /// A copy to send to the key's owner shard, in one allocation.
    pub fn to_write(&self) -> KeyedWrite {
        let fields = self.report.map(|f| (f.patient, f.project, f.site));
        let (patient, project, site) = fields.unwrap_or_default();
        let parts = [
            self.body,
            self.principal.as_bytes(),
            self.key.as_bytes(),
            patient.as_bytes(),
            project.unwrap_or_default().as_bytes(),
            site.unwrap_or_default().as_bytes(),
        ];
        let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        let ends = parts.map(|part| {
            bytes.extend_from_slice(part);
            bytes.len()
        });
        KeyedWrite {
            kind: self.kind,
            key_in_body: self.key_in_body,
            received_ns: self.received_ns,
            bytes,
            ends,
            report: self.report.map(|f| [f.project.is_some(), f.site.is_some()]),
        }
    }
}

/// A keyed record on its way to its owner shard on another core: a [`Keyed`] that
/// owns its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedWrite {
    pub kind: Kind,
    pub key_in_body: bool,
    pub received_ns: u64,
    /// Body, principal, key, then a report's patient, project and site, back to back.
    bytes: Vec<u8>,
    /// Where each of those six parts ends in `bytes`.
    ends: [usize; 6],
    /// A report's: whether it has a project and a site.
    report: Option<[bool; 2]>,
}

impl KeyedWrite {
    pub fn borrowed(&self) -> Keyed<'_> {
        let part = |i: usize| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.bytes[start..self.ends[i]]
        };
        let text = |i: usize| std::str::from_utf8(part(i)).expect("copied from a str");
        Keyed {
            kind: self.kind,
            principal: text(1),
            key: text(2),
            key_in_body: self.key_in_body,
            received_ns: self.received_ns,
            body: part(0),
            report: self.report.map(|[project, site]| Fields {
                patient: text(3),
                project: project.then(|| text(4)),
                site: site.then(|| text(5)),
            }),
        }
    }
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

/// How many maps a [`KeyTable`] is split into.
pub const PARTS: usize = 64;

/// The keys one shard owns: `principal`, 0x00, `key` to where its record is, in
/// [`PARTS`] maps.
pub struct KeyTable {
    parts: Vec<HashMap<Box<str>, Entry>>,
}

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable {
            parts: (0..PARTS).map(|_| HashMap::new()).collect(),
        }
    }
}

impl KeyTable {
    /// Decides `principal`'s `key` for a `kind` record with this body hash: a key not
    /// seen within the window is stored by `store` and remembered (its part found by
    /// CRC, then one hash and one probe of that part); a known one is a replay of the
    /// same bytes or a conflict.
    pub fn claim(
        &mut self,
        principal: &str,
        key: &str,
        kind: Kind,
        body_hash: u64,
        store: impl FnOnce() -> Result<Entry, LogError>,
    ) -> KeyedAnswer {
        match self.parts[part(principal, key)].entry(map_key(principal, key)) {
            Slot::Occupied(known) => {
                let e = *known.get();
                if e.body_hash == body_hash && e.kind == kind {
                    KeyedAnswer::Replayed(e)
                } else {
                    KeyedAnswer::Conflict
                }
            }
            Slot::Vacant(slot) => match store() {
                Ok(entry) => KeyedAnswer::Stored(*slot.insert(entry)),
                Err(e) => KeyedAnswer::Refused(e),
            },
        }
    }

    /// Remembers a stored key. If it is known already (two copies stored before keys
    /// were enforced, or by different shards), the earlier record stays its answer.
    pub fn insert(&mut self, principal: &str, key: &str, entry: Entry) {
        self.insert_joined(map_key(principal, key), entry);
    }

    fn insert_joined(&mut self, joined: Box<str>, entry: Entry) {
        let (principal, key) = split(&joined);
        let kept = self.parts[part(principal, key)]
            .entry(joined)
            .or_insert(entry);
        if (entry.received_ns, entry.shard, entry.seq) < (kept.received_ns, kept.shard, kept.seq) {
            *kept = entry;
        }
    }

    /// Forgets keys received before `oldest_ns`.
    pub fn expire(&mut self, oldest_ns: u64) {
        for part in 0..PARTS {
            self.expire_part(part, oldest_ns);
        }
    }

    /// Forgets the keys of one part (`0..PARTS`) received before `oldest_ns`.
    pub fn expire_part(&mut self, part: usize, oldest_ns: u64) {
        self.parts[part].retain(|_, e| e.received_ns >= oldest_ns);
    }

    /// Takes out the keys another shard owns (after a change in the number of shards),
    /// by owner, for handing over.
    pub fn take_foreign(&mut self, me: usize, shards: usize) -> Vec<(usize, Box<str>, Entry)> {
        let mut foreign = Vec::new();
        for part in &mut self.parts {
            part.retain(|joined, entry| {
                let (principal, key) = split(joined);
                let owner = owner(principal, key, shards);
                if owner != me {
                    foreign.push((owner, joined.clone(), *entry));
                }
                owner == me
            });
        }
        foreign
    }

    /// Takes in keys handed over by another shard.
    pub fn take_in(&mut self, keys: Vec<(Box<str>, Entry)>) {
        for (joined, entry) in keys {
            self.insert_joined(joined, entry);
        }
    }
}

/// The part of a [`KeyTable`] that holds `principal`'s `key`: the low bits of the hash
/// whose high bits pick the owner shard ([`owner`]), so each shard's keys spread over
/// all parts.
fn part(principal: &str, key: &str) -> usize {
    key_crc(principal, key) as usize % PARTS
}

/// A table key back into principal and key.
fn split(joined: &str) -> (&str, &str) {
    joined.split_once('\0').unwrap_or((joined, ""))
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
    // Multiply-shift spreads the CRC's bits over the shard range.
    ((u64::from(key_crc(principal, key)) * shards as u64) >> 32) as usize
}

fn key_crc(principal: &str, key: &str) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(principal.as_bytes()), key.as_bytes())
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

    /// Claims `key` of principal `p` with body hash `hash`; a new key is stored as
    /// `stored`.
    fn claim(table: &mut KeyTable, p: &str, kind: Kind, hash: u64, stored: Entry) -> KeyedAnswer {
        table.claim(p, "k", kind, hash, || Ok(stored))
    }

    #[test]
    fn a_key_is_new_then_replayed_for_the_same_bytes_and_a_conflict_for_others() {
        let mut table = KeyTable::default();
        let first = entry(3, 10, 7);
        assert_eq!(
            claim(&mut table, "p", Kind::Report, 7, first),
            KeyedAnswer::Stored(first)
        );
        let other = entry(4, 11, 7);
        assert_eq!(
            claim(&mut table, "p", Kind::Report, 7, other),
            KeyedAnswer::Replayed(first)
        );
        assert_eq!(
            claim(&mut table, "p", Kind::Report, 8, other),
            KeyedAnswer::Conflict
        );
        assert_eq!(
            claim(&mut table, "p", Kind::Tag, 7, other),
            KeyedAnswer::Conflict
        );
        // Keys are per principal.
        assert_eq!(
            claim(&mut table, "q", Kind::Report, 7, other),
            KeyedAnswer::Stored(other)
        );
        // The earlier copy stays the answer; old keys expire.
        table.insert("p", "k", entry(9, 5, 7));
        assert_eq!(
            claim(&mut table, "p", Kind::Report, 7, other),
            KeyedAnswer::Replayed(entry(9, 5, 7))
        );
        table.expire(6);
        assert_eq!(
            claim(&mut table, "p", Kind::Report, 7, other),
            KeyedAnswer::Stored(other)
        );
    }

    #[test]
    fn a_refused_store_leaves_the_key_unclaimed() {
        let mut table = KeyTable::default();
        let refused = table.claim("p", "k", Kind::Report, 7, || Err(LogError::Closed));
        assert_eq!(refused, KeyedAnswer::Refused(LogError::Closed));
        let first = entry(3, 10, 7);
        assert_eq!(
            claim(&mut table, "p", Kind::Report, 7, first),
            KeyedAnswer::Stored(first)
        );
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
        assert_eq!(table.len() + foreign.len(), 100);
        assert!(foreign.iter().all(|(owner, joined, _)| {
            let (p, k) = joined.split_once('\0').unwrap();
            *owner == 1 && owner_is(p, k, 1)
        }));
        let mut other = KeyTable::default();
        other.take_in(foreign.into_iter().map(|(_, j, e)| (j, e)).collect());
        assert_eq!(table.len() + other.len(), 100);
    }

    impl KeyTable {
        fn len(&self) -> usize {
            self.parts.iter().map(HashMap::len).sum()
        }
    }

    #[test]
    fn a_shards_keys_spread_over_every_part_so_a_doubling_moves_few() {
        // The keys one of four shards owns: their owner's hash bits are alike.
        let mut table = KeyTable::default();
        for i in 0..64_000 {
            let key = format!("{i:08x}-4b1e-4c2a-9f3e");
            if owner("site-app-001", &key, 4) == 2 {
                table.insert("site-app-001", &key, entry(i, i, 0));
            }
        }
        let sizes: Vec<usize> = table.parts.iter().map(HashMap::len).collect();
        let mean = table.len() / PARTS;
        assert!(mean > 200, "{sizes:?}");
        assert!(
            sizes.iter().all(|&n| n > mean / 2 && n < mean * 2),
            "{sizes:?}"
        );
        // A part forgets its old keys alone.
        let part = part("site-app-001", &format!("{:08x}-4b1e-4c2a-9f3e", 0));
        let before = table.len();
        table.expire_part(part, u64::MAX);
        assert_eq!(table.len(), before - sizes[part]);
    }

    fn owner_is(p: &str, k: &str, shard: usize) -> bool {
        owner(p, k, 2) == shard
    }

    #[test]
    fn a_write_sent_to_the_owner_borrows_back_as_it_was() {
        let report = |project, site| Fields {
            patient: "P-é",
            project,
            site,
        };
        let writes = [
            (Kind::Report, Some(report(Some("P001"), Some("S1")))),
            (Kind::Report, Some(report(None, Some("S1")))),
            (Kind::Report, Some(report(Some(""), None))),
            (Kind::Tag, None),
        ];
        for (kind, report) in writes {
            let keyed = Keyed {
                kind,
                principal: "site-app-001",
                key: "sub-1",
                key_in_body: true,
                received_ns: 7,
                body: br#"{"patientId":"P-\u00e9"}"#,
                report,
            };
            assert_eq!(keyed.to_write().borrowed(), keyed);
        }
    }
}
