//! The onion every request passes through, outermost first: recovery (a panicking
//! handler becomes a 500; the connection closes and the shard lives on), access log,
//! auth (`Authorization: Bearer`, constant-time), permission (role and project scope),
//! then the handler, which records the principal and the server's receive time with
//! every stored record (audit). Plain functions, no boxing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::config::{Principal, Role};
use crate::handlers::{self, Outcome};
use crate::http::parse::Head;
use crate::http::request::Request;
use crate::http::response::{self, ConnHeader, Status};
use crate::route::{self, Route, Routed};
use crate::shard::Shard;

/// Runs the onion for one request, appending exactly one response to `out`.
pub fn handle(shard: &Shard, request: &Request<'_>, out: &mut Vec<u8>) -> Outcome {
    // The access log's duration is the only use of the clock here.
    let began = log::log_enabled!(target: "access", log::Level::Info).then(Instant::now);
    let start = out.len();
    let mut principal: Option<&Principal> = None;
    let outcome = match catch_unwind(AssertUnwindSafe(|| {
        route_and_run(shard, request, out, &mut principal)
    })) {
        Ok(outcome) => outcome,
        Err(_) => {
            out.truncate(start);
            let date = shard.date.get();
            response::write_json_error(
                out,
                Status::InternalServerError,
                "internal error",
                &date,
                ConnHeader::Close,
                None,
            );
            log::error!(
                "shard {}: handler panicked on {} {}",
                shard.id,
                request.head.method.as_str(),
                request.head.path
            );
            Outcome::close()
        }
    };
    // A deferred read logs once its response exists.
    if let (Some(began), None) = (began, &outcome.deferred) {
        access_log(
            shard,
            &request.head,
            &out[start..],
            began,
            principal.map_or("-", |p| p.id.as_str()),
        );
    }
    outcome
}

fn route_and_run<'s>(
    shard: &'s Shard,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    principal: &mut Option<&'s Principal>,
) -> Outcome {
    let head = &request.head;
    match route::lookup(head.method, head.path) {
        Routed::Found(route, params) => {
            let needs = match route {
                Route::Healthz | Route::Livez | Route::Readyz => None,
                Route::Submit => Some(&[Role::Device, Role::Staff, Role::Admin][..]),
                Route::AddTag | Route::Subjects | Route::Summary | Route::Permissions => {
                    Some(&[Role::Staff, Role::Admin][..])
                }
            };
            if let Some(roles) = needs {
                let Some(who) = authenticate(shard, head.authorization) else {
                    return handlers::refuse(
                        shard,
                        request,
                        out,
                        Status::Unauthorized,
                        "missing or unknown bearer token",
                    );
                };
                *principal = Some(who);
                if !roles.contains(&who.role) {
                    return handlers::refuse(
                        shard,
                        request,
                        out,
                        Status::Forbidden,
                        "this principal's role may not use this endpoint",
                    );
                }
            }
            handlers::run(shard, route, &params, *principal, request, out)
        }
        Routed::MethodNotAllowed(allowed) => {
            handlers::method_not_allowed(shard, request, allowed, out)
        }
        Routed::NotFound => handlers::not_found(shard, request, out),
    }
}

/// The principal whose token the `Authorization: Bearer` header carries. Every
/// principal's token is compared in full, so timing reveals nothing of the tokens.
pub fn authenticate<'s>(shard: &'s Shard, authorization: Option<&[u8]>) -> Option<&'s Principal> {
    authenticate_in(&shard.config.principals, authorization)
}

/// [`authenticate`] over any principal list.
pub fn authenticate_in<'p>(
    principals: &'p [Principal],
    authorization: Option<&[u8]>,
) -> Option<&'p Principal> {
    let value = authorization?;
    if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = &value[7..];
    let mut found = None;
    for principal in principals {
        if constant_time_eq(token, principal.token.as_bytes()) {
            found = Some(principal);
        }
    }
    found
}

/// Equality whose time depends only on the lengths, never on where bytes differ.
fn constant_time_eq(presented: &[u8], secret: &[u8]) -> bool {
    let mut diff = presented.len() ^ secret.len();
    for (i, &b) in presented.iter().enumerate() {
        diff |= usize::from(b ^ secret.get(i).copied().unwrap_or(!b));
    }
    diff == 0
}

/// Whether `principal` may act on `project`.
pub fn may_access(principal: &Principal, project: &str) -> bool {
    principal.role == Role::Admin || principal.projects.iter().any(|p| p == "*" || p == project)
}

/// One line per request on target `access`: shard, method, path, status, response
/// bytes, microseconds, principal. Level-gated first, so it costs nothing when off.
pub fn access_log(
    shard: &Shard,
    head: &Head<'_>,
    response: &[u8],
    began: Instant,
    principal: &str,
) {
    if !log::log_enabled!(target: "access", log::Level::Info) {
        return;
    }
    let status = response
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .unwrap_or("???");
    log::info!(
        target: "access",
        "shard={} {} {} {} {}B {}us principal={}",
        shard.id,
        head.method.as_str(),
        head.path,
        status,
        response.len(),
        began.elapsed().as_micros(),
        principal
    );
}
