//! The request head: httparse does the tokenizing; this file adds what httparse leaves
//! to us (RFC 9112 framing and the strictness rules of DESIGN section 4) and turns the
//! head into a borrowed [`Head`]. "Need more bytes" is `Ok(None)`, never an error.

use crate::base::bytes::find2;
use crate::http::reject::Reject;

/// Upper bound for `limits.max_headers`; sizes the on-stack header array.
pub const MAX_HEADERS_CAP: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    /// Any other token: routed to 405 or 404, never to a handler.
    Other,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Patch,
        Method::Options,
    ];

    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }
}

/// How the body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// Hard limits, from the `[limits]` config section.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_head: usize,
    pub max_headers: usize,
    pub max_body: usize,
}

/// A parsed request head, borrowing from the connection's read buffer.
#[derive(Clone, Copy, Debug)]
pub struct Head<'b> {
    pub method: Method,
    pub path: &'b str,
    pub query: Option<&'b str>,
    pub http10: bool,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    pub framing: Framing,
    pub expect_continue: bool,
    pub content_type: Option<&'b [u8]>,
    pub authorization: Option<&'b [u8]>,
    /// The `Idempotency-Key` field's value, as sent (checked by the handler).
    pub idempotency_key: Option<&'b [u8]>,
    /// The first `X-Request-Id` field's value, as sent (checked where it is used).
    pub request_id: Option<&'b [u8]>,
    /// The first `Prefer` field's value (RFC 7240).
    pub prefer: Option<&'b [u8]>,
    /// The first `Accept` field's value.
    pub accept: Option<&'b [u8]>,
    /// The last `X-Forwarded-For` field's value: a trusted proxy appends the client's
    /// address to it (read only for connections from `trusted_proxies`).
    pub forwarded_for: Option<&'b [u8]>,
    /// Bytes of the head, including the final empty line.
    pub len: usize,
}

/// The path and query of a request target: origin-form (`/path?query`), or
/// absolute-form (`http://host/path?query`, RFC 9112 3.2.2: a server must accept it;
/// its path is what routes, an empty one is `/`). The authority and asterisk forms
/// (CONNECT and a server-wide OPTIONS, neither served here) are refused, and so is a
/// fragment (`#`), which no form of request target has.
fn split_target(target: &str) -> Result<(&str, Option<&str>), Reject> {
    if target.contains('#') {
        return Err(Reject::RequestTarget);
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    if path.starts_with('/') {
        return Ok((path, query));
    }
    let scheme = path.find("://").ok_or(Reject::RequestTarget)?;
    let name = &path[..scheme];
    if !name.eq_ignore_ascii_case("http") && !name.eq_ignore_ascii_case("https") {
        return Err(Reject::RequestTarget);
    }
    let rest = &path[scheme + 3..];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() || !is_host(authority.as_bytes()) {
        return Err(Reject::RequestTarget);
    }
    Ok((if path.is_empty() { "/" } else { path }, query))
}

/// Parses the head at the start of `buf`. `Ok(None)`: incomplete, read more.
pub fn parse_head<'b>(buf: &'b [u8], limits: &Limits) -> Result<Option<Head<'b>>, Reject> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
    let mut req = httparse::Request::new(&mut headers[..limits.max_headers.min(MAX_HEADERS_CAP)]);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        // Incomplete at max_head bytes: complete, it would be over the limit.
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_head => {
            return Err(size_reject(buf, limits))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(classify(e, buf)),
    };
    if len > limits.max_head {
        return Err(size_reject(buf, limits));
    }
    check_line_endings(&buf[..len])?;

    let http10 = req.version == Some(0);
    let method = Method::from_token(req.method.unwrap_or(""));
    let (path, query) = split_target(req.path.unwrap_or(""))?;

    let mut fields = Fields::default();
    for header in req.headers.iter() {
        fields.add(header.name, header.value)?;
    }
    let framing = fields.framing(http10, limits)?;
    let keep_alive = if http10 {
        fields.keep_alive && !fields.close
    } else {
        !fields.close
    };
    // RFC 9112 3.2: exactly one Host in HTTP/1.1; never two, in any version.
    match fields.hosts {
        0 if !http10 => return Err(Reject::MissingHost),
        0 | 1 => {}
        _ => return Err(Reject::DuplicateHost),
    }
    Ok(Some(Head {
        method,
        path,
        query,
        http10,
        keep_alive,
        framing,
        // HTTP/1.0 clients cannot expect 100 (RFC 9110 10.1.1): ignore it there.
        expect_continue: fields.expect_continue && !http10,
        content_type: fields.content_type,
        authorization: fields.authorization,
        idempotency_key: fields.idempotency_key,
        request_id: fields.request_id,
        prefer: fields.prefer,
        accept: fields.accept,
        forwarded_for: fields.forwarded_for,
        len,
    }))
}

