//! The onion every request passes through once admitted ([`crate::api::admission`]),
//! outermost first: recovery (a panicking
//! handler becomes a 500; the connection closes and the shard lives on), access log,
//! auth (`Authorization: Bearer`, constant-time) and the route's access rule from the
//! route table, then the handler, which records the principal and the server's receive
//! time with every stored record (audit). Plain functions, no boxing.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::api::handlers::{self, Handled};
use crate::api::keyed;
use crate::api::outcome::{Call, Deferred, Outcome, Work};
use crate::api::reads;
use crate::api::refusal::{self, Refusal, Why};
use crate::base::logger::{self, Logged, Peer};
use crate::domain::auth::{Principal, Principals};
use crate::http::parse::{Head, Method};
use crate::http::reject::Reject;
use crate::http::request::Request;
use crate::http::response::{Reply, Status};
use crate::route::tree::Params;
use crate::route::{self, Access, Route, Routed};
use crate::shard::context::Context;

/// Runs the onion for one request, appending exactly one response to `out`, unless
/// the outcome defers it to a cross-shard read ([`finish`]).
/// `peer`: the connection's client address, for the access log.
pub fn handle(ctx: &Context, request: &Request<'_>, out: &mut Vec<u8>, peer: Peer) -> Outcome {
    let head = &request.head;
    let call = Call::begin(ctx, head, peer);
    let mut reply = ctx.reply(out, head);
    reply.set_request_id(call.id);
    let mark = reply.mark();
    let principals = ctx.principals();
    let mut principal: Option<&Principal> = None;
    let mut route = None;
    let run = AssertUnwindSafe(|| {
        let who = (&*principals, &mut principal);
        let handled = route_and_run(ctx, request, &mut reply, who, &mut route);
        handled.unwrap_or_else(|refused| {
            refusal::answer(&mut reply, request, refused);
            Outcome::after(head)
        })
    });
    let mut outcome = match catch_unwind(run) {
        Ok(outcome) => outcome,
        Err(_) => recovered(ctx, head, &mut reply, mark),
    };
    match &mut outcome.deferred {
        // A deferred request is counted and logged once its response exists.
        Some(deferred) => deferred.call = Some(call),
        None => {
            let who = principal.map_or("-", |p| p.id.as_str());
            answered(ctx, route, head, &reply, mark, who, &call);
        }
    }
    outcome
}

/// Counts an answered request in the shard's metrics and writes its access log line.
pub fn answered(
    ctx: &Context,
    route: Option<Route>,
    head: &Head<'_>,
    reply: &Reply<'_>,
    mark: usize,
    principal: &str,
    call: &Call,
) {
    let Some(status) = reply.status() else {
        return;
    };
    account(
        ctx,
        &Answer {
            route,
            method: head.method,
            path: head.path,
            status,
            bytes: reply.since(mark).len(),
            principal,
            call,
        },
    );
}

/// One answered request, as the metrics and the access log see it.
pub struct Answer<'a> {
    /// `None`: no route matched.
    pub route: Option<Route>,
    pub method: Method,
    pub path: &'a str,
    pub status: Status,
    /// Bytes of the response.
    pub bytes: usize,
    pub principal: &'a str,
    pub call: &'a Call,
}

/// Counts an answer (a refusal below the routes too) and writes, or folds, its access
/// line: every answered request gets both, exactly once.
pub fn account(ctx: &Context, a: &Answer<'_>) {
    let took = a.call.began.elapsed();
    let logged = logger::access(&logger::Access {
        method: a.method.as_str(),
        route: a.route.map_or("unmatched", Route::template),
        path: a.path,
        status: a.status.code(),
        bytes: a.bytes,
        micros: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        principal: a.principal,
        peer: a.call.peer.as_str(),
        request_id: a.call.id.as_str(),
    });
    let mut metrics = ctx.metrics();
    metrics.request(a.route, a.method, a.status, took);
    if logged == Logged::Folded {
        metrics.folded(a.status);
    }
}

