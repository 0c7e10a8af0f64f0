//! The connection's own refusals, below the routes: framing, limits, the memory
//! budget, timeouts. Each answers with its status and closes; each names the refused
//! request by its `X-Request-Id` once its head came in whole.

use crate::context::Context;
use crate::http::parse::Head;
use crate::http::reject::Reject;
use crate::http::request_id::RequestId;
use crate::http::response::{ConnHeader, Reply};

/// What a refusal knows of the request it answers once its head came in whole (and
/// nothing before): its id, and whether it went to a `/fhir` path (answered with an
/// `OperationOutcome`, as every refusal there is).
#[derive(Clone, Copy, Default)]
pub(super) struct Refused {
    pub id: Option<RequestId>,
    pub fhir: bool,
}

/// A framing or connection-level rejection: its error response, and the connection
/// closes. Logged at debug level so a flood of garbage cannot flood the log.
pub(super) fn refuse(ctx: &Context, reject: Reject, refused: Refused, out: &mut Vec<u8>) {
    let path = if refused.fhir { "/fhir" } else { "" };
    let mut reply = Reply::new(out, ctx.date(), ConnHeader::Close).for_path(path);
    if let Some(id) = refused.id {
        reply.set_request_id(id);
    }
    reply.reject(reject, None);
    ctx.metrics().rejected(reject);
    log::debug!("shard {}: rejected request: {reject:?}", ctx.shard());
}

/// What a refusal of the request at the start of `input` knows of it: once its head
/// is complete, its id (the caller's, or a new one) and whether its path is `/fhir`'s;
/// nothing before.
pub(super) fn refused(ctx: &Context, input: &[u8]) -> Refused {
    let Some((caller, path)) = RequestId::of_refused(input).or_else(|| unreadable_head(input))
    else {
        return Refused::default();
    };
    Refused {
        id: Some(caller.unwrap_or_else(|| ctx.next_request_id())),
        fhir: path == "/fhir" || path.starts_with("/fhir/") || path.starts_with("/fhir?"),
    }
}

/// A head that came in whole but that httparse cannot read (an `HTTP/2.0` request
/// line, say): no usable id of the caller's, and the target of its request line.
fn unreadable_head(input: &[u8]) -> Option<(Option<RequestId>, &str)> {
    let end = input.windows(4).position(|w| w == b"\r\n\r\n")?;
    let line = input[..end].split(|&b| b == b'\r').next()?;
    let target = line.split(|&b| b == b' ').nth(1)?;
    Some((None, std::str::from_utf8(target).ok()?))
}

/// [`refuse`] for a request whose head is known: answered as a reply to it (no body
/// to HEAD, an `OperationOutcome` on a `/fhir` path).
pub(super) fn refuse_request(
    ctx: &Context,
    reject: Reject,
    head: &Head<'_>,
    id: Option<RequestId>,
    out: &mut Vec<u8>,
) {
    let mut reply = ctx.reply(out, head);
    let id = id.or_else(|| head.request_id.and_then(RequestId::from_header));
    reply.set_request_id(id.unwrap_or_else(|| ctx.next_request_id()));
    reply.closing();
    reply.reject(reject, None);
    ctx.metrics().rejected(reject);
    log::debug!("shard {}: rejected request: {reject:?}", ctx.shard());
}
