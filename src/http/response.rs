//! Response encoding into a connection's reusable write buffer: precomputed status
//! lines, the shard's cached `Date`, an exact `Content-Length`, then the body.

use crate::error::Reject;

/// The statuses this server sends, each with its precomputed status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    UriTooLong,
    UnsupportedMediaType,
    ExpectationFailed,
    HeaderFieldsTooLarge,
    InternalServerError,
    NotImplemented,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    const fn line(self) -> &'static [u8] {
        use Status::*;
        match self {
            Ok => b"HTTP/1.1 200 OK\r\n",
            BadRequest => b"HTTP/1.1 400 Bad Request\r\n",
            Unauthorized => b"HTTP/1.1 401 Unauthorized\r\n",
            Forbidden => b"HTTP/1.1 403 Forbidden\r\n",
            NotFound => b"HTTP/1.1 404 Not Found\r\n",
            MethodNotAllowed => b"HTTP/1.1 405 Method Not Allowed\r\n",
            RequestTimeout => b"HTTP/1.1 408 Request Timeout\r\n",
            PayloadTooLarge => b"HTTP/1.1 413 Content Too Large\r\n",
            UriTooLong => b"HTTP/1.1 414 URI Too Long\r\n",
            UnsupportedMediaType => b"HTTP/1.1 415 Unsupported Media Type\r\n",
            ExpectationFailed => b"HTTP/1.1 417 Expectation Failed\r\n",
            HeaderFieldsTooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            InternalServerError => b"HTTP/1.1 500 Internal Server Error\r\n",
            NotImplemented => b"HTTP/1.1 501 Not Implemented\r\n",
            ServiceUnavailable => b"HTTP/1.1 503 Service Unavailable\r\n",
            VersionNotSupported => b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
        }
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

pub const JSON: &[u8] = b"application/json";
pub const TEXT: &[u8] = b"text/plain; charset=utf-8";

/// Appends a complete response to `out`; the body is the concatenation of `body`'s
/// parts, so callers can frame a message without building it in a temporary buffer.
pub fn write(
    out: &mut Vec<u8>,
    status: Status,
    date: &[u8],
    conn: ConnHeader,
    content_type: &[u8],
    extra: Option<(&[u8], &[u8])>,
    body: &[&[u8]],
) {
    let body_len: usize = body.iter().map(|part| part.len()).sum();
    out.extend_from_slice(status.line());
    out.extend_from_slice(b"Server: epro-ingest\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
    match conn {
        ConnHeader::None => {}
        ConnHeader::KeepAlive => out.extend_from_slice(b"\r\nConnection: keep-alive"),
        ConnHeader::Close => out.extend_from_slice(b"\r\nConnection: close"),
    }
    if let Some((name, value)) = extra {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
    }
    out.extend_from_slice(b"\r\n\r\n");
    for part in body {
        out.extend_from_slice(part);
    }
}

/// Appends `{"error":"<message>"}` with `status`; `message` must need no JSON escaping.
pub fn write_json_error(
    out: &mut Vec<u8>,
    status: Status,
    message: &str,
    date: &[u8],
    conn: ConnHeader,
    extra: Option<(&[u8], &[u8])>,
) {
    let body: [&[u8]; 3] = [b"{\"error\":\"", message.as_bytes(), b"\"}"];
    write(out, status, date, conn, JSON, extra, &body);
}

/// Appends the error response of a rejection.
pub fn write_reject(
    out: &mut Vec<u8>,
    reject: Reject,
    date: &[u8],
    conn: ConnHeader,
    extra: Option<(&[u8], &[u8])>,
) {
    let (status, message, _) = reject.describe();
    write_json_error(out, status, message, date, conn, extra);
}

/// `100 Continue`, sent before reading a body the client is holding back.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
