//! The answers to a write, wherever it was decided: a stored record's 200 (its id and
//! receive time) or, for a FHIR resource, 201; and the record id's form both ways.
//! (Refusals are [`crate::api::refusal`]'s.)

use crate::api::refusal::FHIR_JSON;
use crate::base::clock;
use crate::domain::fhir;
use crate::http::parse::Head;
use crate::http::request::Request;
use crate::http::response::{Header, Reply, Status, JSON};
use crate::log::record::Kind;

/// The 200 of a stored report (its id and receive time) or tag; `extra` marks a replay.
pub fn acknowledge(
    reply: &mut Reply<'_>,
    kind: Kind,
    shard: u16,
    seq: u64,
    received_ns: u64,
    extra: Option<Header<'_>>,
) {
    if kind == Kind::Tag {
        reply.with(Status::Ok, JSON, extra.as_slice(), &[b"{\"success\":true}"]);
        return;
    }
    let mut id = [0u8; 32];
    let id = format_id(shard, seq, &mut id);
    let at = clock::format_rfc3339(received_ns);
    reply.with(
        Status::Ok,
        JSON,
        extra.as_slice(),
        &[
            b"{\"status\":\"success\",\"message\":\"report received\",\"id\":\"",
            id,
            b"\",\"receivedAt\":\"",
            &at,
            b"\"}",
        ],
    );
}

/// The 201 of a stored FHIR resource (`request`'s): `Location` and `ETag`, and the
/// body its `Prefer: return=` asks for: none, the resource itself, or by default an
/// `OperationOutcome` naming its id; `extra` marks a replay.
pub fn fhir_created(
    reply: &mut Reply<'_>,
    (shard, seq, received_ns): (u16, u64, u64),
    request: &Request<'_>,
    extra: Option<Header<'_>>,
) {
    let mut id = [0u8; 32];
    let id = format_id(shard, seq, &mut id);
    let id_text = std::str::from_utf8(id).unwrap_or("");
    let location = [b"/fhir/QuestionnaireResponse/".as_slice(), id].concat();
    let etag = (&b"ETag"[..], &b"W/\"1\""[..]);
    let headers = [
        (&b"Location"[..], location.as_slice()),
        etag,
        extra.unwrap_or(etag),
    ];
    let headers = &headers[..if extra.is_some() { 3 } else { 2 }];
    let stored_outcome;
    let preference = prefer_return(&request.head).unwrap_or(b"");
    let body: &[u8] = if preference.eq_ignore_ascii_case(b"minimal") {
        b""
    } else if preference.eq_ignore_ascii_case(b"representation") {
        // As a read serves it: the server's id and meta.
        let at = clock::format_rfc3339(received_ns);
        let at = std::str::from_utf8(&at).unwrap_or_default();
        stored_outcome = fhir::render::served(request.body, id_text, at).unwrap_or_default();
        &stored_outcome
    } else {
        stored_outcome = fhir::stored_outcome(id_text).into_bytes();
        &stored_outcome
    };
    reply.with(Status::Created, FHIR_JSON, headers, &[body]);
}

/// The `return` preference of the first `Prefer` field, if any: names in any case,
/// spaces around `=`, a quoted value, as RFC 7240 writes them. (A second `Prefer`
/// line is not read.)
fn prefer_return<'h>(head: &Head<'h>) -> Option<&'h [u8]> {
    let prefer = head.prefer?;
    prefer.split(|&b| b == b',' || b == b';').find_map(|p| {
        let eq = p.iter().position(|&b| b == b'=')?;
        let (name, value) = (p[..eq].trim_ascii(), p[eq + 1..].trim_ascii());
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        name.eq_ignore_ascii_case(b"return").then_some(value)
    })
}

/// The record id (`s<shard>-<seq>`, as [`crate::log::id::record_id`] writes it)
/// without allocating.
pub fn format_id(shard: u16, seq: u64, buf: &mut [u8; 32]) -> &[u8] {
    let mut shard_digits = itoa::Buffer::new();
    let mut seq_digits = itoa::Buffer::new();
    let mut n = 0;
    for part in [
        b"s",
        shard_digits.format(shard).as_bytes(),
        b"-",
        seq_digits.format(seq).as_bytes(),
    ] {
        buf[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    &buf[..n]
}

/// `s<shard>-<seq>`, in the digits [`acknowledge`] writes: no sign, no leading
/// zero.
pub fn parse_id(id: &str) -> Option<(usize, u64)> {
    let (shard, seq) = id.strip_prefix('s')?.split_once('-')?;
    let canonical = |n: &str| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'))
    };
    if !canonical(shard) || !canonical(seq) {
        return None;
    }
    Some((shard.parse().ok()?, seq.parse().ok()?))
}
