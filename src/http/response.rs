//! Response encoding into a connection's reusable write buffer: precomputed status
//! lines, the shard's cached `Date`, an exact `Content-Length`, then the body.

use crate::http::date;
use crate::http::parse::{Head, Method};
use crate::http::request_id::RequestId;

/// An extra header field: (name, value).
pub type Header<'a> = (&'a [u8], &'a [u8]);

/// Retry in a second: a limit that frees up, or a shard that is busy or not ready.
pub const RETRY_AFTER: Header<'static> = (b"Retry-After", b"1");

/// Declares the statuses this server sends: the enum, [`Status::ALL`] in the same
/// order, and each one's precomputed status line.
macro_rules! statuses {
    ($($name:ident => $line:literal,)*) => {
        /// The statuses this server sends, each with its precomputed status line.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Status { $($name,)* }

        impl Status {
            /// Every status, in declaration order (`ALL[s as usize] == s`).
            pub const ALL: &'static [Status] = &[$(Status::$name,)*];

            const fn line(self) -> &'static [u8] {
                match self { $(Status::$name => concat!("HTTP/1.1 ", $line, "\r\n").as_bytes(),)* }
            }
        }
    };
}

statuses! {
    Ok => "200 OK",
    Created => "201 Created",
    BadRequest => "400 Bad Request",
    Unauthorized => "401 Unauthorized",
    Forbidden => "403 Forbidden",
    NotFound => "404 Not Found",
    MethodNotAllowed => "405 Method Not Allowed",
    NotAcceptable => "406 Not Acceptable",
    RequestTimeout => "408 Request Timeout",
    PayloadTooLarge => "413 Content Too Large",
    UriTooLong => "414 URI Too Long",
    UnsupportedMediaType => "415 Unsupported Media Type",
    ExpectationFailed => "417 Expectation Failed",
    UnprocessableContent => "422 Unprocessable Content",
    TooManyRequests => "429 Too Many Requests",
    HeaderFieldsTooLarge => "431 Request Header Fields Too Large",
    InternalServerError => "500 Internal Server Error",
    NotImplemented => "501 Not Implemented",
    ServiceUnavailable => "503 Service Unavailable",
    VersionNotSupported => "505 HTTP Version Not Supported",
}

impl Status {
    /// The three-digit code.
    pub fn code(self) -> &'static str {
        std::str::from_utf8(&self.line()[9..12]).unwrap_or("000")
    }
}

/// How the connection continues after this response, as told to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnHeader {
    /// HTTP/1.1 default: nothing to say.
    None,
    /// HTTP/1.0 client that asked to keep the connection.
    KeepAlive,
    Close,
}

impl ConnHeader {
    /// What a response to `head` says about the connection: HTTP/1.0 keep-alive must
    /// be confirmed, a close must be announced.
    pub fn for_request(head: &Head<'_>) -> ConnHeader {
        match (head.keep_alive, head.http10) {
            (false, _) => ConnHeader::Close,
            (true, true) => ConnHeader::KeepAlive,
            (true, false) => ConnHeader::None,
        }
    }
}

pub const JSON: &[u8] = b"application/json";
pub const TEXT: &[u8] = b"text/plain; charset=utf-8";

/// Writes the responses of one connection into its reusable write buffer: every
/// response the server sends goes through [`Reply::with`] ([`Reply::ok`] is its
/// common case). What a body says is the caller's business; refusals are rendered
/// in `crate::api::refusal`.
pub struct Reply<'o> {
    out: &'o mut Vec<u8>,
    date: [u8; date::LEN],
    conn: ConnHeader,
    /// A response to HEAD: headers (with the `Content-Length` the body would have), no
    /// body, whatever the status (RFC 9110 9.3.2). A body here would be read by the
    /// client as the start of the next response.
    head_only: bool,
    /// The status of the last response written.
    status: Option<Status>,
    /// Echoed as `X-Request-Id` in every response.
    request_id: Option<RequestId>,
}

impl<'o> Reply<'o> {
    pub fn new(out: &'o mut Vec<u8>, date: [u8; date::LEN], conn: ConnHeader) -> Self {
        Reply {
            out,
            date,
            conn,
            head_only: false,
            status: None,
            request_id: None,
        }
    }

    /// A reply to `head`: keeps the connection as it asked, and has no body for HEAD.
    pub fn to(out: &'o mut Vec<u8>, date: [u8; date::LEN], head: &Head<'_>) -> Self {
        Reply {
            head_only: head.method == Method::Head,
            ..Reply::new(out, date, ConnHeader::for_request(head))
        }
    }

    /// From now on, responses announce `Connection: close`.
    pub fn closing(&mut self) {
        self.conn = ConnHeader::Close;
    }

    /// Where the next response starts: for [`Reply::rewind`] and [`Reply::since`].
    pub fn mark(&self) -> usize {
        self.out.len()
    }

    /// Drops whatever was written after `mark` (a handler that panicked half-way).
    pub fn rewind(&mut self, mark: usize) {
        self.out.truncate(mark);
    }

    /// Responses from now on carry `X-Request-Id: <id>`.
    pub fn set_request_id(&mut self, id: RequestId) {
        self.request_id = Some(id);
    }

    /// The status of the last response written, if any.
    pub fn status(&self) -> Option<Status> {
        self.status
    }

    /// The bytes written since `mark`.
    pub fn since(&self, mark: usize) -> &[u8] {
        &self.out[mark..]
    }

    /// A 200; the body is the concatenation of `body`'s parts, so callers frame a
    /// message without building it in a temporary buffer.
    pub fn ok(&mut self, content_type: &[u8], body: &[&[u8]]) {
        self.with(Status::Ok, content_type, &[], body);
    }

    /// A response with `status`, more header fields, and a body of `content_type`
    /// (the concatenation of `body`'s parts).
    pub fn with(
        &mut self,
        status: Status,
        content_type: &[u8],
        extra: &[Header<'_>],
        body: &[&[u8]],
    ) {
        self.status = Some(status);
        let out = &mut *self.out;
        let body_len: usize = body.iter().map(|part| part.len()).sum();
        out.extend_from_slice(status.line());
        out.extend_from_slice(b"Server: epro-ingest\r\nDate: ");
        out.extend_from_slice(&self.date);
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(content_type);
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
        match self.conn {
            ConnHeader::None => {}
            ConnHeader::KeepAlive => out.extend_from_slice(b"\r\nConnection: keep-alive"),
            ConnHeader::Close => out.extend_from_slice(b"\r\nConnection: close"),
        }
        if let Some(id) = &self.request_id {
            out.extend_from_slice(b"\r\nX-Request-Id: ");
            out.extend_from_slice(id.as_bytes());
        }
        for (name, value) in extra {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
        }
        out.extend_from_slice(b"\r\n\r\n");
        if !self.head_only {
            for part in body {
                out.extend_from_slice(part);
            }
        }
    }
}

/// `100 Continue`, sent before reading a body the client is holding back.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
