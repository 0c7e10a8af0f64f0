//! Percent-decoding of path parameters (RFC 3986 2.1), strictly: every `%` must start
//! two hex digits and the result must be UTF-8. Identifiers may hold anything a submit
//! accepts (spaces, `/`, non-ASCII); a client reads them back by percent-encoding them
//! in the path, as URL libraries do.

use std::borrow::Cow;

/// `text` with its escapes decoded; `None` for a malformed escape or bytes that are
/// not UTF-8. Borrows when there is nothing to decode (the usual case).
pub fn decode(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains('%') {
        return Some(Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let digits = std::str::from_utf8(hex).ok()?;
            if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(digits, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_and_malformed_ones_are_refused() {
        assert!(matches!(decode("P001"), Some(Cow::Borrowed("P001"))));
        assert_eq!(decode("P%201%2Fx").as_deref(), Some("P 1/x"));
        assert_eq!(decode("S%C3%A9").as_deref(), Some("Sé"));
        assert_eq!(decode("%25").as_deref(), Some("%"));
        for bad in ["%", "%2", "%zz", "a%2g", "%C3", "%+1"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
