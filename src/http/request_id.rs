//! `X-Request-Id`: the caller's, when it is usable (1 to 64 visible ASCII characters,
//! no quote or backslash, so it goes into a header and a JSON log line as it is), else
//! one the shard makes up: `<process start in µs, hex>-<shard>-<count>`, unique across
//! shards and restarts. It is echoed in the response and written to the access log.
//! Held inline: no allocation per request.

use std::fmt::Write;

use crate::http::parse::MAX_HEADERS_CAP;

/// Longest request id kept.
pub const MAX: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestId {
    bytes: [u8; MAX],
    len: u8,
}

impl RequestId {
    /// The caller's id, if usable.
    pub fn from_header(value: &[u8]) -> Option<RequestId> {
        let usable = |b: &u8| (0x21..=0x7e).contains(b) && *b != b'"' && *b != b'\\';
        if value.is_empty() || value.len() > MAX || !value.iter().all(usable) {
            return None;
        }
        let mut id = RequestId {
            bytes: [0; MAX],
            len: value.len() as u8,
        };
        id.bytes[..value.len()].copy_from_slice(value);
        Some(id)
    }

    /// The start of the ids made up by `shard` of a process started at `start_us`
    /// (formatted once; [`RequestId::numbered`] adds the count).
    pub fn prefix(start_us: u64, shard: usize) -> RequestId {
        let mut id = RequestId {
            bytes: [0; MAX],
            len: 0,
        };
        let _ = write!(id, "{start_us:x}-{shard}-");
        id
    }

    /// This prefix followed by `count`.
    pub fn numbered(mut self, count: u64) -> RequestId {
        let _ = self.write_str(itoa::Buffer::new().format(count));
        self
    }

    /// For a refusal of the request at the start of `buf`: `None` while its head is
    /// not complete (no request to name); else the caller's usable id, if it sent one,
    /// and the request target. Whatever this project's framing rules then said of the head, httparse
    /// read it whole, so the caller can match the refusal to what it sent.
    pub fn of_refused(buf: &[u8]) -> Option<(Option<RequestId>, &str, &str)> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
        let mut head = httparse::Request::new(&mut fields);
        let Ok(httparse::Status::Complete(_)) = head.parse(buf) else {
            return None;
        };
        let caller = head
            .headers
            .iter()
            .find(|field| field.name.eq_ignore_ascii_case("x-request-id"))
            .and_then(|field| RequestId::from_header(field.value));
        Some((
            caller,
            head.method.unwrap_or_default(),
            head.path.unwrap_or_default(),
        ))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Only visible ASCII goes in.
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }
}

impl Write for RequestId {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let at = usize::from(self.len);
        let end = at + s.len();
        if end > MAX {
            return Err(std::fmt::Error);
        }
        self.bytes[at..end].copy_from_slice(s.as_bytes());
        self.len = end as u8;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_id_is_kept_only_when_it_is_safe_to_echo() {
        let id = RequestId::from_header(b"abc-123_x.y").unwrap();
        assert_eq!(id.as_str(), "abc-123_x.y");
        for bad in [
            &b""[..],
            b"has space",
            b"quo\"te",
            b"back\\slash",
            b"\x01",
            &[b'a'; 65],
        ] {
            assert_eq!(RequestId::from_header(bad), None, "{bad:?}");
        }
        assert!(RequestId::from_header(&[b'a'; 64]).is_some());
    }

    #[test]
    fn made_up_ids_name_the_process_the_shard_and_the_count() {
        let id = RequestId::prefix(0x1234_5678_9abc, 3).numbered(42);
        assert_eq!(id.as_str(), "123456789abc-3-42");
        let longest = RequestId::prefix(u64::MAX, usize::MAX).numbered(u64::MAX);
        assert!(longest.as_str().len() <= MAX);
    }
}
