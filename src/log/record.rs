//! The on-disk format, byte by byte. All integers are little-endian.
//!
//! A segment file starts with a 32-byte header:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `EPROLOG\0` |
//! | 8 | 2 | format version: `3` (chained records, kinds 1 to 6; written now), `2` (chained, kinds 1 to 5) or `1` (unchained; both still read) |
//! | 10 | 2 | shard number |
//! | 12 | 4 | reserved, zero |
//! | 16 | 8 | sequence number of the segment's first record |
//! | 24 | 4 | CRC32C of bytes 0..24 |
//! | 28 | 4 | reserved, zero |
//!
//! Records follow back to back. Each is an 8-byte frame and a payload:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | CRC32C of bytes 4..8+len (the length field, then the payload) |
//! | 4 | 4 | `len`: payload bytes, 28 + principal + body (+ 32 when chained) |
//! | 8 | 1 | kind, low 7 bits: 1 report, 2 tag, 3 report with an idempotency key, 4 tag with one, 5 FHIR QuestionnaireResponse, 6 one with an idempotency key (other values reserved); bit 7 (0x80): *chained*, a `prev` field ends the record |
//! | 9 | 1 | principal length `p` (1..=255; the config allows at most 128) |
//! | 10 | 2 | shard number |
//! | 12 | 8 | sequence number |
//! | 20 | 8 | server receive time, nanoseconds since the Unix epoch, UTC |
//! | 28 | 4 | body length `b` |
//! | 32 | 4 | group index: the record's position in its write group (0 starts a group) |
//! | 36 | p | principal id, UTF-8; for kinds 3, 4 and 6, then a 0x00 byte and the `Idempotency-Key` (so `p` counts both) |
//! | 36+p | b | the request body exactly as received |
//! | 36+p+b | 32 | chained records only: `prev`, the SHA-256 of the shard's previous record |
//!
//! A report whose key is its body's `submissionId` is a kind 1 record: the body holds
//! the key. Kinds 3, 4 and 6 carry a key sent only in the `Idempotency-Key` header, so
//! that recovery can rebuild every key from the log alone. Kind 6 exists from version
//! 3 on: a binary that reads only versions 1 and 2 refuses a version 3 segment as such,
//! rather than reading a kind 6 record as damage (and, in the last write group after a
//! crash, cutting it as a torn tail). So only a segment of the current version is
//! continued; the next record after an older one starts a new segment.
//!
//! **The hash chain** (tamper evidence; versions 2 and 3). A record's *hash* is the SHA-256
//! of all its bytes, frame included (so of its own `prev` too). Every record of a
//! version 2 or 3 segment is chained and none of a version 1 segment is; a version 1
//! segment never follows a chained one. Each chained record's `prev` is the hash of
//! the record before it in the shard's log, across segments, skipped ids and version
//! 1 records; the shard's first record has 32 zero bytes. Editing any record, even
//! with its CRC recomputed, breaks the `prev` of the next one, and rewriting every
//! later record to match changes the last record's hash: the *head* an operator keeps
//! elsewhere (`verify --heads`, `verify --against`).
//!
//! A *write group* is the set of records written by one `write` + `fdatasync`; groups
//! are written strictly one after another. So `seq - group index` names the group, and
//! recovery can tell a torn last group (every valid record after a bad one belongs to
//! the bad one's group) from corruption of acknowledged data (a later group exists).
//!
//! A reader never trusts `len` alone: it must be at least 28, at most
//! [`MAX_PAYLOAD`], fit in the file, agree with `28 + p + b` (+ 32), and the CRC (which
//! covers the length) must match; the shard and sequence number must be the ones
//! expected at that position. After the last record the file holds zeros
//! (preallocated space), so a frame of eight zero bytes ends the segment.

/// Byte offsets of a segment header's fields (the first table above).
pub mod header {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const SHARD: usize = 10;
    pub const FIRST_SEQ: usize = 16;
    pub const CRC: usize = 24;
    /// Header size.
    pub const LEN: usize = 32;
}

