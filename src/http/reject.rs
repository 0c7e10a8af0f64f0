//! Every hot-path rejection is a small `Copy` value; this file is the one place that maps
//! each to its status and its message, in one table.

use crate::http::response::Status;

/// Declares the rejections, one line each: the variant, its status and its JSON-safe
/// message (no quotes or backslashes). It yields the enum, [`Reject::ALL`] in the same
/// order (so a new rejection is counted in the metrics without another list to keep)
/// and [`Reject::status`] and [`Reject::message`].
macro_rules! rejects {
    ($($(#[$doc:meta])* $name:ident => $status:ident, $message:literal;)*) => {
        /// Why a request was refused before (or instead of) reaching a handler.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reject { $($(#[$doc])* $name,)* }

        impl Reject {
            /// Every rejection, in declaration order (`ALL[r as usize] == r`).
            pub const ALL: &'static [Reject] = &[$(Reject::$name,)*];

            /// The status of the response.
            pub const fn status(self) -> Status {
                match self { $(Reject::$name => Status::$status,)* }
            }

            /// What the response says.
            pub const fn message(self) -> &'static str {
                match self { $(Reject::$name => $message,)* }
            }
        }
    };
}

rejects! {
    // Request line and head (all close the connection).
    RequestLine => BadRequest, "malformed request line";
    RequestTarget => BadRequest,
        "request target must be a path (/...) or an absolute http(s) URI, without a fragment";
    Version => VersionNotSupported, "only HTTP/1.0 and HTTP/1.1 are supported";
    HeaderName => BadRequest, "malformed header field name";
    SpaceBeforeColon => BadRequest, "whitespace between header field name and colon";
    ObsFold => BadRequest, "obsolete line folding (obs-fold) in header field";
    HeaderValue => BadRequest, "control character in header field value";
    BareLf => BadRequest, "bare LF line ending; lines must end with CRLF";
    BareCr => BadRequest, "bare CR not followed by LF";
    LineEnding => BadRequest, "malformed request line or line ending";
    MissingHost => BadRequest, "HTTP/1.1 request without Host header";
    DuplicateHost => BadRequest, "more than one Host header";
    InvalidHost => BadRequest, "Host is not a valid host[:port]";
    DuplicateHeader => BadRequest,
        "duplicate Content-Type, Authorization, Idempotency-Key or Expect header";
    UriTooLong => UriTooLong, "request line exceeds max_head_bytes";
    HeadTooLarge => HeaderFieldsTooLarge, "request head exceeds max_head_bytes";
    TooManyHeaders => HeaderFieldsTooLarge, "more header fields than max_headers";
    // Body framing (all close the connection).
    ContentLengthInvalid => BadRequest, "Content-Length is not a non-negative decimal integer";
    ContentLengthConflict => BadRequest, "conflicting Content-Length headers";
    ContentLengthList => BadRequest, "list-valued Content-Length";
    LengthAndChunked => BadRequest, "both Content-Length and Transfer-Encoding present";
    TransferEncodingHttp10 => BadRequest, "Transfer-Encoding in an HTTP/1.0 request";
    TransferEncodingInvalid => BadRequest,
        "Transfer-Encoding must be exactly chunked, once, as the final coding";
    TransferEncodingUnsupported => NotImplemented,
        "unsupported transfer coding; only chunked is accepted";
    ChunkSize => BadRequest, "chunk size is not 1 to 16 hex digits";
    ChunkExtension => BadRequest, "malformed or oversized chunk extension";
    ChunkLineEnding => BadRequest, "chunk line not ended by CRLF";
    ChunkDataLength => BadRequest, "chunk data does not match its declared size";
    TrailerInvalid => BadRequest, "malformed trailer field";
    TrailersTooLarge => HeaderFieldsTooLarge, "trailer section too large";
    BodyTooLarge => PayloadTooLarge, "body exceeds max_body_bytes";
    ChunkFramingTooLarge => PayloadTooLarge,
        "chunk lines take more than half of max_body_bytes: chunks too small";
    ExpectUnsupported => ExpectationFailed, "only Expect: 100-continue is supported";
    // Routing (the connection stays open).
    NotFound => NotFound, "no such route";
    MethodNotAllowed => MethodNotAllowed, "method not allowed for this route";
    // Connection-level refusals sent outside any request (all close the connection).
    Overloaded => ServiceUnavailable, "connection limit reached";
    MemoryBudget => ServiceUnavailable,
        "request bodies in progress fill this shard's memory budget; retry later";
    /// A write while too much waits for the shard's disk (load shedding).
    Shed => ServiceUnavailable, "overloaded, retry later";
    HeaderTimeout => RequestTimeout, "request head not received within header_timeout_ms";
    BodyTimeout => RequestTimeout,
        "request body not received within body_timeout_ms, or stalled past idle_timeout_ms";
    /// The whole request not received within `request_timeout_ms`.
    RequestTimeout => RequestTimeout, "request not received within request_timeout_ms";
    /// Received, but not answered within `request_timeout_ms` (a slow disk or shard).
    AnswerTimeout => ServiceUnavailable,
        "no answer within request_timeout_ms; a write may still be stored: retry it with its Idempotency-Key";
    /// Partly received when the server began to shut down.
    ShuttingDown => ServiceUnavailable,
        "the server is shutting down; nothing of this request was stored: retry it";
}

impl Reject {
    /// The metrics label: the variant's name in snake case (`body_too_large`).
    pub fn name(self) -> String {
        let mut name = String::new();
        for (i, c) in format!("{self:?}").chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::Status;

    #[test]
    fn labels_and_codes_come_from_the_declarations() {
        assert_eq!(Status::UnprocessableContent.code(), "422");
        assert_eq!(Status::ALL[Status::TooManyRequests as usize].code(), "429");
        assert_eq!(
            Reject::ContentLengthInvalid.name(),
            "content_length_invalid"
        );
        assert_eq!(Reject::ALL[Reject::Shed as usize], Reject::Shed);
        assert_eq!(Reject::BodyTooLarge.status(), Status::PayloadTooLarge);
        assert_eq!(Reject::NotFound.message(), "no such route");
    }
}
