//! A resumable decoder for `Transfer-Encoding: chunked` (RFC 9112 section 7.1).
//!
//! It is fed the bytes after the head each time more arrive, remembers how far it got,
//! and appends chunk data to the connection's reusable body buffer, so a body trickling
//! in byte by byte costs linear time. Everything it does not accept is a [`Reject`].

use crate::http::parse::is_tchar;
use crate::http::reject::Reject;

/// At most 16 hex digits: a chunk size always fits in 64 bits.
const MAX_SIZE_DIGITS: usize = 16;
/// Longest chunk extension accepted, after the size.
const MAX_EXTENSION: usize = 256;
/// Trailer section caps: bytes and field lines.
const MAX_TRAILER_BYTES: usize = 4096;
const MAX_TRAILERS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size,
    Data { remaining: u64 },
    DataEnd,
    Trailers { bytes: usize, lines: usize },
}

/// Where a chunked body stands.
#[derive(Clone, Copy, Debug)]
pub struct Decoder {
    state: State,
    /// Offset in the raw body bytes up to which everything has been consumed.
    pos: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::Size,
            pos: 0,
        }
    }
}

/// What one step of the decoder came to.
enum Progress {
    /// The state advanced; keep going.
    Next,
    /// The bytes so far are consumed; read more.
    NeedMore,
    /// The body is complete.
    Done,
}

impl Decoder {
    /// Consumes what it can of `raw` (all body bytes received so far, from the first
    /// chunk-size line on). Returns `Ok(Some(n))` once the whole body, trailers and the
    /// final CRLF took `n` raw bytes; `Ok(None)` when more bytes are needed.
    pub fn feed(
        &mut self,
        raw: &[u8],
        out: &mut Vec<u8>,
        max_body: usize,
    ) -> Result<Option<usize>, Reject> {
        loop {
            let progress = match self.state {
                State::Size => self.size_line(raw, out.len(), max_body)?,
                State::Data { remaining } => self.data(raw, out, remaining),
                State::DataEnd => self.data_end(raw)?,
                State::Trailers { bytes, lines } => self.trailer(raw, bytes, lines)?,
            };
            match progress {
                Progress::Next => {}
                Progress::NeedMore => return Ok(None),
                Progress::Done => return Ok(Some(self.pos)),
            }
        }
    }

    /// A chunk-size line; a size that would take the body past `max_body` is refused
    /// before any of its data is read.
    fn size_line(
        &mut self,
        raw: &[u8],
        body_len: usize,
        max_body: usize,
    ) -> Result<Progress, Reject> {
        let limit = MAX_SIZE_DIGITS + MAX_EXTENSION + 2;
        let Some(line) = self.line(raw, limit, Reject::ChunkExtension)? else {
            return Ok(Progress::NeedMore);
        };
        let size = parse_size_line(line)?;
        if (body_len as u64).saturating_add(size) > max_body as u64 {
            return Err(Reject::BodyTooLarge);
        }
        self.pos += line.len() + 2;
        self.state = if size == 0 {
            State::Trailers { bytes: 0, lines: 0 }
        } else {
            State::Data { remaining: size }
        };
        Ok(Progress::Next)
    }

    /// As much of the chunk's data as has arrived.
    fn data(&mut self, raw: &[u8], out: &mut Vec<u8>, remaining: u64) -> Progress {
        let available = raw.len() - self.pos;
        if available == 0 {
            return Progress::NeedMore;
        }
        // Bounded by max_body in size_line, so it fits in usize.
        let take = remaining.min(available as u64) as usize;
        out.extend_from_slice(&raw[self.pos..self.pos + take]);
        self.pos += take;
        let remaining = remaining - take as u64;
        self.state = if remaining == 0 {
            State::DataEnd
        } else {
            State::Data { remaining }
        };
        Progress::Next
    }

    /// The CRLF that must follow a chunk's data exactly.
    fn data_end(&mut self, raw: &[u8]) -> Result<Progress, Reject> {
        match &raw[self.pos..] {
            [] | [b'\r'] => Ok(Progress::NeedMore),
            [b'\r', b'\n', ..] => {
                self.pos += 2;
                self.state = State::Size;
                Ok(Progress::Next)
            }
            _ => Err(Reject::ChunkDataLength),
        }
    }

