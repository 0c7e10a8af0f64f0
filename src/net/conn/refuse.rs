//! The connection's own refusals, below the routes: framing, limits, the memory
//! budget, timeouts. Each answers with its status and closes; each names the refused
//! request by its `X-Request-Id` once its head came in whole, and each is counted and
//! logged like any answered request ([`middleware::account`]), its line folded in a
//! flood ([`crate::base::logger`]).

use crate::api::middleware::{self, Answer};
use crate::api::outcome::Call;
use crate::api::refusal::{self, Dialect, Refusal};
use crate::base::logger::Peer;
use crate::http::parse::{Head, Method};
use crate::http::reject::Reject;
use crate::http::request_id::RequestId;
use crate::http::response::{ConnHeader, Reply};
use crate::route;
use crate::shard::context::Context;

/// Bytes of a refused request's target kept for its access line.
const TARGET: usize = 96;

/// What a refusal knows of the request it answers once its head came in whole (and
/// nothing before): its id, method and target (a `/fhir` one is answered with an
/// `OperationOutcome`, as every refusal there is).
#[derive(Clone, Copy)]
pub(super) struct Refused {
    pub id: Option<RequestId>,
    method: Method,
    /// The start of the target (`-` when unknown).
    target: [u8; TARGET],
    target_len: u8,
}

impl Default for Refused {
    fn default() -> Self {
        let mut target = [0; TARGET];
        target[0] = b'-';
        Refused {
            id: None,
            method: Method::Other,
            target,
            target_len: 1,
        }
    }
}

impl Refused {
    fn target(&self) -> &str {
        std::str::from_utf8(&self.target[..usize::from(self.target_len)]).unwrap_or("-")
    }
}

/// A framing or connection-level rejection: its error response, and the connection
/// closes.
pub(super) fn refuse(
    ctx: &Context,
    reject: Reject,
    refused: Refused,
    peer: Peer,
    out: &mut Vec<u8>,
) {
    let mut reply = Reply::new(out, ctx.date(), ConnHeader::Close);
    let mark = reply.mark();
    let id = refused.id.unwrap_or_else(|| ctx.next_request_id());
    // A refusal before a whole head names no request: it gets an id for the log only.
    if refused.id.is_some() {
        reply.set_request_id(id);
    }
    let target = refused.target();
    refusal::refuse(&mut reply, Dialect::of(target), Refusal::Reject(reject));
    ctx.metrics().rejected(reject);
    account(ctx, refused.method, target, &reply, mark, id, peer);
}

/// What a refusal of the request at the start of `input` knows of it: once its head
/// is complete, its id (the caller's, or a new one), method and target; nothing
/// before.
pub(super) fn refused(ctx: &Context, input: &[u8]) -> Refused {
    let Some((caller, method, path)) =
        RequestId::of_refused(input).or_else(|| unreadable_head(input))
    else {
        return Refused::default();
    };
    let mut refused = Refused {
        id: Some(caller.unwrap_or_else(|| ctx.next_request_id())),
        method: Method::from_token(method),
        ..Refused::default()
    };
    let mut len = path.len().min(TARGET);
    while !path.is_char_boundary(len) {
        len -= 1;
    }
    if len > 0 {
        refused.target[..len].copy_from_slice(&path.as_bytes()[..len]);
        refused.target_len = len as u8;
    }
    refused
}

/// A head that came in whole but that httparse cannot read (an `HTTP/2.0` request
/// line, say): no usable id of the caller's, and the method and target of its request
/// line.
fn unreadable_head(input: &[u8]) -> Option<(Option<RequestId>, &str, &str)> {
    let end = input.windows(4).position(|w| w == b"\r\n\r\n")?;
    let line = input[..end].split(|&b| b == b'\r').next()?;
    let mut words = line.split(|&b| b == b' ');
    let method = std::str::from_utf8(words.next()?).unwrap_or("");
    let target = std::str::from_utf8(words.next()?).ok()?;
    Some((None, method, target))
}

/// [`refuse`] for a request whose head is known: answered as a reply to it (no body
/// to HEAD, an `OperationOutcome` on a `/fhir` path).
pub(super) fn refuse_request(
    ctx: &Context,
    reject: Reject,
    head: &Head<'_>,
    (id, peer): (Option<RequestId>, Peer),
    out: &mut Vec<u8>,
) {
    let mut reply = ctx.reply(out, head);
    let mark = reply.mark();
    // As the onion begins a request (the caller's id, a trusted proxy's client), unless
    // the connection named it already.
    let mut call = Call::begin(ctx, head, peer);
    if let Some(id) = id {
        call.id = id;
    }
    reply.set_request_id(call.id);
    reply.closing();
    refusal::refuse_to(&mut reply, head, Refusal::Reject(reject));
    ctx.metrics().rejected(reject);
    let route = route::found(head.method, head.path);
    middleware::answered(ctx, route, head, &reply, mark, "-", &call);
}

/// Counts and logs a refusal that has no parsed head.
fn account(
    ctx: &Context,
    method: Method,
    path: &str,
    reply: &Reply<'_>,
    mark: usize,
    id: RequestId,
    peer: Peer,
) {
    let Some(status) = reply.status() else {
        return;
    };
    let call = Call {
        began: std::time::Instant::now(),
        id,
        peer,
    };
    let answer = Answer {
        route: route::found(method, path),
        method,
        path,
        status,
        bytes: reply.since(mark).len(),
        principal: "-",
        call: &call,
    };
    middleware::account(ctx, &answer);
}
