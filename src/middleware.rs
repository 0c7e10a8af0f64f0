//! Admission at head time ([`admit`]: load shedding, rate limits), then the onion
//! every request passes through, outermost first: recovery (a panicking
//! handler becomes a 500; the connection closes and the shard lives on), access log,
//! auth (`Authorization: Bearer`, constant-time) and the route's access rule from the
//! route table, then the handler, which records the principal and the server's receive
//! time with every stored record (audit). Plain functions, no boxing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::auth::Principal;
use crate::context::Context;
use crate::handlers;
use crate::http::parse::Head;
use crate::http::parse::Method;
use crate::http::reject::Reject;
use crate::http::request::Request;
use crate::http::response::{ConnHeader, Reply, Status};
use crate::keyed;
use crate::outcome::{Deferred, Outcome, Work};
use crate::reads;
use crate::route::tree::allow_header;
use crate::route::{self, Access, Route, Routed};

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
pub fn admit(ctx: &Context, head: &Head<'_>, out: &mut Vec<u8>, whole: bool) -> Admitted {
    if head.method == Method::Post && ctx.overloaded() {
        Reply::new(out, ctx.date(), ConnHeader::Close).reject(Reject::Shed, None);
        ctx.metrics().rejected(Reject::Shed);
        return Admitted::No { close: true };
    }
    if !ctx.limiter().is_active() {
        return Admitted::Yes;
    }
    let Some(who) = ctx.principals().authenticate(head.authorization) else {
        return Admitted::Yes;
    };
    let began = Instant::now();
    let index = ctx.principals().index_of(who);
    let Err(retry_after) = ctx.limiter().take(index, began) else {
        return Admitted::Yes;
    };
    let mut reply = ctx.reply(out, head);
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
    let route = match route::lookup(head.method, head.path) {
        Routed::Found(route, _) => Some(route),
        _ => None,
    };
    count(ctx, route, head, &reply, began);
    ctx.metrics().ratelimited += 1;
    access_log(ctx, head, reply.since(mark), began, &who.id);
    Admitted::No { close: !whole }
}

/// Runs the onion for one request, appending exactly one response to `out`, unless
/// the outcome defers it to a cross-shard read ([`finish`]).
pub fn handle(ctx: &Context, request: &Request<'_>, out: &mut Vec<u8>) -> Outcome {
    let began = Instant::now();
    let head = &request.head;
    let mut reply = ctx.reply(out, head);
    let mark = reply.mark();
    let mut principal: Option<&Principal> = None;
    let mut route = None;
    let run =
        AssertUnwindSafe(|| route_and_run(ctx, request, &mut reply, &mut principal, &mut route));
    let mut outcome = match catch_unwind(run) {
        Ok(outcome) => outcome,
        Err(_) => recovered(ctx, head, &mut reply, mark),
    };
    match &mut outcome.deferred {
        // A deferred request is counted and logged once its response exists.
        Some(deferred) => deferred.began = Some(began),
        None => {
            count(ctx, route, head, &reply, began);
            let who = principal.map_or("-", |p| p.id.as_str());
            access_log(ctx, head, reply.since(mark), began, who);
        }
    }
    outcome
}

/// Counts an answered request in the shard's metrics.
fn count(ctx: &Context, route: Option<Route>, head: &Head<'_>, reply: &Reply<'_>, began: Instant) {
    if let Some(status) = reply.status() {
        ctx.metrics()
            .request(route, head.method, status, began.elapsed());
    }
}

/// Answers a request whose handler deferred to a read across every shard, or to a
/// keyed write's owner shard.
/// A panic while answering is recovered as in [`handle`]: a 500 and a close.
pub async fn finish(
    ctx: &Context,
    deferred: Deferred,
    head: &Head<'_>,
    out: &mut Vec<u8>,
) -> Outcome {
    use futures_lite::FutureExt;
    let mut reply = ctx.reply(out, head);
    let mark = reply.mark();
    let Deferred {
        work,
        principal,
        began,
    } = deferred;
    let began = began.unwrap_or_else(Instant::now);
    let route = work.route();
    let answering = async {
        match work {
            Work::Keyed(write) => keyed::answer(ctx, write, &mut reply).await,
            Work::Read(read) => reads::answer(ctx, &read, &mut reply).await,
        }
    };
    let answered = AssertUnwindSafe(answering).catch_unwind().await;
    let outcome = match answered {
        Ok(()) => Outcome::after(head),
        Err(_) => recovered(ctx, head, &mut reply, mark),
    };
    count(ctx, Some(route), head, &reply, began);
    access_log(ctx, head, reply.since(mark), began, &principal);
    outcome
}

/// After a panic: whatever was written is dropped, and a 500 closes the connection.
fn recovered(ctx: &Context, head: &Head<'_>, reply: &mut Reply<'_>, mark: usize) -> Outcome {
    reply.rewind(mark);
    reply.closing();
    reply.error(Status::InternalServerError, &[b"internal error"], None);
    log::error!(
        "shard {}: handler panicked on {} {}",
        ctx.shard(),
        head.method.as_str(),
        head.path
    );
    Outcome::close()
}

fn route_and_run<'c>(
    ctx: &'c Context,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
    principal: &mut Option<&'c Principal>,
    routed: &mut Option<Route>,
) -> Outcome {
    let head = &request.head;
    let (route, params) = match route::lookup(head.method, head.path) {
        Routed::Found(route, params) => {
            *routed = Some(route);
            (route, params)
        }
        Routed::MethodNotAllowed(allowed) => {
            let mut allow = [0u8; 64];
            let len = allow_header(allowed, &mut allow);
            reply.reject(Reject::MethodNotAllowed, Some((b"Allow", &allow[..len])));
            return Outcome::after(head);
        }
        Routed::NotFound => {
            reply.reject(Reject::NotFound, None);
            return Outcome::after(head);
        }
    };
    let roles = match route.access() {
        Access::Open => return handlers::open(ctx, route, head, reply),
        Access::Roles(roles) => roles,
    };
    // Until every shard has recovered, a read would miss records and a write could not
    // be counted: neither is served.
    if !ctx.is_serving() {
        reply.error(
            Status::ServiceUnavailable,
            &[b"not ready: recovering the log"],
            Some((b"Retry-After", b"1")),
        );
        return Outcome::after(head);
    }
    let Some(who) = ctx.principals().authenticate(head.authorization) else {
        return handlers::refuse(
            reply,
            head,
            Status::Unauthorized,
            "missing or unknown bearer token",
        );
    };
    *principal = Some(who);
    if !roles.contains(&who.role) {
        return handlers::refuse(
            reply,
            head,
            Status::Forbidden,
            "this principal's role may not use this endpoint",
        );
    }
    handlers::run(ctx, route, &params, who, request, reply)
}

fn access_log_enabled() -> bool {
    log::log_enabled!(target: "access", log::Level::Info)
}

/// One line per request on target `access`: shard, method, path, status, response
/// bytes, microseconds, principal. Level-gated first, so it costs nothing when off.
fn access_log(ctx: &Context, head: &Head<'_>, response: &[u8], began: Instant, principal: &str) {
    if !access_log_enabled() {
        return;
    }
    let status = response
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .unwrap_or("???");
    log::info!(
        target: "access",
        "shard={} {} {} {} {}B {}us principal={}",
        ctx.shard(),
        head.method.as_str(),
        head.path,
        status,
        response.len(),
        began.elapsed().as_micros(),
        principal
    );
}