    /// One trailer line, or the empty line that ends the body.
    fn trailer(&mut self, raw: &[u8], bytes: usize, lines: usize) -> Result<Progress, Reject> {
        let limit = MAX_TRAILER_BYTES.saturating_sub(bytes) + 2;
        let Some(line) = self.line(raw, limit, Reject::TrailersTooLarge)? else {
            return Ok(Progress::NeedMore);
        };
        self.pos += line.len() + 2;
        if line.is_empty() {
            return Ok(Progress::Done);
        }
        if lines + 1 > MAX_TRAILERS {
            return Err(Reject::TrailersTooLarge);
        }
        check_trailer(line)?;
        self.state = State::Trailers {
            bytes: bytes + line.len() + 2,
            lines: lines + 1,
        };
        Ok(Progress::Next)
    }

    /// The next CRLF-terminated line at `pos`, without its CRLF; `None` if incomplete.
    fn line<'r>(
        &self,
        raw: &'r [u8],
        max: usize,
        too_long: Reject,
    ) -> Result<Option<&'r [u8]>, Reject> {
        let rest = &raw[self.pos..];
        let window = &rest[..rest.len().min(max)];
        match window.iter().position(|&b| b == b'\n') {
            Some(0) => Err(Reject::ChunkLineEnding),
            Some(nl) if rest[nl - 1] != b'\r' => Err(Reject::ChunkLineEnding),
            Some(nl) => {
                let line = &rest[..nl - 1];
                if line.contains(&b'\r') {
                    return Err(Reject::ChunkLineEnding);
                }
                Ok(Some(line))
            }
            None if rest.len() >= max => Err(too_long),
            None => Ok(None),
        }
    }
}

/// `chunk-size [ chunk-ext ]`: 1 to 16 hex digits, then nothing or `;` extensions.
fn parse_size_line(line: &[u8]) -> Result<u64, Reject> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > MAX_SIZE_DIGITS {
        return Err(Reject::ChunkSize);
    }
    let mut size: u64 = 0;
    for &d in &line[..digits] {
        let v = (d as char).to_digit(16).unwrap_or(0);
        size = (size << 4) | u64::from(v);
    }
    let ext = &line[digits..];
    if ext.is_empty() {
        return Ok(size);
    }
    // BWS is allowed before ';' (RFC 9112 7.1.1); anything else after the digits is not
    // part of a size.
    let ext_start = ext
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(ext.len());
    if ext.get(ext_start) != Some(&b';') {
        return Err(Reject::ChunkSize);
    }
    if ext.len() > MAX_EXTENSION || !valid_extensions(&ext[ext_start..]) {
        return Err(Reject::ChunkExtension);
    }
    Ok(size)
}

/// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`.
fn valid_extensions(mut ext: &[u8]) -> bool {
    while !ext.is_empty() {
        ext = skip_ws(ext);
        let Some(rest) = ext.strip_prefix(b";") else {
            return false;
        };
        ext = skip_ws(rest);
        let name = ext.iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 {
            return false;
        }
        ext = skip_ws(&ext[name..]);
        if let Some(rest) = ext.strip_prefix(b"=") {
            ext = skip_ws(rest);
            if let Some(rest) = ext.strip_prefix(b"\"") {
                let Some(end) = quoted_end(rest) else {
                    return false;
                };
                ext = &rest[end..];
            } else {
                let value = ext.iter().take_while(|&&b| is_tchar(b)).count();
                if value == 0 {
                    return false;
                }
                ext = &ext[value..];
            }
            ext = skip_ws(ext);
        }
    }
    true
}

/// Index just past the closing quote of a quoted-string body, if well formed.
fn quoted_end(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' if i + 1 < s.len() && is_field_char(s[i + 1]) => i += 2,
            b if is_field_char(b) && b != b'\\' => i += 1,
            _ => return None,
        }
    }
    None
}

/// A trailer is a field line: `token ":" OWS value OWS`, value without controls.
fn check_trailer(line: &[u8]) -> Result<(), Reject> {
    let name = line.iter().take_while(|&&b| is_tchar(b)).count();
    if name == 0 || line.get(name) != Some(&b':') {
        return Err(Reject::TrailerInvalid);
    }
    if !line[name + 1..].iter().all(|&b| is_field_char(b)) {
        return Err(Reject::TrailerInvalid);
    }
    Ok(())
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// VCHAR, SP, HTAB or obs-text.
fn is_field_char(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}
