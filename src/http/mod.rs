//! HTTP/1.1 on the wire: head parsing and strictness ([`parse`]), chunked bodies
//! ([`chunked`]), request framing across reads ([`request`]), responses ([`response`])
//! and the cached `Date` ([`date`]).

pub mod chunked;
pub mod date;
pub mod parse;
pub mod request;
pub mod response;
