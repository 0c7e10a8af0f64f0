//! Admission: once a request's head is in, before its body is read or handled, a
//! shard decides whether to take it at all: load shedding for writes, then the
//! caller's rate limit ([`crate::domain::ratelimit`]). What is admitted goes on through the
//! onion ([`crate::api::middleware`]).

use crate::api::middleware::answered;
use crate::api::outcome::Call;
use crate::base::logger::Peer;
use crate::http::parse::{Head, Method};
use crate::http::reject::Reject;
use crate::http::response::{ConnHeader, Reply, Status};
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
        let mut reply = Reply::new(out, ctx.date(), ConnHeader::Close).for_path(head.path);
        let mark = reply.mark();
        let call = Call::begin(ctx, head, peer);
        reply.set_request_id(call.id);
        reply.reject(Reject::Shed, None);
        ctx.metrics().rejected(Reject::Shed);
        answered(
            ctx,
            route::found(head.method, head.path),
            head,
            &reply,
            mark,
            "-",
            &call,
        );
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
    // Ids may hold quotes or backslashes: escaped as JSON (a refusal, off the happy path).
    let message = serde_json::to_string(&format!("rate limit exceeded for principal {}", who.id))
        .unwrap_or_default();
    let escaped = message
        .get(1..message.len().saturating_sub(1))
        .unwrap_or("");
    let mut seconds = itoa::Buffer::new();
    let retry = (&b"Retry-After"[..], seconds.format(retry_after).as_bytes());
    reply.error(Status::TooManyRequests, &[escaped.as_bytes()], Some(retry));
    ctx.metrics().ratelimited += 1;
    answered(
        ctx,
        route::found(head.method, head.path),
        head,
        &reply,
        mark,
        &who.id,
        &call,
    );
    Admitted::No { close: !whole }
}
