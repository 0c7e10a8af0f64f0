//! Request framing over a connection's read buffer: finds where each request's head and
//! body end, request after request, however the bytes were split across reads.
//!
//! This is the one piece the connection loop, the table-driven vectors and the
//! randomized split test all drive, so what the tests prove is what the server runs.

use crate::http::chunked::Decoder;
use crate::http::parse::{parse_head, size_reject, Framing, Head, Limits};
use crate::http::reject::Reject;

/// A complete request: its head, its body (decoded if chunked) and the raw bytes it took.
#[derive(Debug)]
pub struct Request<'b> {
    pub head: Head<'b>,
    pub body: &'b [u8],
    pub consumed: usize,
}

#[derive(Debug)]
pub enum Step<'b> {
    /// More bytes are needed. `send_continue`: answer `100 Continue` now, once.
    /// `head`: the head, once it is complete and its body is still arriving (the
    /// connection decides there whether to admit the body at all).
    NeedMore {
        send_continue: bool,
        head: Option<Head<'b>>,
    },
    Request(Request<'b>),
}

/// Per-connection framing state for the request being received.
pub struct RequestParser {
    limits: Limits,
    /// Bytes of the pending head already searched for a line ending.
    scanned: usize,
    head_seen: bool,
    continue_sent: bool,
    /// The current request's body is chunked.
    chunked_body: bool,
    /// The current request's whole size, once its head announced a Content-Length.
    expected: Option<usize>,
    chunked: Decoder,
}

impl RequestParser {
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            scanned: 0,
            head_seen: false,
            continue_sent: false,
            chunked_body: false,
            expected: None,
            chunked: Decoder::default(),
        }
    }

    /// The whole current request's size in bytes (head and body), once its head has
    /// announced a Content-Length body that is still arriving: what must be held.
    pub fn expected_len(&self) -> Option<usize> {
        self.expected
    }

    /// Whether the current request's head is complete and its body is still arriving.
    pub fn in_body(&self) -> bool {
        self.head_seen
    }

    /// Whether that body is chunked (its framing takes room beyond the body itself).
    pub fn in_chunked_body(&self) -> bool {
        self.head_seen && self.chunked_body
    }

    /// Frames the request at the start of `buf` (the bytes not yet consumed). A chunked
    /// body is decoded into `body_buf`, which the returned request then borrows.
    pub fn next<'b>(
        &mut self,
        buf: &'b [u8],
        body_buf: &'b mut Vec<u8>,
    ) -> Result<Step<'b>, Reject> {
        if !self.head_seen {
            // A head can only complete once a line ending arrives: skip httparse until then,
            // so a head trickling in byte by byte is not re-parsed on every byte.
            let fresh = &buf[self.scanned.min(buf.len())..];
            self.scanned = buf.len();
            if !fresh.contains(&b'\n') {
                // No head is complete yet: at max_head bytes, it would be over the limit.
                if buf.len() >= self.limits.max_head {
                    return Err(size_reject(buf, &self.limits));
                }
                return Ok(Step::NeedMore {
                    send_continue: false,
                    head: None,
                });
            }
        }
        let Some(head) = parse_head(buf, &self.limits)? else {
            return Ok(Step::NeedMore {
                send_continue: false,
                head: None,
            });
        };
        if !self.head_seen {
            self.head_seen = true;
            body_buf.clear();
        }
        let rest = &buf[head.len..];
        let (body, consumed): (&'b [u8], usize) = match head.framing {
            Framing::None => (&[], head.len),
            Framing::Length(n) if rest.len() >= n => (&rest[..n], head.len + n),
            Framing::Length(n) => {
                self.expected = Some(head.len + n);
                return Ok(self.need_body(head));
            }
            Framing::Chunked => {
                self.chunked_body = true;
                match self.chunked.feed(rest, body_buf, self.limits.max_body)? {
                    Some(n) => {
                        let body_buf: &'b Vec<u8> = body_buf;
                        (body_buf.as_slice(), head.len + n)
                    }
                    None => return Ok(self.need_body(head)),
                }
            }
        };
        *self = RequestParser::new(self.limits);
        Ok(Step::Request(Request {
            head,
            body,
            consumed,
        }))
    }

    fn need_body<'b>(&mut self, head: Head<'b>) -> Step<'b> {
        let send_continue = head.expect_continue && !self.continue_sent;
        self.continue_sent |= send_continue;
        Step::NeedMore {
            send_continue,
            head: Some(head),
        }
    }
}
