//! A log record as a row of `epro_records`, in PostgreSQL's COPY text format: the
//! fields the read APIs count by (through the same validator rules), the key, and the
//! body twice: exactly as received (`body_raw`, for an auditor) and as `jsonb` (for
//! queries; NULL for the rare body jsonb cannot hold, a `\u0000` or a lone surrogate),
//! the record's hash in the log's chain (`sha256`), and `refused`: what PostgreSQL
//! could not hold of the record, NULL when nothing.
//!
//! A row PostgreSQL refuses all the same (a number past its `numeric`, say) is
//! [`degrade`]d rather than left behind: first without its jsonb, then also without
//! the fields taken from the body; `body_raw` always keeps every byte.

use crate::base::clock::format_rfc3339;
use crate::domain::validate::Validator;
use crate::log::id::{hex, record_id};
use crate::log::record::{Hash, Kind, Record};

/// The columns of `epro_records` (and of the staging table), in COPY order.
pub const COLUMNS: &str = "node, shard, seq, id, kind, received_at, received_ns, principal, \
     submission_id, patient_id, project_id, site_id, tag_name, counted, body, body_raw, sha256, refused";

/// Why a row has no jsonb when the shipper itself can tell.
const NO_JSONB: &str = "jsonb cannot hold a \\u0000 or a lone surrogate escape";

/// The fields the read APIs count a record by, when the validator accepts it.
#[derive(Default)]
struct Fields {
    submission_id: Option<String>,
    patient_id: Option<String>,
    project_id: Option<String>,
    site_id: Option<String>,
    tag_name: Option<String>,
    counted: bool,
}

fn fields(validator: &mut Validator, record: &Record<'_>) -> Fields {
    let own = |s: Option<&str>| s.map(str::to_owned);
    let parsed = match record.kind {
        Kind::Report => validator.submit(record.body, |s| Fields {
            submission_id: own(s.submission_id),
            patient_id: own(Some(s.patient_id)),
            project_id: own(s.project_id),
            site_id: own(s.site_id),
            tag_name: None,
            counted: true,
        }),
        Kind::Tag => validator.tag(record.body, |t| Fields {
            patient_id: own(Some(t.patient_id)),
            project_id: own(Some(t.project_id)),
            tag_name: own(Some(t.tag_name)),
            counted: true,
            ..Fields::default()
        }),
        Kind::Fhir => match crate::domain::fhir::fields(record.body) {
            Some(f) => Ok(Fields {
                patient_id: Some(f.patient_id),
                project_id: f.project_id,
                site_id: f.site_id,
                counted: true,
                ..Fields::default()
            }),
            None => Ok(Fields::default()),
        },
    };
    let mut fields = parsed.unwrap_or_default();
    // A key sent only as a header is the record's key; otherwise the body's.
    if let Some(key) = record.key {
        fields.submission_id = Some(key.to_owned());
    }
    fields
}

/// Appends `record` of node `node`, whose hash is `hash`, as one COPY text line to `out`;
/// whether it has a key.
pub fn copy_line(
    validator: &mut Validator,
    node: &str,
    (record, hash): (&Record<'_>, &Hash),
    out: &mut Vec<u8>,
) -> bool {
    let f = fields(validator, record);
    let mut id = Vec::with_capacity(24);
    record_id(record.shard, record.seq, &mut id);
    text(out, node);
    tab(out);
    number(out, u64::from(record.shard));
    tab(out);
    number(out, record.seq);
    tab(out);
    out.extend_from_slice(&id);
    tab(out);
    out.extend_from_slice(record.kind.as_str().as_bytes());
    tab(out);
    out.extend_from_slice(&format_rfc3339(record.received_ns));
    tab(out);
    number(out, record.received_ns);
    tab(out);
    text(out, record.principal);
    for value in [
        &f.submission_id,
        &f.patient_id,
        &f.project_id,
        &f.site_id,
        &f.tag_name,
    ] {
        tab(out);
        match value {
            Some(v) => text(out, v),
            None => out.extend_from_slice(b"\\N"),
        }
    }
    tab(out);
    out.extend_from_slice(if f.counted { b"t" } else { b"f" });
    tab(out);
    let json = std::str::from_utf8(record.body)
        .ok()
        .filter(|_| jsonb_can_hold(record.body));
    match json {
        Some(json) => text(out, json),
        None => out.extend_from_slice(b"\\N"),
    }
    tab(out);
    bytea_escaped(out, record.body);
    tab(out);
    bytea(out, hash);
    tab(out);
    match json {
        Some(_) => out.extend_from_slice(b"\\N"),
        None => text(out, NO_JSONB),
    }
    out.push(b'\n');
    f.submission_id.is_some()
}

/// How much of a row PostgreSQL refused is left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Degrade {
    /// The jsonb body.
    Jsonb,
    /// The jsonb body and every field read from the body (key, patient, project,
    /// site, tag; the row is not counted).
    Fields,
}