/// Byte offsets of a record's fields from the start of its frame (the second table).
pub mod field {
    pub const CRC: usize = 0;
    pub const LEN: usize = 4;
    /// Where the payload, and so `len`, starts.
    pub const PAYLOAD: usize = 8;
    pub const KIND: usize = 8;
    pub const PRINCIPAL_LEN: usize = 9;
    pub const SHARD: usize = 10;
    pub const SEQ: usize = 12;
    pub const RECEIVED_NS: usize = 20;
    pub const BODY_LEN: usize = 28;
    pub const GROUP_INDEX: usize = 32;
    /// The principal id, then the body.
    pub const PRINCIPAL: usize = 36;
}

/// Segment header size.
pub const HEADER_LEN: usize = header::LEN;
pub const MAGIC: &[u8; 8] = b"EPROLOG\0";
/// The version written: chained records, kinds 1 to 6.
pub const VERSION: u16 = 3;
/// Chained records of kinds 1 to 5 (before FHIR records with a key), still read.
pub const VERSION_BEFORE_FHIR_KEYS: u16 = 2;
/// The version before the hash chain, still read.
pub const VERSION_UNCHAINED: u16 = 1;
/// Kind-byte flag of a chained record.
const CHAINED: u8 = 0x80;
/// Size of a record hash, and of the `prev` field.
pub const HASH_LEN: usize = 32;
/// A record's SHA-256.
pub type Hash = [u8; HASH_LEN];
/// The `prev` of a shard's first record.
pub const GENESIS: Hash = [0; HASH_LEN];
/// Frame (CRC + length) plus the fixed part of the payload.
pub const FIXED_LEN: usize = field::PRINCIPAL;
/// Fixed part of the payload.
const FIXED_PAYLOAD: usize = FIXED_LEN - field::PAYLOAD;
/// Largest payload a reader accepts: a body limit of 1 GiB plus principal, fixed part
/// and `prev`.
pub const MAX_PAYLOAD: usize = (1 << 30) + FIXED_PAYLOAD + 255 + HASH_LEN;

/// The hash of an encoded record (all its bytes).
pub fn hash(encoded: &[u8]) -> Hash {
    use sha2::Digest;
    sha2::Sha256::digest(encoded).into()
}

/// Little-endian integers at an offset; the caller has checked the length.
pub(crate) fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().unwrap_or_default())
}

pub(crate) fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().unwrap_or_default())
}

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Report = 1,
    Tag = 2,
    /// A FHIR R4 QuestionnaireResponse, stored byte for byte ([`crate::domain::fhir`]).
    Fhir = 5,
}

impl Kind {
    /// Names for metrics, by [`Kind::index`].
    pub const NAMES: [&'static str; 3] = ["report", "tag", "fhir"];

    /// Position in [`Kind::NAMES`].
    pub fn index(self) -> usize {
        match self {
            Kind::Report => 0,
            Kind::Tag => 1,
            Kind::Fhir => 2,
        }
    }

    /// The kind a kind byte names (the chained flag aside), and whether the record
    /// carries a key.
    pub fn from_byte(b: u8) -> Option<(Kind, bool)> {
        match b & !CHAINED {
            1 => Some((Kind::Report, false)),
            2 => Some((Kind::Tag, false)),
            3 => Some((Kind::Report, true)),
            4 => Some((Kind::Tag, true)),
            5 => Some((Kind::Fhir, false)),
            6 => Some((Kind::Fhir, true)),
            _ => None,
        }
    }

    fn byte(self, keyed: bool) -> u8 {
        match self {
            // 5 and 6: FHIR came after 3 and 4 were taken.
            Kind::Fhir => Kind::Fhir as u8 + u8::from(keyed),
            _ => self as u8 + if keyed { 2 } else { 0 },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Report => "report",
            Kind::Tag => "tag",
            Kind::Fhir => "fhir",
        }
    }
}

/// A record read back from a segment, borrowing its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub shard: u16,
    pub seq: u64,
    pub received_ns: u64,
    /// Position in its write group; `seq - group_index` is the group's first record.
    pub group_index: u32,
    pub principal: &'a str,
    /// The `Idempotency-Key` it was sent with, when that is not its body's
    /// `submissionId` (kinds 3, 4 and 6).
    pub key: Option<&'a str>,
    pub body: &'a [u8],
    /// The previous record's hash: `Some` for a chained record (versions 2 and 3),
    /// `None` for a version 1 record.
    pub prev: Option<&'a Hash>,
}