/// For a head over `max_head_bytes` (`head` holds at least that many bytes): 414 when
/// the request line alone is over the limit, 431 when the head is.
pub(crate) fn size_reject(head: &[u8], limits: &Limits) -> Reject {
    let first_line_ends = head[..limits.max_head.min(head.len())].contains(&b'\n');
    if first_line_ends {
        Reject::HeadTooLarge
    } else {
        Reject::UriTooLong
    }
}

/// RFC 9110 7.2 / RFC 3986 3.2.2: `host [ ":" port ]`, or empty (allowed when the
/// target has no authority). The host is an IPv6 literal in brackets, or a reg-name
/// (which an IPv4 address also is): unreserved characters, sub-delims and `%HH`. The
/// port is at most 65535. Nothing else: no spaces, `/`, `@`, a second `:`, a stray
/// bracket or a bad escape. (IPvFuture literals are refused: no client sends one.)
fn is_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    let (host_ok, port) = if let Some(literal) = value.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let ipv6 = std::str::from_utf8(&literal[..end])
            .is_ok_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok());
        (ipv6, &literal[end + 1..])
    } else {
        let colon = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        let (host, port) = value.split_at(colon);
        (!host.is_empty() && is_reg_name(host), port)
    };
    host_ok
        && match port {
            [] => true,
            [b':', digits @ ..] => {
                digits.len() <= 5
                    && digits.iter().all(u8::is_ascii_digit)
                    && digits
                        .iter()
                        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
                        <= 65535
            }
            _ => false,
        }
}

/// RFC 3986 reg-name: unreserved, sub-delims and percent-encoded octets.
fn is_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' => {
                if !host
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
                {
                    return false;
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) => i += 1,
            _ => return false,
        }
    }
    true
}

/// httparse tolerates bare LF; RFC 9112 lets us refuse it, and we do.
fn check_line_endings(head: &[u8]) -> Result<(), Reject> {
    let mut i = 0;
    while let Some(k) = find2(&head[i..], b'\r', b'\n') {
        let at = i + k;
        match head[at] {
            b'\n' if at == 0 || head[at - 1] != b'\r' => return Err(Reject::BareLf),
            b'\r' if head.get(at + 1) != Some(&b'\n') => return Err(Reject::BareCr),
            _ => {}
        }
        i = at + 1;
    }
    Ok(())
}

/// Names the rule an httparse error broke, looking at the offending bytes (cold path).
/// Only the first offending line decides, so the answer does not depend on how much of
/// the stream has arrived.
fn classify(e: httparse::Error, buf: &[u8]) -> Reject {
    match e {
        httparse::Error::HeaderName => {
            // Skip the request line; find the first field line httparse would refuse.
            for line in buf.split(|&b| b == b'\n').skip(1) {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() {
                    break;
                }
                if line[0] == b' ' || line[0] == b'\t' {
                    return Reject::ObsFold;
                }
                let name = line.iter().take_while(|&&b| is_tchar(b)).count();
                match line.get(name) {
                    Some(b' ' | b'\t') => return Reject::SpaceBeforeColon,
                    Some(b':') => continue,
                    _ => return Reject::HeaderName,
                }
            }
            Reject::HeaderName
        }
        httparse::Error::HeaderValue => Reject::HeaderValue,
        // httparse reports where it stopped, not why; guessing from later bytes would make
        // the answer depend on how much has arrived.
        httparse::Error::NewLine => Reject::LineEnding,
        httparse::Error::Version => Reject::Version,
        httparse::Error::TooManyHeaders => Reject::TooManyHeaders,
        httparse::Error::Token | httparse::Error::Status => Reject::RequestLine,
    }
}