/// Column positions in a COPY line.
const FIRST_FIELD: usize = 8;
const COUNTED: usize = 13;
const BODY: usize = 14;
const REFUSED: usize = 17;

/// `line` (one COPY line from [`copy_line`], with its newline) with what `degrade`
/// says left out, and `why` (PostgreSQL's message) in `refused`.
pub fn degrade(line: &[u8], degrade: Degrade, why: &str) -> Vec<u8> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut out = Vec::with_capacity(line.len() + why.len() + 2);
    for (i, column) in line.split(|&b| b == b'\t').enumerate() {
        if i > 0 {
            tab(&mut out);
        }
        match i {
            BODY => out.extend_from_slice(b"\\N"),
            FIRST_FIELD..COUNTED if degrade == Degrade::Fields => out.extend_from_slice(b"\\N"),
            COUNTED if degrade == Degrade::Fields => out.push(b'f'),
            REFUSED => text(&mut out, why),
            _ => out.extend_from_slice(column),
        }
    }
    out.push(b'\n');
    out
}

/// bytea in escape format, about one byte per byte for JSON (hex would send two and
/// make PostgreSQL decode them): printable ASCII as itself, a backslash as `\\`, any
/// other byte as `\ooo`, each backslash doubled again as COPY text requires.
fn bytea_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(br"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(&[
                b'\\',
                b'\\',
                b'0' + (b >> 6),
                b'0' + ((b >> 3) & 7),
                b'0' + (b & 7),
            ]),
        }
    }
}

/// bytea in hex; its backslash is escaped as COPY text requires.
fn bytea(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(b"\\\\x");
    hex(bytes, out);
}

