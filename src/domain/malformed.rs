//! Where and why a body is not acceptable JSON, for the 400 that says so. simd-json
//! reports a fault inside a string (a raw control character, a bad escape, invalid
//! UTF-8) at offset 0, so for those this module finds the fault itself; it runs only on
//! bodies already refused, so the request path never pays for it. And a FHIR resource
//! must name each property once ([`names_once`]), on its own, colder path.

use std::collections::HashSet;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Why a body is not JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Something out of place: a missing comma, colon or bracket, a bare word,
    /// bytes after the value.
    Syntax,
    /// A malformed number (`01`, `1.`) or one past what a 64-bit float holds (`1e999`).
    Number,
    /// A raw control character (U+0000 to U+001F) inside a string.
    Control,
    /// A backslash escape JSON does not define, or `\u` without four hex digits.
    Escape,
    /// A surrogate escape that is not half of a high-low pair (found by
    /// `validate::prescan`, the pass before the parser).
    Surrogate,
    Utf8,
    Unterminated,
}

impl Fault {
    /// What follows "malformed JSON at byte N" in the message; JSON-safe.
    pub fn message(self) -> &'static str {
        match self {
            Fault::Syntax => "",
            Fault::Number => ": a number that is malformed or out of range (past 1.8e308)",
            Fault::Control => ": a control character inside a string must be escaped",
            Fault::Escape => ": an escape that JSON does not define",
            Fault::Surrogate => ": an unpaired surrogate escape",
            Fault::Utf8 => ": invalid UTF-8",
            Fault::Unterminated => ": a string that never ends",
        }
    }
}

/// The first fault inside a string of `json`, and its byte offset; `None` when its
/// strings are sound (the fault is elsewhere).
pub fn in_strings(json: &[u8]) -> Option<(usize, Fault)> {
    if let Err(e) = std::str::from_utf8(json) {
        return Some((e.valid_up_to(), Fault::Utf8));
    }
    let (mut i, mut string_at) = (0, None);
    while i < json.len() {
        let b = json[i];
        if string_at.is_none() {
            if b == b'"' {
                string_at = Some(i);
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => string_at = None,
            b'\\' => match json.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 1,
                // Surrogate pairing is `validate::prescan`'s, the pass before the
                // parser; here, only the four hex digits.
                Some(b'u') if json.get(i + 2..i + 6).and_then(hex_unit).is_some() => i += 5,
                _ => return Some((i, Fault::Escape)),
            },
            0x00..=0x1f => return Some((i, Fault::Control)),
            _ => {}
        }
        i += 1;
    }
    string_at.map(|began| (began, Fault::Unterminated))
}

/// Whether every object in `json` names each property once (FHIR JSON allows each
/// property once; a parser that keeps the last of two would check one copy while a
/// reader sees the other). The error names the first repeated one, and where.
pub fn names_once(json: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<Unique>(json).map(|_| ())
}

/// A JSON value whose objects each name a property at most once.
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Unique, D::Error> {
        deserializer.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if seen.contains(&name) {
                return Err(de::Error::custom(format_args!(
                    "the property {name:?} is given more than once"
                )));
            }
            map.next_value::<Unique>()?;
            seen.insert(name);
        }
        Ok(Unique)
    }
}

/// Four hex digits as a UTF-16 code unit (no sign, unlike `from_str_radix`).
pub fn hex_unit(digits: &[u8]) -> Option<u16> {
    digits.iter().try_fold(0u16, |unit, &d| {
        let value = (d as char).to_digit(16)?;
        Some(unit << 4 | value as u16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_inside_strings_are_found_where_they_are() {
        type Case<'a> = (&'a [u8], Option<(usize, Fault)>);
        let cases: &[Case] = &[
            (br#"{"a":"b"}"#, None),
            (br#"{"a":"\u00e9 \ud83d\ude00 \" \\ \/"}"#, None),
            (b"{\"a\":\"x\x01\"}", Some((7, Fault::Control))),
            (b"{\"a\":\"x\ty\"}", Some((7, Fault::Control))),
            (b"{\"a\":\"x\xff\"}", Some((7, Fault::Utf8))),
            (br#"{"a":"\q"}"#, Some((6, Fault::Escape))),
            (br#"{"a":"\u12"}"#, Some((6, Fault::Escape))),
            (br#"{"a":"\u+123"}"#, Some((6, Fault::Escape))),
            (br#"{"a":"x"#, Some((5, Fault::Unterminated))),
            // Outside strings is not this module's: a syntax fault is simd-json's.
            (br#"{"a":1,}"#, None),
        ];
        for (json, want) in cases {
            assert_eq!(in_strings(json), *want, "{}", String::from_utf8_lossy(json));
        }
    }
}
