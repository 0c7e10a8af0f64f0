//! One function per endpoint. Each writes exactly one response into the connection's
//! write buffer and says whether the connection continues and which stored record,
//! if any, must be durable before the response may leave.

use crate::clock;
use crate::config::{Durability, Principal, Role};
use crate::error::Reject;
use crate::http::parse::Head;
use crate::http::request::Request;
use crate::http::response::{self, ConnHeader, Status};
use crate::log::record::Kind;
use crate::log::LogError;
use crate::middleware::may_access;
use crate::reads::{Deferred, Read};
use crate::route::tree::{allow_header, Params};
use crate::route::Route;
use crate::shard::Shard;
use crate::validate::{is_json_media_type, Invalid};

/// What the connection does after a handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub keep_alive: bool,
    /// Write the response only once this record sequence number is durable.
    pub durable: Option<u64>,
    /// No response written yet: the connection awaits this cross-shard read, which
    /// writes it (see [`crate::reads`]).
    pub deferred: Option<Deferred>,
}

impl Outcome {
    pub fn close() -> Outcome {
        Outcome {
            keep_alive: false,
            durable: None,
            deferred: None,
        }
    }

    pub fn after(head: &Head<'_>) -> Outcome {
        Outcome {
            keep_alive: head.keep_alive,
            durable: None,
            deferred: None,
        }
    }
}

/// Runs the handler of `route` for an authenticated (where required) request.
pub fn run(
    shard: &Shard,
    route: Route,
    params: &Params<'_>,
    principal: Option<&Principal>,
    request: &Request<'_>,
    out: &mut Vec<u8>,
) -> Outcome {
    match (route, principal) {
        (Route::Healthz | Route::Livez, _) => text_ok(shard, request, out),
        (Route::Readyz, _) if shard.is_ready() => text_ok(shard, request, out),
        (Route::Readyz, _) => refuse(shard, request, out, Status::ServiceUnavailable, "not ready"),
        (Route::Submit, Some(who)) => submit(shard, who, request, out),
        (Route::AddTag, Some(who)) => add_tag(shard, who, request, out),
        (Route::Subjects | Route::Summary, Some(who)) => {
            let project = params.get("projectId").unwrap_or("");
            if !may_access(who, project) {
                return refuse(
                    shard,
                    request,
                    out,
                    Status::Forbidden,
                    "this principal may not read this project",
                );
            }
            let read = match route {
                Route::Subjects => Read::Subjects {
                    project: project.to_string(),
                    site: params.get("siteId").unwrap_or("").to_string(),
                },
                _ => Read::Summary {
                    project: project.to_string(),
                },
            };
            Outcome {
                deferred: Some(Deferred {
                    read,
                    principal: who.id.clone(),
                }),
                ..Outcome::after(&request.head)
            }
        }
        (Route::Permissions, Some(who)) => {
            permissions(shard, who, params.get("userId").unwrap_or(""), request, out)
        }
        // The onion authenticates every route but the health endpoints.
        (
            Route::Submit | Route::AddTag | Route::Permissions | Route::Subjects | Route::Summary,
            None,
        ) => refuse(
            shard,
            request,
            out,
            Status::Unauthorized,
            "missing or unknown bearer token",
        ),
    }
}

/// The permissions endpoint's body for `target`.
pub fn permissions_json(target: &Principal) -> serde_json::Value {
    let role = match target.role {
        Role::Device => "device",
        Role::Staff => "staff",
        Role::Admin => "admin",
    };
    serde_json::json!({"userId": target.id, "role": role, "projects": target.projects})
}

/// `GET /api/v1/users/{userId}/permissions`: a principal's own, or anyone's for admin.
fn permissions(
    shard: &Shard,
    who: &Principal,
    user: &str,
    request: &Request<'_>,
    out: &mut Vec<u8>,
) -> Outcome {
    if who.id != user && who.role != Role::Admin {
        return refuse(
            shard,
            request,
            out,
            Status::Forbidden,
            "only admin may read another user's permissions",
        );
    }
    // Bodies are built once per shard at start-up: principals do not change.
    let Some(i) = shard.config.principals.iter().position(|p| p.id == user) else {
        return refuse(shard, request, out, Status::NotFound, "no such user");
    };
    let body = &shard.permission_bodies[i];
    reply(shard, request, out, Status::Ok, response::JSON, &[body]);
    Outcome::after(&request.head)
}

