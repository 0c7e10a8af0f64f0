//! A stored resource as FHIR serves it: R4 has the server assign `id`,
//! `meta.versionId` and `meta.lastUpdated` on create (a client's are ignored), while
//! the record keeps the body exactly as received. So the FHIR read and
//! `Prefer: return=representation` give the stored bytes with those three set: every
//! other top-level member is copied byte for byte, in its order.

use serde_json::{Map, Value};

/// `body` (a stored resource: a JSON object) with `id`, `meta.versionId` (`1`: a
/// resource is never updated) and `meta.lastUpdated` set. `None` if `body` is not a
/// JSON object.
pub fn served(body: &[u8], id: &str, last_updated: &str) -> Option<Vec<u8>> {
    let members = members(body)?;
    let mut meta = match members.iter().find(|(k, _)| k == "meta") {
        Some((_, raw)) => serde_json::from_slice::<Map<String, Value>>(raw).ok()?,
        None => Map::new(),
    };
    meta.insert("versionId".into(), Value::from("1"));
    meta.insert("lastUpdated".into(), Value::from(last_updated));
    let id = serde_json::to_vec(id).ok()?;
    let meta = serde_json::to_vec(&meta).ok()?;
    let mut out = Vec::with_capacity(body.len() + meta.len() + 64);
    out.push(b'{');
    let put = |out: &mut Vec<u8>, key: &[u8], value: &[u8]| {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(key);
        out.push(b':');
        out.extend_from_slice(value);
    };
    let has = |name: &str| members.iter().any(|(k, _)| k == name);
    // `id` and `meta` go where they were, or else after `resourceType`.
    let mut placed = false;
    for (key, raw) in &members {
        let quoted = serde_json::to_vec(key).ok()?;
        match key.as_str() {
            "id" => put(&mut out, b"\"id\"", &id),
            "meta" => put(&mut out, b"\"meta\"", &meta),
            _ => put(&mut out, &quoted, raw),
        }
        if !placed && key == "resourceType" {
            placed = true;
            if !has("id") {
                put(&mut out, b"\"id\"", &id);
            }
            if !has("meta") {
                put(&mut out, b"\"meta\"", &meta);
            }
        }
    }
    out.push(b'}');
    Some(out)
}

/// The top-level members of a JSON object: each name (decoded) and its value's bytes.
fn members(body: &[u8]) -> Option<Vec<(String, &[u8])>> {
    let mut at = skip_ws(body, 0);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    let mut members = Vec::new();
    loop {
        at = skip_ws(body, at);
        match body.get(at)? {
            b'}' => return Some(members),
            b',' => at = skip_ws(body, at + 1),
            _ => {}
        }
        let key_end = string_end(body, at)?;
        let key: String = serde_json::from_slice(&body[at..key_end]).ok()?;
        at = skip_ws(body, key_end);
        if body.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_ws(body, at + 1);
        let end = value_end(body, start)?;
        members.push((key, &body[start..end]));
        at = end;
    }
}

fn skip_ws(b: &[u8], mut at: usize) -> usize {
    while b.get(at).is_some_and(|c| c.is_ascii_whitespace()) {
        at += 1;
    }
    at
}

/// The index just past the string starting at `at` (its opening quote).
fn string_end(b: &[u8], at: usize) -> Option<usize> {
    if b.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        match b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The index just past the value starting at `at` (trailing whitespace excluded).
fn value_end(b: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = at;
    let mut last = at;
    loop {
        match *b.get(i)? {
            b'"' => {
                i = string_end(b, i)?;
                last = i;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => return Some(last),
            b'}' | b']' => depth -= 1,
            b',' if depth == 0 => return Some(last),
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => {}
        }
        i += 1;
        last = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_and_meta_are_the_servers_and_the_rest_is_byte_for_byte() {
        let body = br#"{ "resourceType" : "QuestionnaireResponse", "id": "client",
            "meta": {"versionId": "7", "tag": [{"code": "P1"}]},
            "item": [ {"linkId": "a,}", "text": "x\"]"} ] , "status":"completed" }"#;
        let out = served(body, "s0-3", "2026-11-26T08:15:30Z").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            r#"{"resourceType":"QuestionnaireResponse","id":"s0-3","meta":{"lastUpdated":"2026-11-26T08:15:30Z","tag":[{"code":"P1"}],"versionId":"1"},"item":[ {"linkId": "a,}", "text": "x\"]"} ],"status":"completed"}"#
        );
        let bare = served(
            br#"{"resourceType":"QuestionnaireResponse","status":"completed"}"#,
            "s1-2",
            "t",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(bare).unwrap(),
            r#"{"resourceType":"QuestionnaireResponse","id":"s1-2","meta":{"lastUpdated":"t","versionId":"1"},"status":"completed"}"#
        );
        assert_eq!(served(b"[1]", "s0-1", "t"), None);
    }
}
