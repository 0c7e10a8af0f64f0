//! R4's primitive types in JSON: which JSON type each one is, and its lexical form
//! (the regular expressions of the R4 specification's datatypes page, written out by
//! hand, plus real calendar dates). Strings of every type are non-empty and hold no
//! control character other than tab, CR and LF (R4: "SHOULD not contain Unicode
//! character points below 32"; refused here, as an EHR validator would warn).

use serde_json::Value;

/// An R4 primitive type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prim {
    Boolean,
    Integer,
    UnsignedInt,
    PositiveInt,
    Decimal,
    String,
    Markdown,
    Code,
    /// A `code` with a required binding: one of these.
    CodeOf(&'static [&'static str]),
    Id,
    Uri,
    Url,
    Canonical,
    Oid,
    Uuid,
    Base64Binary,
    Date,
    DateTime,
    Time,
    Instant,
    /// Narrative's `div`: a string opening with `<div` (its XHTML is not parsed).
    Xhtml,
}

/// Why a primitive's value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Not the JSON type the primitive is written as (`structure`).
    JsonType(&'static str),
    /// The right JSON type, the wrong lexical form or range (`value`).
    Form(&'static str),
}

/// Checks a primitive's JSON value.
pub fn check(prim: Prim, value: &Value) -> Result<(), Fault> {
    let int = |min: i64| {
        // serde_json reads `1.0` and `1e3` as floats: an integer is written as one.
        let n = value.as_i64().ok_or(Fault::JsonType(
            "an integer (a JSON number without fraction or exponent)",
        ))?;
        if n < min || n > i64::from(i32::MAX) {
            return Err(Fault::Form("an integer out of range"));
        }
        Ok(())
    };
    match prim {
        Prim::Boolean => value
            .is_boolean()
            .then_some(())
            .ok_or(Fault::JsonType("true or false")),
        Prim::Integer => int(i64::from(i32::MIN)),
        Prim::UnsignedInt => int(0),
        Prim::PositiveInt => int(1),
        Prim::Decimal => value
            .is_number()
            .then_some(())
            .ok_or(Fault::JsonType("a JSON number")),
        _ => {
            let s = value.as_str().ok_or(Fault::JsonType("a JSON string"))?;
            check_str(prim, s)
        }
    }
}

/// Checks a string-valued primitive's text.
pub fn check_str(prim: Prim, s: &str) -> Result<(), Fault> {
    if s.is_empty() {
        return Err(Fault::Form("a non-empty string"));
    }
    if s.chars()
        .any(|c| c < ' ' && !matches!(c, '\t' | '\r' | '\n'))
    {
        return Err(Fault::Form("a string without control characters"));
    }
    let ok = match prim {
        Prim::Code => is_code(s),
        Prim::CodeOf(codes) => {
            if codes.contains(&s) {
                true
            } else {
                return Err(Fault::Form("one of the codes of its required value set"));
            }
        }
        Prim::Id => is_id(s),
        Prim::Uri | Prim::Url | Prim::Canonical => !s.chars().any(char::is_whitespace),
        Prim::Oid => is_oid(s),
        Prim::Uuid => is_uuid(s),
        Prim::Base64Binary => is_base64(s),
        Prim::Date => date(s).is_some_and(|rest| rest.is_empty()),
        Prim::DateTime => is_date_time(s),
        Prim::Time => time(s).is_some_and(|rest| rest.is_empty()),
        Prim::Instant => is_instant(s),
        Prim::Xhtml => s.starts_with("<div"),
        _ => true,
    };
    ok.then_some(()).ok_or(Fault::Form(form(prim)))
}

/// What a primitive's lexical form is, for a diagnostic.
fn form(prim: Prim) -> &'static str {
    match prim {
        Prim::Code => "a code: no leading, trailing or double whitespace",
        Prim::Id => "an id: 1 to 64 of A-Z a-z 0-9 - .",
        Prim::Uri | Prim::Url | Prim::Canonical => "a URI without whitespace",
        Prim::Oid => "an OID: urn:oid: and dotted numbers",
        Prim::Uuid => "a UUID: urn:uuid: and lowercase hex",
        Prim::Base64Binary => "base64",
        Prim::Date => "a date: YYYY, YYYY-MM or YYYY-MM-DD, a real calendar day",
        Prim::DateTime => {
            "a dateTime: YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss(.s) with a zone"
        }
        Prim::Time => "a time: hh:mm:ss(.s)",
        Prim::Instant => "an instant: YYYY-MM-DDThh:mm:ss(.s) with a zone",
        Prim::Xhtml => "an XHTML div",
        _ => "a valid value",
    }
}

/// `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `[^\s]+(\s[^\s]+)*`: no whitespace at either end, none doubled.
fn is_code(s: &str) -> bool {
    let ws = |c: char| c.is_whitespace();
    !s.starts_with(ws)
        && !s.ends_with(ws)
        && !s.contains(|c: char| c.is_whitespace() && c != ' ')
        && !s.contains("  ")
}

/// `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`.
fn is_oid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut arcs = rest.split('.');
    let first_ok = arcs.next().is_some_and(|a| matches!(a, "0" | "1" | "2"));
    let mut count = 0;
    let rest_ok = arcs.all(|a| {
        count += 1;
        !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) && (a == "0" || !a.starts_with('0'))
    });
    first_ok && rest_ok && count > 0
}

/// `urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`.
fn is_uuid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:uuid:") else {
        return false;
    };
    let groups: Vec<&str> = rest.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| {
            g.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// `(\s*([0-9a-zA-Z\+/=]){4}\s*)+`: groups of four, whitespace between them allowed.
fn is_base64(s: &str) -> bool {
    let mut n = 0usize;
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=' {
            n += 1;
        } else if !b.is_ascii_whitespace() {
            return false;
        }
    }
    n > 0 && n % 4 == 0
}

