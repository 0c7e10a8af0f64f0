//! The JSON text of a body, around the parser: the pass before it ([`prescan`]:
//! nesting depth, surrogate pairs) and, for a body refused, where and what its fault
//! is ([`crate::domain::malformed`] for those inside strings).

use crate::base::bytes::find2;
use crate::domain::malformed::{hex_unit, Fault};
use crate::domain::validate::{Invalid, Rules};

/// Where and why simd-json refused `body`: the first fault, between the one it reports
/// (its offset for a fault inside a string is 0 or past it: [`crate::domain::malformed`]
/// finds that one) and an unpaired surrogate escape [`prescan`] found at `unpaired`.
pub(super) fn malformed(body: &[u8], e: &simd_json::Error, unpaired: Option<usize>) -> Invalid {
    use simd_json::ErrorType as E;
    let at = e.index();
    let found = match e.error() {
        E::InvalidNumber | E::InvalidExponent | E::Overflow => Some((at, Fault::Number)),
        // What the string stage reports, at offset 0 or past where it is: look.
        E::InvalidEscape
        | E::InvalidUnicodeCodepoint
        | E::InvalidUnicodeEscape
        | E::InvalidUtf8
        | E::UnterminatedString
        | E::Eof => crate::domain::malformed::in_strings(body),
        E::Syntax if at == 0 => crate::domain::malformed::in_strings(body),
        // Anything else is out of place where simd-json says.
        _ => Some((at, Fault::Syntax)),
    };
    let surrogate = unpaired.map(|at| (at, Fault::Surrogate));
    let (at, fault) = match (found, surrogate) {
        (Some(found), Some(surrogate)) => std::cmp::min_by_key(found, surrogate, |f| f.0),
        (found, surrogate) => found.or(surrogate).unwrap_or((at, Fault::Syntax)),
    };
    Invalid::Malformed(at, fault)
}

/// One pass over a body before any parser sees it: arrays and objects nest at most
/// `max` levels (brackets inside strings aside), and every surrogate escape is half of
/// a pair, high then low. simd-json reads a lone high one as U+0000 (two patients'
/// ids alike) and pairs a high one with whatever `\u` escape follows; serde_json and
/// PostgreSQL refuse both. So no parser sees a body deeper than the rule, and every
/// reader of a stored body can read it.
/// With [`Rules::Stored`], only the nesting is checked: pairing came later. The
/// surrogate fault named is the first; the caller may find an earlier fault of another
/// kind with the parser.
pub fn prescan(json: &[u8], max: usize, rules: Rules) -> Result<(), Invalid> {
    let pairs = rules == Rules::Create;
    let (mut depth, mut i) = (0usize, 0);
    // The first unpaired surrogate escape.
    let mut unpaired: Option<usize> = None;
    while let Some(&b) = json.get(i) {
        i += 1;
        match b {
            b'"' => match string_end(json, i, pairs, &mut unpaired) {
                Some(end) => i = end,
                None => break,
            },
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(Invalid::TooDeep);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    // The whole body was scanned for depth first: a surrogate fault never lets a body
    // deeper than the rule reach a parser.
    match unpaired {
        Some(at) => Err(Invalid::Malformed(at, Fault::Surrogate)),
        None => Ok(()),
    }
}

/// Just past the closing quote of the string whose text starts at `i` (escapes
/// skipped, surrogates checked when `pairs`); `None` when the body ends first. Most
/// of a body is strings: the search for a quote or backslash is [`find2`]'s.
#[inline]
fn string_end(
    json: &[u8],
    mut i: usize,
    pairs: bool,
    unpaired: &mut Option<usize>,
) -> Option<usize> {
    loop {
        let at = i + find2(json.get(i..)?, b'"', b'\\')?;
        if json[at] == b'"' {
            return Some(at + 1);
        }
        i = at
            + if pairs {
                escape_len(json, at, unpaired)
            } else {
                2
            };
    }
}

/// The UTF-16 unit of a `\uXXXX` escape at `at`, if one is there.
#[inline]
fn unit_at(json: &[u8], at: usize) -> Option<u16> {
    (json.get(at..at + 2) == Some(b"\\u"))
        .then(|| json.get(at + 2..at + 6).and_then(hex_unit))
        .flatten()
}

/// The length of the escape whose backslash is at `at`, a surrogate pair counted
/// whole; the first surrogate escape that is not half of a pair goes into `unpaired`.
#[inline]
fn escape_len(json: &[u8], at: usize, unpaired: &mut Option<usize>) -> usize {
    let high = |unit: u16| (0xD800..0xDC00).contains(&unit);
    let low = |unit: u16| (0xDC00..0xE000).contains(&unit);
    match unit_at(json, at) {
        // A high one must be followed at once by a low one.
        Some(unit) if high(unit) && unit_at(json, at + 6).is_some_and(low) => 12,
        Some(unit) if high(unit) || low(unit) => {
            unpaired.get_or_insert(at);
            6
        }
        Some(_) => 6,
        // Another escape (a malformed one is the parser's to refuse).
        None => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prescan_vectors() {
        let surrogate = |at| Err(Invalid::Malformed(at, Fault::Surrogate));
        let cases: &[(&[u8], Rules, Result<(), Invalid>)] = &[
            (br#"{"a":"b"}"#, Rules::Create, Ok(())),
            (
                br#"{"a":"\ud83d\ude00 \uD801\uDC00"}"#,
                Rules::Create,
                Ok(()),
            ),
            // An escaped backslash, then text: no escape, no surrogate.
            (br#"{"a":"\\ud800"}"#, Rules::Create, Ok(())),
            // An escaped backslash before the closing quote ends the string there.
            (br#"{"a":"\\","b":"\ud800"}"#, Rules::Create, surrogate(15)),
            (br#"{"a":"\ud800"}"#, Rules::Create, surrogate(6)),
            (br#"{"a":"\ud800x"}"#, Rules::Create, surrogate(6)),
            (br#"{"a":"\ud800\u0041"}"#, Rules::Create, surrogate(6)),
            (br#"{"a":"\ud800\ue000"}"#, Rules::Create, surrogate(6)),
            (br#"{"a":"\ud800\n"}"#, Rules::Create, surrogate(6)),
            (br#"{"a":"x\udc00"}"#, Rules::Create, surrogate(7)),
            // The first of two is named.
            (
                br#"{"a":"\udc00","b":"\ud800"}"#,
                Rules::Create,
                surrogate(6),
            ),
            // Malformed escapes and a cut body are the parser's to refuse.
            (br#"{"a":"\u12"}"#, Rules::Create, Ok(())),
            (br#"{"a":"\"#, Rules::Create, Ok(())),
            (br#"{"a":"\ud8"#, Rules::Create, Ok(())),
            // Stored bodies: pairing is not checked, depth is.
            (br#"{"a":"\ud800"}"#, Rules::Stored, Ok(())),
            (br#"[[[["\ud800"]]]]"#, Rules::Stored, Err(Invalid::TooDeep)),
            // Depth first, whatever came before it; brackets in strings do not count.
            (br#"[["\ud800",[["#, Rules::Create, Err(Invalid::TooDeep)),
            (br#"[["[[[[[["]]"#, Rules::Create, Ok(())),
        ];
        for (json, rules, want) in cases {
            assert_eq!(
                prescan(json, 3, *rules),
                *want,
                "{}",
                String::from_utf8_lossy(json)
            );
        }
    }
}
