//! Bounded randomized body test: submit bodies whose strings are built from escapes
//! (surrogates paired and not, control characters, bad escapes), raw control bytes,
//! multi-byte and invalid UTF-8, fed to the same validator the handlers use. Asserts
//! the promise behind "nothing is accepted that cannot be read back": every body the
//! validator accepts, a strict reader (serde_json, which refuses what PostgreSQL's
//! jsonb refuses of surrogates) reads too, and reads the same `patientId` the server
//! counted the report under; every refusal names a byte inside the body; nothing
//! panics.

mod common;

use common::Rng;
use epro_ingest::domain::malformed::Fault;
use epro_ingest::domain::validate::{Invalid, Validator};

/// Pieces of a JSON string's inside that JSON allows (an escaped control character
/// among them: a reader takes it, an identifier rule may not).
const SOUND: &[&[u8]] = &[
    b"a",
    b"P-1",
    b" ",
    "é".as_bytes(),
    "😀".as_bytes(),
    b"\\n",
    b"\\\"",
    b"\\\\",
    b"\\/",
    b"\\u0041",
    b"\\u00e9",
    b"\\ue000",
    b"\\u0000",
    b"\\u001f",
    b"\\u0085",
    b"\\ud83d\\ude00",
    b"\\uD801\\uDC00",
];

/// Pieces that break a string: unpaired surrogates, bad escapes, raw control bytes,
/// invalid UTF-8.
const FAULTY: &[&[u8]] = &[
    b"\\ud800",
    b"\\udbff",
    b"\\udc00",
    b"\\udfff",
    b"\\ud800\\ue000",
    b"\\ud800\\u0041",
    b"\\u12",
    b"\\q",
    b"\x01",
    b"\t",
    b"\xff",
    b"\xc3",
];

/// One to four pieces, a faulty one about one time in twelve.
fn string(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let piece = if rng.below(12) == 0 {
            FAULTY[rng.below(FAULTY.len())]
        } else {
            SOUND[rng.below(SOUND.len())]
        };
        out.extend_from_slice(piece);
    }
    out
}

fn body(rng: &mut Rng) -> Vec<u8> {
    let mut out = b"{\"patientId\":\"".to_vec();
    out.extend(string(rng));
    out.extend_from_slice(b"\",\"reportData\":{\"note\":\"");
    out.extend(string(rng));
    out.extend_from_slice(b"\"},\"siteId\":\"");
    out.extend(string(rng));
    out.extend_from_slice(b"\"}");
    out
}

#[test]
fn what_the_validator_accepts_a_strict_reader_reads_the_same() {
    let mut validator = Validator::default();
    let (mut accepted, mut refused) = (0, 0);
    for seed in 1..=20_000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let body = body(&mut rng);
        let shown = String::from_utf8_lossy(&body).into_owned();
        match validator.submit(&body, |s| s.patient_id.to_string()) {
            Ok(patient) => {
                accepted += 1;
                let read: serde_json::Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|e| panic!("seed {seed}: accepted, unreadable ({e}): {shown}"));
                assert_eq!(
                    read["patientId"].as_str(),
                    Some(patient.as_str()),
                    "seed {seed}: counted under another patient than a reader sees: {shown}"
                );
            }
            Err(invalids) => {
                refused += 1;
                for invalid in invalids.all() {
                    if let Invalid::Malformed(at, fault) = *invalid {
                        assert!(at <= body.len(), "seed {seed}: byte {at}: {shown}");
                        // A surrogate fault names the backslash of its escape.
                        if fault == Fault::Surrogate {
                            assert_eq!(
                                body.get(at..at + 2),
                                Some(&b"\\u"[..]),
                                "seed {seed}: {shown}"
                            );
                        }
                    }
                }
            }
        }
    }
    println!("{accepted} accepted, {refused} refused");
    // Both sides were exercised.
    assert!(
        accepted > 1_000 && refused > 1_000,
        "{accepted} accepted, {refused} refused"
    );
}
