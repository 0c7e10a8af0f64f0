//! The routes anyone may call, no token needed: the probes, `/metrics` (it holds
//! counts, never patient data, ids or tokens) and `/openapi.json` (the contract).
//! `/readyz` and `/metrics` speak for the process: every shard is asked (a deferred
//! read, [`crate::api::reads`]).

use crate::api::handlers::Handled;
use crate::api::outcome::{Outcome, Read};
use crate::api::refusal::{Refusal, Why};
use crate::http::parse::Head;
use crate::http::response::{Reply, JSON, TEXT};
use crate::shard::context::Context;

/// `/healthz`, `/livez`: the process answers.
pub fn ok(_: &Context, head: &Head<'_>, reply: &mut Reply<'_>) -> Handled {
    reply.ok(TEXT, &[b"ok"]);
    Ok(Outcome::after(head))
}

/// `/readyz`: once this shard is ready, every other shard is asked too, so a probe
/// never says 200 while any shard cannot write.
pub fn ready(ctx: &Context, head: &Head<'_>, _: &mut Reply<'_>) -> Handled {
    match ctx.health() {
        Ok(()) => Ok(Outcome::deferred_read(Read::Ready, "-", head)),
        Err(Some(fault)) => Err(Refusal::NotReady {
            shard: ctx.shard(),
            fault: Some(fault),
        }),
        Err(None) => Err(Refusal::Fixed(Why::NotReady)),
    }
}

/// `/metrics`: every shard's counters.
pub fn metrics(_: &Context, head: &Head<'_>, _: &mut Reply<'_>) -> Handled {
    Ok(Outcome::deferred_read(Read::Metrics, "-", head))
}

/// `/openapi.json`.
pub fn openapi(_: &Context, head: &Head<'_>, reply: &mut Reply<'_>) -> Handled {
    crate::api::openapi::with_document(|doc| reply.ok(JSON, &[doc]));
    Ok(Outcome::after(head))
}
