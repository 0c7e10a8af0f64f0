//! Admission: once a request's head is in, before its body is read or handled, a
//! shard decides whether to take it at all: load shedding for writes, then the
//! caller's rate limit ([`crate::domain::ratelimit`]). What is admitted goes on through the
//! onion ([`crate::api::middleware`]).

use crate::api::middleware::answered;
use crate::api::outcome::Call;
use crate::api::refusal::{self, Dialect, Refusal};
use crate::base::logger::Peer;
use crate::http::parse::{Head, Method};
use crate::http::reject::Reject;
use crate::http::response::{ConnHeader, Reply};
use crate::route;
use crate::shard::context::Context;

/// Whether a request whose head is in may go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    Yes,
    /// Refused, the response written; `close`: its body was not read, so the
    /// connection must close.
    No {
        close: bool,
    },
}

/// Admission, once a request's head is in and before its body is read or handled:
/// a write (POST) is shed while too much waits for this shard's disk (503, close), and
/// a caller over its rate limit gets 429 with `Retry-After`. `whole`: the body is in
/// the buffer already, so after a 429 the connection can go on. An unknown token is
/// admitted here and refused (401) by the onion.
pub fn admit(
    ctx: &Context,
    head: &Head<'_>,
    out: &mut Vec<u8>,
    whole: bool,
    peer: Peer,
) -> Admitted {
    if head.method == Method::Post && ctx.overloaded() {
        shed(ctx, head, out, peer);
        return Admitted::No { close: true };
    }
    if !ctx.limiter().is_active() {
        return Admitted::Yes;
    }
    let principals = ctx.principals();
    let Some(who) = principals.authenticate(head.authorization) else {
        return Admitted::Yes;
    };
    let call = Call::begin(ctx, head, peer);
    let index = principals.index_of(who);
    let Err(retry_after) = ctx.limiter().take(index, call.began) else {
        return Admitted::Yes;
    };
    let mut reply = ctx.reply(out, head);
    reply.set_request_id(call.id);
    if !whole {
        reply.closing();
    }
    let mark = reply.mark();
    refusal::rate_limited(&mut reply, Dialect::of(head.path), &who.id, retry_after);
    ctx.metrics().ratelimited += 1;
    let route = route::found(head.method, head.path);
    answered(ctx, route, head, &reply, mark, &who.id, &call);
    Admitted::No { close: !whole }
}

/// Refuses a write while too much waits for this shard's disk: a 503, and the
/// connection closes.
fn shed(ctx: &Context, head: &Head<'_>, out: &mut Vec<u8>, peer: Peer) {
    let mut reply = Reply::new(out, ctx.date(), ConnHeader::Close);
    let mark = reply.mark();
    let call = Call::begin(ctx, head, peer);
    reply.set_request_id(call.id);
    let shed = Refusal::Reject(Reject::Shed);
    refusal::refuse(&mut reply, Dialect::of(head.path), shed);
    ctx.metrics().rejected(Reject::Shed);
    let route = route::found(head.method, head.path);
    answered(ctx, route, head, &reply, mark, "-", &call);
}