/// A principal or body the format cannot hold (a principal field over 255 bytes, a
/// payload over [`MAX_PAYLOAD`], a 0x00 in a principal or key, an empty key): refused,
/// never wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unencodable;

impl Record<'_> {
    /// Bytes of the principal field: the principal, and a key after a 0x00.
    fn principal_field_len(principal: &str, key: Option<&str>) -> usize {
        principal.len() + key.map_or(0, |k| 1 + k.len())
    }

    /// Encoded size of a chained record with this principal, key and body, if the
    /// format can hold them.
    pub fn encoded_len(
        principal: &str,
        key: Option<&str>,
        body: &[u8],
    ) -> Result<usize, Unencodable> {
        let p = Record::principal_field_len(principal, key);
        let payload = FIXED_PAYLOAD + p + body.len() + HASH_LEN;
        if p > usize::from(u8::MAX) || payload > MAX_PAYLOAD {
            return Err(Unencodable);
        }
        // A 0x00 separates principal and key: neither may hold one.
        let has_separator = |s: &str| s.as_bytes().contains(&0);
        if has_separator(principal) || key.is_some_and(|k| k.is_empty() || has_separator(k)) {
            return Err(Unencodable);
        }
        Ok(FIXED_LEN + p + body.len() + HASH_LEN)
    }

    /// Appends the encoded record to `out` (chained when it has a `prev`), or refuses a
    /// record the format cannot hold.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Unencodable> {
        Record::encoded_len(self.principal, self.key, self.body)?;
        let start = out.len();
        let p = Record::principal_field_len(self.principal, self.key);
        let trailer = if self.prev.is_some() { HASH_LEN } else { 0 };
        let payload = FIXED_PAYLOAD + p + self.body.len() + trailer;
        let chained = if self.prev.is_some() { CHAINED } else { 0 };
        let mut fixed = [0u8; FIXED_LEN];
        let mut put = |at: usize, bytes: &[u8]| fixed[at..at + bytes.len()].copy_from_slice(bytes);
        put(field::LEN, &(payload as u32).to_le_bytes());
        put(field::KIND, &[self.kind.byte(self.key.is_some()) | chained]);
        put(field::PRINCIPAL_LEN, &[p as u8]);
        put(field::SHARD, &self.shard.to_le_bytes());
        put(field::SEQ, &self.seq.to_le_bytes());
        put(field::RECEIVED_NS, &self.received_ns.to_le_bytes());
        put(field::BODY_LEN, &(self.body.len() as u32).to_le_bytes());
        put(field::GROUP_INDEX, &self.group_index.to_le_bytes());
        out.extend_from_slice(&fixed);
        out.extend_from_slice(self.principal.as_bytes());
        if let Some(key) = self.key {
            out.push(0);
            out.extend_from_slice(key.as_bytes());
        }
        out.extend_from_slice(self.body);
        if let Some(prev) = self.prev {
            out.extend_from_slice(prev);
        }
        let crc = crc32c::crc32c(&out[start + field::LEN..]);
        out[start + field::CRC..start + field::LEN].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }
}