/// Reads `n` digits at the start of `s`: their value and what follows.
fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let head = s.get(..n)?;
    head.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
    Some((head.parse().ok()?, &s[n..]))
}

/// A date at the start of `s` (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`; year 0001 and up, a
/// real calendar day); what follows it.
fn date(s: &str) -> Option<&str> {
    let (year, rest) = digits(s, 4)?;
    if year == 0 {
        return None;
    }
    let Some(rest) = rest.strip_prefix('-') else {
        return Some(rest);
    };
    let (month, rest) = digits(rest, 2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    let Some(rest) = rest.strip_prefix('-') else {
        return Some(rest);
    };
    let (day, rest) = digits(rest, 2)?;
    (day >= 1 && day <= crate::base::clock::days_in_month(year, month)).then_some(rest)
}

/// `hh:mm:ss(.s+)` at the start of `s` (second 60 allowed, as R4's regex does); what
/// follows it.
fn time(s: &str) -> Option<&str> {
    let (h, rest) = digits(s, 2)?;
    let (m, rest) = digits(rest.strip_prefix(':')?, 2)?;
    let (sec, rest) = digits(rest.strip_prefix(':')?, 2)?;
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    match rest.strip_prefix('.') {
        Some(frac) => {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            (n > 0).then(|| &frac[n..])
        }
        None => Some(rest),
    }
}

/// `Z` or `+hh:mm`/`-hh:mm` up to 14:00, and nothing after.
fn zone(s: &str) -> bool {
    if s == "Z" {
        return true;
    }
    let Some(rest) = s.strip_prefix('+').or_else(|| s.strip_prefix('-')) else {
        return false;
    };
    let Some((h, rest)) = digits(rest, 2) else {
        return false;
    };
    let Some((m, rest)) = rest.strip_prefix(':').and_then(|r| digits(r, 2)) else {
        return false;
    };
    rest.is_empty() && m <= 59 && (h < 14 || (h == 14 && m == 0))
}

/// R4 `dateTime`: a date of any precision, or a full date with a time and a zone.
pub fn is_date_time(s: &str) -> bool {
    let Some(rest) = date(s) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    s.len() - rest.len() == 10 && is_time_and_zone(rest)
}

/// R4 `instant`: a full date, a time and a zone.
pub fn is_instant(s: &str) -> bool {
    date(s).is_some_and(|rest| s.len() - rest.len() == 10 && is_time_and_zone(rest))
}

fn is_time_and_zone(rest: &str) -> bool {
    rest.strip_prefix('T').and_then(time).is_some_and(zone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lexical_forms() {
        let ok = |p, v: Value| assert_eq!(check(p, &v), Ok(()), "{p:?} {v}");
        let bad = |p, v: Value| assert!(check(p, &v).is_err(), "{p:?} {v}");
        for s in [
            "2013",
            "2013-06",
            "2013-06-08",
            "2013-06-08T10:57:34+01:00",
            "2013-06-08T10:57:34.5Z",
            "2016-02-29T23:59:60-14:00",
        ] {
            ok(Prim::DateTime, json!(s));
        }
        for s in [
            "13",
            "2013-6",
            "2013-06-08T10:57",
            "2013-06-08T10:57:34",
            "0000",
            "2026-13-45",
            "2026-02-30",
            "2026-02-30T10:00:00Z",
            "2013-06-08T10:57:34+14:30",
            "2013-06-08 10:57:34Z",
            "June 2013",
            "",
        ] {
            bad(Prim::DateTime, json!(s));
        }
        ok(Prim::Date, json!("2024-02-29"));
        bad(Prim::Date, json!("2023-02-29"));
        bad(Prim::Date, json!("26/11/2026"));
        bad(Prim::Date, json!("2013-06-08T10:57:34Z"));
        ok(Prim::Time, json!("23:59:59.999"));
        bad(Prim::Time, json!("24:00:00"));
        bad(Prim::Time, json!("10:00"));
        ok(Prim::Instant, json!("2013-06-08T10:57:34Z"));
        bad(Prim::Instant, json!("2013-06-08"));
        ok(Prim::Integer, json!(-2147483648i64));
        bad(Prim::Integer, json!(2147483648i64));
        bad(Prim::Integer, json!(1.0));
        bad(Prim::Integer, json!("6"));
        bad(Prim::Integer, json!(true));
        bad(Prim::UnsignedInt, json!(-1));
        bad(Prim::PositiveInt, json!(0));
        ok(Prim::Decimal, json!(1.5));
        bad(Prim::Decimal, json!("1.5"));
        bad(Prim::Boolean, json!("true"));
        bad(Prim::String, json!(""));
        bad(Prim::String, json!("a\u{0}b"));
        ok(Prim::String, json!("a\tb\r\nc"));
        bad(Prim::Code, json!(" a"));
        bad(Prim::Code, json!("a  b"));
        ok(Prim::Code, json!("a b"));
        ok(Prim::Id, json!("A-1.b"));
        bad(Prim::Id, json!("a_b"));
        bad(Prim::Uri, json!("a b"));
        ok(Prim::Oid, json!("urn:oid:2.16.840.1.113883"));
        bad(Prim::Oid, json!("urn:oid:3.1"));
        ok(
            Prim::Uuid,
            json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520"),
        );
        bad(
            Prim::Uuid,
            json!("urn:uuid:C757873D-ec9a-4326-a141-556f43239520"),
        );
        ok(Prim::Base64Binary, json!("aGVsbG8="));
        bad(Prim::Base64Binary, json!("aGVsbG8"));
        ok(Prim::CodeOf(&["a", "b"]), json!("b"));
        bad(Prim::CodeOf(&["a", "b"]), json!("c"));
    }
}