/// Answers a request whose handler deferred to a read across every shard, or to a
/// keyed write's owner shard.
/// A panic while answering is recovered as in [`handle`]: a 500 and a close.
pub async fn finish(
    ctx: &Context,
    deferred: Deferred,
    request: &Request<'_>,
    out: &mut Vec<u8>,
) -> Outcome {
    use futures_lite::FutureExt;
    let head = &request.head;
    let Deferred {
        work,
        principal,
        call,
    } = deferred;
    let call = call.unwrap_or_else(|| Call::begin(ctx, head, Peer::new(None)));
    let mut reply = ctx.reply(out, head);
    reply.set_request_id(call.id);
    let mark = reply.mark();
    let route = route::found(head.method, head.path);
    let answering = async {
        match work {
            Work::Keyed(write) => keyed::answer(ctx, write, request, &mut reply).await,
            Work::Read(read) => {
                if let Err(refused) = reads::answer(ctx, &read, &mut reply).await {
                    refusal::answer(&mut reply, request, refused);
                }
            }
        }
    };
    let result = AssertUnwindSafe(answering).catch_unwind().await;
    let outcome = match result {
        Ok(()) => Outcome::after(head),
        Err(_) => recovered(ctx, head, &mut reply, mark),
    };
    answered(ctx, route, head, &reply, mark, &principal, &call);
    outcome
}

/// After a panic: whatever was written is dropped, and a 500 closes the connection.
fn recovered(ctx: &Context, head: &Head<'_>, reply: &mut Reply<'_>, mark: usize) -> Outcome {
    reply.rewind(mark);
    reply.closing();
    refusal::refuse_to(reply, head, Refusal::Fixed(Why::Internal));
    log::error!(
        "shard {}: handler panicked on {} {}",
        ctx.shard(),
        head.method.as_str(),
        head.path
    );
    Outcome::close()
}

/// Routes the request, authenticates and authorizes its caller unless the route is
/// open, and runs the route's handler. `who`: the principals in force for this
/// request, and where to say which one it is.
fn route_and_run<'p>(
    ctx: &Context,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
    who: (&'p Principals, &mut Option<&'p Principal>),
    routed: &mut Option<Route>,
) -> Handled {
    let (principals, principal) = who;
    let head = &request.head;
    let (route, params) = lookup(head)?;
    *routed = Some(route);
    if let Access::Roles(roles) = route.access() {
        // Until every shard has recovered, a read would miss records and a write could
        // not be counted: neither is served.
        if !ctx.is_serving() {
            return Err(Refusal::Fixed(Why::Recovering));
        }
        let who = authenticate(principals, head)?;
        *principal = Some(who);
        if !roles.contains(&who.role) {
            return Err(Refusal::Fixed(Why::RoleForbidden));
        }
    }
    handlers::run(ctx, (route, &params), *principal, request, reply)
}

/// The route `head` asks for, and its path parameters.
fn lookup<'h>(head: &Head<'h>) -> Result<(Route, Params<'h>), Refusal> {
    match route::lookup(head.method, head.path) {
        Routed::Found(route, params) => Ok((route, params)),
        Routed::MethodNotAllowed(allowed) => Err(Refusal::MethodNotAllowed(allowed)),
        Routed::NotFound => Err(Refusal::Reject(Reject::NotFound)),
    }
}

/// The principal whose bearer token `head` carries.
fn authenticate<'p>(principals: &'p Principals, head: &Head<'_>) -> Result<&'p Principal, Refusal> {
    principals.authenticate(head.authorization).ok_or_else(|| {
        let bearer = head
            .authorization
            .is_some_and(|a| a.len() >= 7 && a[..7].eq_ignore_ascii_case(b"bearer "));
        Refusal::Unauthenticated { bearer }
    })
}