fn text_ok(shard: &Shard, request: &Request<'_>, out: &mut Vec<u8>) -> Outcome {
    reply(shard, request, out, Status::Ok, response::TEXT, &[b"ok"]);
    Outcome::after(&request.head)
}

/// `POST /epro/submit`: validate, check the project scope, append, acknowledge.
fn submit(shard: &Shard, who: &Principal, request: &Request<'_>, out: &mut Vec<u8>) -> Outcome {
    if let Some(refused) = require_json(shard, request, out) {
        return refused;
    }
    let received_ns = clock::now_ns();
    let stored = shard
        .validator
        .borrow_mut()
        .submit(request.body, |submission| {
            if submission
                .project_id
                .is_some_and(|project| !may_access(who, project))
            {
                return Stored::Forbidden;
            }
            if shard.config.debug_panic_patient.as_deref() == Some(submission.patient_id) {
                panic!("debug_panic_patient matched");
            }
            let stored = store(shard, Kind::Report, who, received_ns, request.body);
            if let Stored::Seq(_) = stored {
                let (patient, project, site) = (
                    submission.patient_id,
                    submission.project_id,
                    submission.site_id,
                );
                shard
                    .index
                    .borrow_mut()
                    .add_report(patient, project, site, received_ns);
            }
            stored
        });
    match stored {
        Err(invalid) => refuse_invalid(shard, request, out, invalid),
        Ok(Stored::Forbidden) => refuse(
            shard,
            request,
            out,
            Status::Forbidden,
            "this principal may not write to the report's projectId",
        ),
        Ok(Stored::Failed(e)) => refuse_storage(shard, request, out, e),
        Ok(Stored::Seq(seq)) => {
            let mut id = [0u8; 32];
            let id = format_id(shard.id as u16, seq, &mut id);
            let at = clock::format_rfc3339(received_ns);
            let body: [&[u8]; 5] = [
                b"{\"status\":\"success\",\"message\":\"report received\",\"id\":\"",
                id,
                b"\",\"receivedAt\":\"",
                &at,
                b"\"}",
            ];
            reply(shard, request, out, Status::Ok, response::JSON, &body);
            durable_outcome(shard, request, seq)
        }
    }
}

/// `POST /api/v1/tags/add`: a tag is a record in the log like a report.
fn add_tag(shard: &Shard, who: &Principal, request: &Request<'_>, out: &mut Vec<u8>) -> Outcome {
    if let Some(refused) = require_json(shard, request, out) {
        return refused;
    }
    let received_ns = clock::now_ns();
    let stored = shard.validator.borrow_mut().tag(request.body, |tag| {
        let stored = append(shard, Kind::Tag, who, received_ns, request.body);
        if stored.is_ok() {
            shard
                .index
                .borrow_mut()
                .add_tag(tag.patient_id, tag.tag_name);
        }
        stored
    });
    match stored {
        Err(invalid) => refuse_invalid(shard, request, out, invalid),
        Ok(Err(e)) => refuse_storage(shard, request, out, e),
        Ok(Ok(seq)) => {
            reply(
                shard,
                request,
                out,
                Status::Ok,
                response::JSON,
                &[b"{\"success\":true}"],
            );
            durable_outcome(shard, request, seq)
        }
    }
}

/// What storing a validated body came to.
enum Stored {
    Seq(u64),
    Forbidden,
    Failed(LogError),
}

fn store(shard: &Shard, kind: Kind, who: &Principal, received_ns: u64, body: &[u8]) -> Stored {
    match append(shard, kind, who, received_ns, body) {
        Ok(seq) => Stored::Seq(seq),
        Err(e) => Stored::Failed(e),
    }
}

fn append(
    shard: &Shard,
    kind: Kind,
    who: &Principal,
    received_ns: u64,
    body: &[u8],
) -> Result<u64, LogError> {
    match shard.log() {
        Some(log) => log.append(kind, &who.id, received_ns, body),
        None => Err(LogError::Closed),
    }
}

/// 503: this shard cannot store records now.
fn refuse_storage(shard: &Shard, request: &Request<'_>, out: &mut Vec<u8>, e: LogError) -> Outcome {
    refuse(
        shard,
        request,
        out,
        Status::ServiceUnavailable,
        storage_message(e),
    )
}