/// What is at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid record and its encoded length.
    Record(Record<'a>, usize),
    /// Eight zero bytes, or the end of the file: no more records here.
    End,
    /// Something that is not a valid record; the reason names the check that failed.
    Invalid(&'static str),
}

/// Decodes the record at the start of `buf`; `expect` is the (shard, seq) it must carry
/// (`None`: any, for searching past a bad record).
pub fn decode(buf: &[u8], expect: Option<(u16, u64)>) -> Decoded<'_> {
    let end = match frame(buf) {
        Ok(end) => end,
        Err(done) => return done,
    };
    let Some((kind, keyed)) = Kind::from_byte(buf[field::KIND]) else {
        return Decoded::Invalid("unknown record kind");
    };
    let trailer = if buf[field::KIND] & CHAINED != 0 {
        HASH_LEN
    } else {
        0
    };
    let principal_len = buf[field::PRINCIPAL_LEN] as usize;
    let shard = u16_at(buf, field::SHARD);
    let seq = u64_at(buf, field::SEQ);
    let received_ns = u64_at(buf, field::RECEIVED_NS);
    let body_len = u32_at(buf, field::BODY_LEN) as usize;
    let group_index = u32_at(buf, field::GROUP_INDEX);
    if FIXED_PAYLOAD + principal_len + body_len + trailer != end - field::PAYLOAD {
        return Decoded::Invalid("record field lengths disagree with the frame");
    }
    if expect.is_some_and(|e| e != (shard, seq)) {
        return Decoded::Invalid("record shard or sequence number out of order");
    }
    if u64::from(group_index) >= seq {
        return Decoded::Invalid("record group index beyond its sequence number");
    }
    let body_at = field::PRINCIPAL + principal_len;
    let body_end = end - trailer;
    let (principal, key) = match principal_and_key(&buf[field::PRINCIPAL..body_at], keyed) {
        Ok(field) => field,
        Err(reason) => return Decoded::Invalid(reason),
    };
    let record = Record {
        kind,
        shard,
        seq,
        received_ns,
        group_index,
        principal,
        key,
        body: &buf[body_at..body_end],
        prev: (trailer > 0).then(|| {
            <&Hash>::try_from(&buf[body_end..end]).expect("HASH_LEN bytes by the length check")
        }),
    };
    Decoded::Record(record, end)
}

/// Where the record frame at the start of `buf` ends, once its length is in range and
/// within `buf` and its checksum holds; else what is there instead (no record, or
/// why not one).
#[inline]
fn frame(buf: &[u8]) -> Result<usize, Decoded<'static>> {
    if buf.len() < field::PAYLOAD {
        return Err(if buf.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Invalid("truncated record frame")
        });
    }
    let crc = u32_at(buf, field::CRC);
    let len = u32_at(buf, field::LEN) as usize;
    if crc == 0 && len == 0 {
        return Err(Decoded::End);
    }
    if !(FIXED_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return Err(Decoded::Invalid("record length out of range"));
    }
    let end = field::PAYLOAD + len;
    if end > buf.len() {
        return Err(Decoded::Invalid("record extends past the end of the file"));
    }
    if crc32c::crc32c(&buf[field::LEN..end]) != crc {
        return Err(Decoded::Invalid("record checksum mismatch"));
    }
    Ok(end)
}

/// The principal and the idempotency key of a principal field: a keyed record's
/// holds both, split by a NUL, and its key is not empty; another's holds no NUL.
#[inline]
fn principal_and_key(field: &[u8], keyed: bool) -> Result<(&str, Option<&str>), &'static str> {
    let Ok(field) = std::str::from_utf8(field) else {
        return Err("principal is not UTF-8");
    };
    match (keyed, field.split_once('\0')) {
        (false, None) => Ok((field, None)),
        (true, Some((principal, key))) if !key.is_empty() => Ok((principal, Some(key))),
        _ => Err("principal field disagrees with the record kind"),
    }
}

/// Encodes a segment header of the version written now.
pub fn encode_header(shard: u16, first_seq: u64) -> [u8; HEADER_LEN] {
    encode_header_version(shard, first_seq, VERSION)
}