fn tab(out: &mut Vec<u8>) {
    out.push(b'\t');
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A value in COPY text format: backslash, tab, newline and CR escaped.
fn text(out: &mut Vec<u8>, value: &str) {
    for &b in value.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Whether PostgreSQL's jsonb accepts this (already valid) JSON: it refuses the escape
/// `\u0000` and unpaired surrogate escapes. Such a body goes as NULL jsonb (it is
/// still in `body_raw`).
fn jsonb_can_hold(json: &[u8]) -> bool {
    let mut i = 0;
    let mut high = false;
    while i < json.len() {
        if json[i] != b'\\' || i + 1 == json.len() {
            if high {
                return false;
            }
            i += 1;
            continue;
        }
        if json[i + 1] != b'u' || i + 6 > json.len() {
            if high {
                return false;
            }
            i += 2;
            continue;
        }
        let hex = std::str::from_utf8(&json[i + 2..i + 6]).unwrap_or("");
        match u16::from_str_radix(hex, 16) {
            Ok(0) => return false,
            Ok(0xD800..=0xDBFF) if !high => high = true,
            Ok(0xDC00..=0xDFFF) if high => high = false,
            Ok(0xD800..=0xDFFF) => return false,
            _ if high => return false,
            _ => {}
        }
        i += 6;
    }
    !high
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(body: &[u8], key: Option<&str>) -> String {
        let record = Record {
            kind: Kind::Report,
            shard: 1,
            seq: 7,
            received_ns: 1_000_000_123,
            group_index: 0,
            principal: "dev\t1",
            key,
            body,
            prev: None,
        };
        let mut out = Vec::new();
        copy_line(
            &mut Validator::for_stored(),
            "n1",
            (&record, &[0xab; 32]),
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_report_becomes_one_escaped_copy_line() {
        let l = line(
            br#"{"patientId":"P\\1","projectId":"P001","reportData":"x","submissionId":"s-1"}"#,
            None,
        );
        let cols: Vec<&str> = l.trim_end_matches('\n').split('\t').collect();
        assert_eq!(cols.len(), 18, "{l}");
        assert_eq!(&cols[..4], ["n1", "1", "7", "s1-7"]);
        assert_eq!(cols[7], "dev\\t1", "the tab in the principal, escaped");
        assert_eq!(&cols[8..13], ["s-1", "P\\\\1", "P001", "\\N", "\\N"]);
        assert_eq!(cols[13], "t");
        assert!(
            cols[15].starts_with(r#"{"patientId":"P\\\\\\\\1""#),
            "{}",
            cols[15]
        );
        assert_eq!(cols[16], format!("\\\\x{}", "ab".repeat(32)));
        assert_eq!(cols[17], "\\N");
    }

    #[test]
    fn a_degraded_line_leaves_out_the_jsonb_then_the_fields_and_says_why() {
        let l = line(
            br#"{"patientId":"P1","projectId":"P001","reportData":{"a":1e-20000}}"#,
            Some("k-1"),
        );
        let d = String::from_utf8(degrade(l.as_bytes(), Degrade::Jsonb, "too\tbig")).unwrap();
        let cols: Vec<&str> = d.trim_end_matches('\n').split('\t').collect();
        let orig: Vec<&str> = l.trim_end_matches('\n').split('\t').collect();
        assert_eq!(cols.len(), 18);
        assert_eq!(&cols[..14], &orig[..14]);
        assert_eq!(cols[14], "\\N");
        assert_eq!(&cols[15..17], &orig[15..17]);
        assert_eq!(cols[17], "too\\tbig");
        let d = String::from_utf8(degrade(l.as_bytes(), Degrade::Fields, "x")).unwrap();
        let cols: Vec<&str> = d.trim_end_matches('\n').split('\t').collect();
        assert_eq!(&cols[..8], &orig[..8]);
        assert_eq!(
            &cols[8..15],
            ["\\N", "\\N", "\\N", "\\N", "\\N", "f", "\\N"]
        );
        assert_eq!(&cols[15..], [orig[15], orig[16], "x"]);
    }

    #[test]
    fn a_body_as_bytea_escapes_what_is_not_printable_ascii() {
        let mut out = Vec::new();
        bytea_escaped(&mut out, "a\\\t\u{e9}~ \x7f".as_bytes());
        assert_eq!(out, br"a\\\\\\011\\303\\251~ \\177");
    }

    #[test]
    fn a_header_key_and_bodies_jsonb_cannot_hold() {
        let l = line(br#"{"patientId":"P","reportData":"a\u0000b"}"#, Some("k-1"));
        let cols: Vec<&str> = l.trim_end_matches('\n').split('\t').collect();
        assert_eq!(cols[8], "k-1");
        assert_eq!(cols[14], "\\N");
        assert_eq!(
            cols[17],
            "jsonb cannot hold a \\\\u0000 or a lone surrogate escape"
        );
        assert!(jsonb_can_hold(br#"{"a":"\u00e9 \ud83d\ude00 \\u0000"}"#));
        assert!(!jsonb_can_hold(br#"{"a":"\ud83d"}"#));
        assert!(!jsonb_can_hold(br#"{"a":"\ude00\ud83d"}"#));
    }
}
