//! Every hot-path rejection is a small `Copy` value; this file is the one place that maps
//! each to its status, its JSON message and whether the connection must close.

use crate::http::response::Status;

/// Declares the rejections: the enum, and [`Reject::ALL`] in the same order (so a
/// new rejection is counted in the metrics without another list to keep).
macro_rules! rejects {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Why a request was refused before (or instead of) reaching a handler.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reject { $($(#[$doc])* $name,)* }

        impl Reject {
            /// Every rejection, in declaration order (`ALL[r as usize] == r`).
            pub const ALL: &'static [Reject] = &[$(Reject::$name,)*];
        }
    };
}

rejects! {
    // Request line and head (all close the connection).
    RequestLine,
    RequestTarget,
    Version,
    HeaderName,
    SpaceBeforeColon,
    ObsFold,
    HeaderValue,
    BareLf,
    BareCr,
    LineEnding,
    MissingHost,
    DuplicateHost,
    InvalidHost,
    DuplicateHeader,
    UriTooLong,
    HeadTooLarge,
    TooManyHeaders,
    // Body framing (all close the connection).
    ContentLengthInvalid,
    ContentLengthConflict,
    ContentLengthList,
    LengthAndChunked,
    TransferEncodingHttp10,
    TransferEncodingInvalid,
    TransferEncodingUnsupported,
    ChunkSize,
    ChunkExtension,
    ChunkLineEnding,
    ChunkDataLength,
    TrailerInvalid,
    TrailersTooLarge,
    BodyTooLarge,
    ChunkFramingTooLarge,
    ExpectUnsupported,
    // Routing (the connection stays open).
    NotFound,
    MethodNotAllowed,
    // Connection-level refusals sent outside any request.
    Overloaded,
    MemoryBudget,
    /// A write while too much waits for the shard's disk (load shedding).
    Shed,
    HeaderTimeout,
    BodyTimeout,
    /// The whole request not received within `request_timeout_ms`.
    RequestTimeout,
    /// Received, but not answered within `request_timeout_ms` (a slow disk or shard).
    AnswerTimeout,
    /// Partly received when the server began to shut down.
    ShuttingDown,
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

    /// Status, JSON-safe message (no quotes or backslashes) and whether to close.
    pub const fn describe(self) -> (Status, &'static str, bool) {
        use Reject::*;
        use Status as S;
        match self {
            RequestLine => (S::BadRequest, "malformed request line", true),
            RequestTarget => (
                S::BadRequest,
                "request target must be a path (/...) or an absolute http(s) URI, without a fragment",
                true,
            ),
            Version => (
                S::VersionNotSupported,
                "only HTTP/1.0 and HTTP/1.1 are supported",
                true,
            ),
            HeaderName => (S::BadRequest, "malformed header field name", true),
            SpaceBeforeColon => (
                S::BadRequest,
                "whitespace between header field name and colon",
                true,
            ),
            ObsFold => (
                S::BadRequest,
                "obsolete line folding (obs-fold) in header field",
                true,
            ),
            HeaderValue => (
                S::BadRequest,
                "control character in header field value",
                true,
            ),
            BareLf => (
                S::BadRequest,
                "bare LF line ending; lines must end with CRLF",
                true,
            ),
            BareCr => (S::BadRequest, "bare CR not followed by LF", true),
            LineEnding => (S::BadRequest, "malformed request line or line ending", true),
            MissingHost => (S::BadRequest, "HTTP/1.1 request without Host header", true),
            DuplicateHost => (S::BadRequest, "more than one Host header", true),
            InvalidHost => (S::BadRequest, "Host is not a valid host[:port]", true),
            DuplicateHeader => (
                S::BadRequest,
                "duplicate Content-Type, Authorization, Idempotency-Key or Expect header",
                true,
            ),
            UriTooLong => (S::UriTooLong, "request line exceeds max_head_bytes", true),
            HeadTooLarge => (
                S::HeaderFieldsTooLarge,
                "request head exceeds max_head_bytes",
                true,
            ),
            TooManyHeaders => (
                S::HeaderFieldsTooLarge,
                "more header fields than max_headers",
                true,
            ),
            ContentLengthInvalid => (
                S::BadRequest,
                "Content-Length is not a non-negative decimal integer",
                true,
            ),
            ContentLengthConflict => (S::BadRequest, "conflicting Content-Length headers", true),
            ContentLengthList => (S::BadRequest, "list-valued Content-Length", true),
            LengthAndChunked => (
                S::BadRequest,
                "both Content-Length and Transfer-Encoding present",
                true,
            ),
            TransferEncodingHttp10 => (
                S::BadRequest,
                "Transfer-Encoding in an HTTP/1.0 request",
                true,
            ),
            TransferEncodingInvalid => (
                S::BadRequest,
                "Transfer-Encoding must be exactly chunked, once, as the final coding",
                true,
            ),
            TransferEncodingUnsupported => (
                S::NotImplemented,
                "unsupported transfer coding; only chunked is accepted",
                true,
            ),
            ChunkSize => (S::BadRequest, "chunk size is not 1 to 16 hex digits", true),
            ChunkExtension => (
                S::BadRequest,
                "malformed or oversized chunk extension",
                true,
            ),
            ChunkLineEnding => (S::BadRequest, "chunk line not ended by CRLF", true),
            ChunkDataLength => (
                S::BadRequest,
                "chunk data does not match its declared size",
                true,
            ),
            TrailerInvalid => (S::BadRequest, "malformed trailer field", true),
            TrailersTooLarge => (S::HeaderFieldsTooLarge, "trailer section too large", true),
            BodyTooLarge => (S::PayloadTooLarge, "body exceeds max_body_bytes", true),
            ChunkFramingTooLarge => (
                S::PayloadTooLarge,
                "chunk lines take more than half of max_body_bytes: chunks too small",
                true,
            ),
            ExpectUnsupported => (
                S::ExpectationFailed,
                "only Expect: 100-continue is supported",
                true,
            ),
            NotFound => (S::NotFound, "no such route", false),
            MethodNotAllowed => (
                S::MethodNotAllowed,
                "method not allowed for this route",
                false,
            ),
            Overloaded => (S::ServiceUnavailable, "connection limit reached", true),
            MemoryBudget => (
                S::ServiceUnavailable,
                "request bodies in progress fill this shard's memory budget; retry later",
                true,
            ),
            Shed => (S::ServiceUnavailable, "overloaded, retry later", true),
            HeaderTimeout => (
                S::RequestTimeout,
                "request head not received within header_timeout_ms",
                true,
            ),
            BodyTimeout => (
                S::RequestTimeout,
                "request body not received within body_timeout_ms, or stalled past idle_timeout_ms",
                true,
            ),
            RequestTimeout => (
                S::RequestTimeout,
                "request not received within request_timeout_ms",
                true,
            ),
            AnswerTimeout => (
                S::ServiceUnavailable,
                "no answer within request_timeout_ms; a write may still be stored: retry it with its Idempotency-Key",
                true,
            ),
            ShuttingDown => (
                S::ServiceUnavailable,
                "the server is shutting down; nothing of this request was stored: retry it",
                true,
            ),
        }
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
    }
}