/// Encodes a segment header of `version` (1 for the tests of reading old logs).
pub fn encode_header_version(shard: u16, first_seq: u64, version: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[header::MAGIC..header::MAGIC + 8].copy_from_slice(MAGIC);
    h[header::VERSION..header::VERSION + 2].copy_from_slice(&version.to_le_bytes());
    h[header::SHARD..header::SHARD + 2].copy_from_slice(&shard.to_le_bytes());
    h[header::FIRST_SEQ..header::FIRST_SEQ + 8].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[..header::CRC]);
    h[header::CRC..header::CRC + 4].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub shard: u16,
    pub first_seq: u64,
    pub version: u16,
    /// Whether its records are chained (version 2 and later).
    pub chained: bool,
}

/// Whether `record` can be in a segment of `version`: chained exactly when the
/// version is, and of a kind the version has (kind 6 from version 3 on). A record
/// that cannot, yet whose CRC holds, was not written by a crash: it was edited.
pub fn fits_version(record: &Record<'_>, version: u16) -> bool {
    let keyed_fhir = record.kind == Kind::Fhir && record.key.is_some();
    record.prev.is_some() == (version != VERSION_UNCHAINED) && (!keyed_fhir || version >= VERSION)
}

/// Decodes a segment header.
pub fn decode_header(buf: &[u8]) -> Result<Header, &'static str> {
    if buf.len() < HEADER_LEN {
        return Err("segment shorter than its header");
    }
    if &buf[header::MAGIC..header::MAGIC + 8] != MAGIC {
        return Err("bad segment magic");
    }
    if crc32c::crc32c(&buf[..header::CRC]) != u32_at(buf, header::CRC) {
        return Err("segment header checksum mismatch");
    }
    let version = u16_at(buf, header::VERSION);
    if !(VERSION_UNCHAINED..=VERSION).contains(&version) {
        return Err("unsupported segment format version");
    }
    Ok(Header {
        shard: u16_at(buf, header::SHARD),
        first_seq: u64_at(buf, header::FIRST_SEQ),
        version,
        chained: version != VERSION_UNCHAINED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(principal: &'a str, body: &'a [u8]) -> Record<'a> {
        Record {
            kind: Kind::Report,
            shard: 0,
            seq: 1,
            received_ns: 0,
            group_index: 0,
            principal,
            key: None,
            body,
            prev: None,
        }
    }

    #[test]
    fn a_principal_longer_than_its_length_byte_is_refused_not_wrapped() {
        let mut out = Vec::new();
        let long = "p".repeat(256);
        assert_eq!(record(&long, b"{}").encode(&mut out), Err(Unencodable));
        assert!(out.is_empty(), "nothing is written for a refused record");
        let longest = "p".repeat(255);
        record(&longest, b"{}").encode(&mut out).unwrap();
        match decode(&out, Some((0, 1))) {
            Decoded::Record(r, len) => {
                assert_eq!((r.principal, len), (longest.as_str(), out.len()))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_kind_with_and_without_a_key_reads_back_as_written() {
        for (kind, key, byte) in [
            (Kind::Report, None, 1),
            (Kind::Tag, None, 2),
            (Kind::Report, Some("k"), 3),
            (Kind::Tag, Some("k"), 4),
            (Kind::Fhir, None, 5),
            (Kind::Fhir, Some("k"), 6),
        ] {
            let mut out = Vec::new();
            let written = Record {
                kind,
                key,
                ..record("site-app", b"{}")
            };
            written.encode(&mut out).unwrap();
            assert_eq!(out[field::KIND], byte, "{kind:?} {key:?}");
            assert_eq!(
                decode(&out, Some((0, 1))),
                Decoded::Record(written, out.len())
            );
        }
    }

    #[test]
    fn a_key_sent_only_in_its_header_is_stored_after_the_principal() {
        let mut out = Vec::new();
        let keyed = Record {
            kind: Kind::Tag,
            key: Some("key-1"),
            ..record("site-app", b"{}")
        };
        keyed.encode(&mut out).unwrap();
        assert_eq!(out[field::KIND], 4);
        assert_eq!(
            &out[field::PRINCIPAL..field::PRINCIPAL + 14],
            b"site-app\0key-1"
        );
        assert_eq!(
            decode(&out, Some((0, 1))),
            Decoded::Record(keyed, out.len())
        );
        // Neither principal nor key may hold the separator; an empty key is no key.
        let mut refused = Vec::new();
        let nul = Record {
            principal: "a\0b",
            ..record("x", b"{}")
        };
        assert_eq!(nul.encode(&mut refused), Err(Unencodable));
        let empty = Record {
            key: Some(""),
            ..record("x", b"{}")
        };
        assert_eq!(empty.encode(&mut refused), Err(Unencodable));
        assert!(refused.is_empty());
        // A 0x00 in the principal field of an unkeyed kind is damage, not a key.
        out[field::KIND] = 2;
        let crc = crc32c::crc32c(&out[field::LEN..]);
        out[..4].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&out, None), Decoded::Invalid(_)));
    }

    #[test]
    fn a_chained_record_ends_with_its_predecessors_hash() {
        let prev = hash(b"the record before");
        let chained = Record {
            prev: Some(&prev),
            ..record("site-app", b"{\"a\":1}")
        };
        let mut out = Vec::new();
        chained.encode(&mut out).unwrap();
        assert_eq!(
            out.len(),
            Record::encoded_len("site-app", None, b"{\"a\":1}").unwrap()
        );
        assert_eq!(out[field::KIND], 0x80 | 1);
        assert_eq!(&out[out.len() - HASH_LEN..], &prev);
        assert_eq!(
            decode(&out, Some((0, 1))),
            Decoded::Record(chained, out.len())
        );
        // The unchained (version 1) encoding of the same record is 32 bytes shorter.
        let mut v1 = Vec::new();
        record("site-app", b"{\"a\":1}").encode(&mut v1).unwrap();
        assert_eq!(v1.len() + HASH_LEN, out.len());
        match decode(&v1, Some((0, 1))) {
            Decoded::Record(r, _) => assert_eq!((r.prev, r.body), (None, &b"{\"a\":1}"[..])),
            other => panic!("{other:?}"),
        }
        // A flag without its 32 bytes (or bytes without the flag) disagrees with the frame.
        v1[field::KIND] |= 0x80;
        let crc = crc32c::crc32c(&v1[field::LEN..]);
        v1[..4].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&v1, None), Decoded::Invalid(_)));
    }

    #[test]
    fn a_record_fits_a_version_by_its_chaining_and_kind() {
        let prev = GENESIS;
        let chained = Record {
            prev: Some(&prev),
            ..record("p", b"{}")
        };
        let keyed_fhir = Record {
            kind: Kind::Fhir,
            key: Some("k"),
            ..chained
        };
        for (r, fits) in [
            (&record("p", b"{}"), [true, false, false]),
            (&chained, [false, true, true]),
            (&keyed_fhir, [false, false, true]),
        ] {
            for (version, fits) in (1..=3).zip(fits) {
                assert_eq!(fits_version(r, version), fits, "{r:?} in version {version}");
            }
        }
    }

    #[test]
    fn every_header_version_is_read_and_others_refused() {
        for (version, chained) in [(1, false), (2, true), (3, true)] {
            let h = encode_header_version(3, 9, version);
            let want = Header {
                shard: 3,
                first_seq: 9,
                version,
                chained,
            };
            assert_eq!(decode_header(&h), Ok(want));
        }
        assert_eq!(
            decode_header(&encode_header(0, 1)).map(|h| h.version),
            Ok(VERSION)
        );
        for version in [0, 4] {
            let h = encode_header_version(0, 1, version);
            assert_eq!(decode_header(&h), Err("unsupported segment format version"));
        }
    }
}