/// What the header walk learns; one pass over the fields.
#[derive(Default)]
struct Fields<'b> {
    hosts: u32,
    content_length: Option<usize>,
    content_length_overflow: bool,
    transfer_encoding: bool,
    chunked_count: u32,
    chunked_last: bool,
    unknown_coding: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    content_type: Option<&'b [u8]>,
    authorization: Option<&'b [u8]>,
    idempotency_key: Option<&'b [u8]>,
    request_id: Option<&'b [u8]>,
    prefer: Option<&'b [u8]>,
    accept: Option<&'b [u8]>,
    forwarded_for: Option<&'b [u8]>,
}

impl<'b> Fields<'b> {
    fn add(&mut self, name: &str, value: &'b [u8]) -> Result<(), Reject> {
        let value = trim_ows(value);
        if name.eq_ignore_ascii_case("host") {
            self.hosts += 1;
            if !is_host(value) {
                return Err(Reject::InvalidHost);
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            self.content_length(value)?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.transfer_encoding = true;
            for coding in value.split(|&b| b == b',') {
                let coding = trim_ows(coding);
                if coding.is_empty() {
                    return Err(Reject::TransferEncodingInvalid);
                }
                self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                if self.chunked_last {
                    self.chunked_count += 1;
                } else {
                    self.unknown_coding = true;
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for option in value.split(|&b| b == b',') {
                let option = trim_ows(option);
                self.close |= option.eq_ignore_ascii_case(b"close");
                self.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if self.expect_continue {
                return Err(Reject::DuplicateHeader);
            }
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err(Reject::ExpectUnsupported);
            }
            self.expect_continue = true;
        } else if name.eq_ignore_ascii_case("content-type") {
            set_once(&mut self.content_type, value)?;
        } else if name.eq_ignore_ascii_case("authorization") {
            set_once(&mut self.authorization, value)?;
        } else if name.eq_ignore_ascii_case("idempotency-key") {
            set_once(&mut self.idempotency_key, value)?;
        } else if name.eq_ignore_ascii_case("x-request-id") {
            // A tracing aid, not a framing field: a second one is ignored, not refused.
            self.request_id.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("prefer") {
            self.prefer.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("accept") {
            self.accept.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            self.forwarded_for = Some(value);
        }
        Ok(())
    }

    fn content_length(&mut self, value: &[u8]) -> Result<(), Reject> {
        if value.contains(&b',') {
            return Err(Reject::ContentLengthList);
        }
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(Reject::ContentLengthInvalid);
        }
        let mut n: usize = 0;
        for &d in value {
            match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(usize::from(d - b'0')))
            {
                Some(next) => n = next,
                None => {
                    // Too large to represent: far over any body limit, but still
                    // checked against duplicates first so the reason is the right one.
                    self.content_length_overflow = true;
                    n = usize::MAX;
                    break;
                }
            }
        }
        match self.content_length {
            Some(previous) if previous != n => Err(Reject::ContentLengthConflict),
            _ => {
                self.content_length = Some(n);
                Ok(())
            }
        }
    }

    fn framing(&self, http10: bool, limits: &Limits) -> Result<Framing, Reject> {
        if self.transfer_encoding {
            if http10 {
                return Err(Reject::TransferEncodingHttp10);
            }
            if self.content_length.is_some() {
                return Err(Reject::LengthAndChunked);
            }
            if self.unknown_coding {
                return Err(Reject::TransferEncodingUnsupported);
            }
            if self.chunked_count != 1 || !self.chunked_last {
                return Err(Reject::TransferEncodingInvalid);
            }
            return Ok(Framing::Chunked);
        }
        match self.content_length {
            None | Some(0) => Ok(Framing::None),
            Some(_) if self.content_length_overflow => Err(Reject::ContentLengthInvalid),
            Some(n) if n > limits.max_body => Err(Reject::BodyTooLarge),
            Some(n) => Ok(Framing::Length(n)),
        }
    }
}

pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn set_once<'b>(slot: &mut Option<&'b [u8]>, value: &'b [u8]) -> Result<(), Reject> {
    if slot.is_some() {
        return Err(Reject::DuplicateHeader);
    }
    *slot = Some(value);
    Ok(())
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}
