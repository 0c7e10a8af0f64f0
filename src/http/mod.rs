//! HTTP/1.1 on the wire: head parsing and strictness ([`parse`]), chunked bodies
//! ([`chunked`]), request framing across reads ([`request`]), every rejection and its
//! status ([`reject`]), responses ([`response`]) and the cached `Date` ([`date`]).
//! Nothing here knows shards, connections or handlers.

pub mod chunked;
pub mod date;
pub mod parse;
pub mod percent;
pub mod reject;
pub mod request;
pub mod request_id;
pub mod response;