fn storage_message(e: LogError) -> &'static str {
    match e {
        LogError::Failed => "storage failed on this shard; writes are refused",
        LogError::Closed => "not accepting writes (starting up or shutting down)",
        LogError::Behind => "storage is behind on this shard; retry later",
    }
}

fn durable_outcome(shard: &Shard, request: &Request<'_>, seq: u64) -> Outcome {
    let sync = shard
        .log()
        .is_some_and(|log| log.durability() == Durability::Sync);
    Outcome {
        durable: sync.then_some(seq),
        ..Outcome::after(&request.head)
    }
}

/// 415 unless the body is declared `application/json` (parameters allowed).
fn require_json(shard: &Shard, request: &Request<'_>, out: &mut Vec<u8>) -> Option<Outcome> {
    let is_json = request.head.content_type.is_some_and(is_json_media_type);
    (!is_json).then(|| {
        refuse(
            shard,
            request,
            out,
            Status::UnsupportedMediaType,
            "Content-Type must be application/json",
        )
    })
}

/// The record id (`s<shard>-<seq>`, as [`crate::log::export::record_id`] writes it)
/// without allocating.
fn format_id(shard: u16, seq: u64, buf: &mut [u8; 32]) -> &[u8] {
    let mut shard_digits = itoa::Buffer::new();
    let mut seq_digits = itoa::Buffer::new();
    let mut n = 0;
    for part in [
        b"s",
        shard_digits.format(shard).as_bytes(),
        b"-",
        seq_digits.format(seq).as_bytes(),
    ] {
        buf[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    &buf[..n]
}

fn refuse_invalid(
    shard: &Shard,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    invalid: Invalid,
) -> Outcome {
    let mut number = itoa::Buffer::new();
    let [a, b, c] = invalid.message(&mut number);
    let body: [&[u8]; 5] = [b"{\"error\":\"", a, b, c, b"\"}"];
    reply(
        shard,
        request,
        out,
        Status::BadRequest,
        response::JSON,
        &body,
    );
    Outcome::after(&request.head)
}

/// A response that keeps the connection as the request asked.
fn reply(
    shard: &Shard,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    status: Status,
    content_type: &[u8],
    body: &[&[u8]],
) {
    let date = shard.date.get();
    response::write(
        out,
        status,
        &date,
        conn_header(&request.head),
        content_type,
        None,
        body,
    );
}

/// An error response that keeps the connection as the request asked.
pub fn refuse(
    shard: &Shard,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    status: Status,
    message: &str,
) -> Outcome {
    let date = shard.date.get();
    response::write_json_error(
        out,
        status,
        message,
        &date,
        conn_header(&request.head),
        None,
    );
    Outcome::after(&request.head)
}

pub fn method_not_allowed(
    shard: &Shard,
    request: &Request<'_>,
    allowed: u8,
    out: &mut Vec<u8>,
) -> Outcome {
    let mut allow = [0u8; 64];
    let len = allow_header(allowed, &mut allow);
    reject(
        shard,
        request,
        out,
        Reject::MethodNotAllowed,
        Some((b"Allow", &allow[..len])),
    )
}

pub fn not_found(shard: &Shard, request: &Request<'_>, out: &mut Vec<u8>) -> Outcome {
    reject(shard, request, out, Reject::NotFound, None)
}

/// A routing rejection that keeps the connection as the request asked.
fn reject(
    shard: &Shard,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    reject: Reject,
    extra: Option<(&[u8], &[u8])>,
) -> Outcome {
    let date = shard.date.get();
    response::write_reject(out, reject, &date, conn_header(&request.head), extra);
    Outcome::after(&request.head)
}

/// What the response says about the connection: HTTP/1.0 keep-alive must be confirmed,
/// a close must be announced.
pub fn conn_header(head: &Head<'_>) -> ConnHeader {
    match (head.keep_alive, head.http10) {
        (false, _) => ConnHeader::Close,
        (true, true) => ConnHeader::KeepAlive,
        (true, false) => ConnHeader::None,
    }
}

/// Framing rejections close the connection before any handler runs; they are logged at
/// debug level so a flood of garbage cannot flood the log.
pub fn log_rejection(shard: &Shard, reject: Reject) {
    log::debug!("shard {}: rejected request: {reject:?}", shard.id);
}
