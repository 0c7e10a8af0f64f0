//! One function per endpoint. The onion ([`crate::api::middleware`]) has already checked
//! the route's [`crate::route::Access`]; each handler writes exactly one response
//! through the [`Reply`] and says, in its [`Outcome`], whether the connection continues
//! and which stored record, if any, must be durable before the response may leave.

use crate::api::ack;
use std::borrow::Cow;

use crate::api::fhir_api;
use crate::api::keyed::{self, Decision};
use crate::api::outcome::{Deferred, Outcome, Read, Work};
use crate::base::clock;
use crate::domain::auth::{Principal, Role};
use crate::domain::keys::{Keyed, KeyedWrite};
use crate::domain::validate::{is_json_media_type, Invalids};
use crate::http::parse::Head;
use crate::http::percent;
use crate::http::request::Request;
use crate::http::response::{Reply, Status, JSON, RETRY_AFTER, TEXT};
use crate::log::record::Kind;
use crate::log::{Appended, LogError};
use crate::route::tree::Params;
use crate::route::Route;
use crate::shard::context::Context;

/// Runs the handler of an open route (no token needed): the probes.
/// `/readyz` speaks for the process: once this shard is ready, every other shard is
/// asked too (a deferred read), so a probe never says 200 while any shard cannot write.
/// `/metrics` is open too, like the probes: it holds counts, never patient data, ids or
/// tokens; every shard is asked for its counters. So is `/openapi.json`, the contract.
pub fn open(ctx: &Context, route: Route, head: &Head<'_>, reply: &mut Reply<'_>) -> Outcome {
    let read = match route {
        Route::Readyz => match ctx.health() {
            Ok(()) => Read::Ready,
            Err(Some(fault)) => {
                ack::not_ready(reply, ctx.shard(), Some(fault));
                return Outcome::after(head);
            }
            Err(None) => {
                reply.error(
                    Status::ServiceUnavailable,
                    &[b"not ready"],
                    Some(RETRY_AFTER),
                );
                return Outcome::after(head);
            }
        },
        Route::Metrics => Read::Metrics,
        Route::OpenApi => {
            crate::api::openapi::with_document(|doc| reply.ok(JSON, &[doc]));
            return Outcome::after(head);
        }
        Route::FhirMetadata => {
            fhir_api::metadata(head, reply);
            return Outcome::after(head);
        }
        Route::FhirProfile => {
            fhir_api::profile(head, reply);
            return Outcome::after(head);
        }
        _ => {
            reply.ok(TEXT, &[b"ok"]);
            return Outcome::after(head);
        }
    };
    Outcome {
        deferred: Some(Deferred::new(Work::Read(read), "-".to_string())),
        ..Outcome::after(head)
    }
}

/// Runs the handler of `route` for the principal the onion authenticated.
pub fn run(
    ctx: &Context,
    route: Route,
    params: &Params<'_>,
    who: &Principal,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome {
    let head = &request.head;
    match route {
        Route::Submit => submit(ctx, who, request, reply),
        Route::AddTag => add_tag(ctx, who, request, reply),
        Route::Subjects | Route::Summary => read(who, route, params, head, reply),
        Route::Permissions => match param(params, "userId") {
            Some(user) => permissions(ctx, who, &user, head, reply),
            None => bad_param(reply, head),
        },
        Route::Record => match param(params, "id") {
            Some(id) => record(ctx, who, &id, head, reply),
            None => bad_param(reply, head),
        },
        // Every shard's chain head, asked over the mesh.
        Route::LogHeads => Outcome {
            deferred: Some(Deferred::new(Work::Read(Read::Heads), who.id.clone())),
            ..Outcome::after(head)
        },
        Route::FhirCreate => fhir_api::create(ctx, who, request, reply),
        // A malformed escape names no record: 404 like any id that is not one.
        Route::FhirRead => {
            let id = param(params, "id").unwrap_or_default();
            fhir_api::read(ctx, who, &id, head, reply)
        }
        Route::Healthz
        | Route::Livez
        | Route::Readyz
        | Route::Metrics
        | Route::OpenApi
        | Route::FhirMetadata
        | Route::FhirProfile => open(ctx, route, head, reply),
    }
}

/// `GET /api/v1/records/{id}`: found by its id (`s<shard>-<seq>`), read and
/// authorized by its project in [`crate::api::reads`].
fn record(
    ctx: &Context,
    who: &Principal,
    id: &str,
    head: &Head<'_>,
    reply: &mut Reply<'_>,
) -> Outcome {
    let shards = ctx.peers().map_or(1, |peers| peers.shards());
    let Some((shard, seq)) = ack::parse_id(id) else {
        return refuse(
            reply,
            head,
            Status::BadRequest,
            "a record id is s<shard>-<sequence number>",
        );
    };
    if shard >= shards {
        return refuse(
            reply,
            head,
            Status::NotFound,
            crate::api::outcome::NO_SUCH_RECORD,
        );
    }
    Outcome::read_record(&who.id, (shard, seq), false, head)
}

/// Path parameter `name`, percent-decoded (`Some("")` when the route has none of that
/// name); `None` when its escapes are malformed.
fn param<'p>(params: &Params<'p>, name: &str) -> Option<Cow<'p, str>> {
    percent::decode(params.get(name).unwrap_or(""))
}

fn bad_param(reply: &mut Reply<'_>, head: &Head<'_>) -> Outcome {
    let message = "a path parameter has a malformed percent-escape or is not UTF-8";
    refuse(reply, head, Status::BadRequest, message)
}

/// The subjects and summary reads: authorized here, answered across shards by
/// [`crate::api::reads`] once the connection awaits them.
fn read(
    who: &Principal,
    route: Route,
    params: &Params<'_>,
    head: &Head<'_>,
    reply: &mut Reply<'_>,
) -> Outcome {
    let (Some(project), Some(site)) = (param(params, "projectId"), param(params, "siteId")) else {
        return bad_param(reply, head);
    };
    let project = project.as_ref();
    if !who.may_access(project) {
        return refuse(
            reply,
            head,
            Status::Forbidden,
            "this principal may not read this project",
        );
    }
    let read = match route {
        Route::Subjects => Read::Subjects {
            project: project.to_string(),
            site: site.into_owned(),
        },
        _ => Read::Summary {
            project: project.to_string(),
        },
    };
    Outcome {
        deferred: Some(Deferred::new(Work::Read(read), who.id.clone())),
        ..Outcome::after(head)
    }
}

/// `GET /api/v1/users/{userId}/permissions`: a principal's own, or anyone's for admin.
fn permissions(
    ctx: &Context,
    who: &Principal,
    user: &str,
    head: &Head<'_>,
    reply: &mut Reply<'_>,
) -> Outcome {
    if who.id != user && who.role != Role::Admin {
        return refuse(
            reply,
            head,
            Status::Forbidden,
            "only admin may read another user's permissions",
        );
    }
    match ctx.principals().permissions_body(user) {
        Some(body) => {
            reply.ok(JSON, &[body]);
            Outcome::after(head)
        }
        None => refuse(reply, head, Status::NotFound, "no such user"),
    }
}

/// `POST /epro/submit`: validate, check the project scope, append, acknowledge. A
/// submit with an idempotency key goes to its key's owner shard ([`crate::api::keyed`]).
fn submit(ctx: &Context, who: &Principal, request: &Request<'_>, reply: &mut Reply<'_>) -> Outcome {
    let head = &request.head;
    if let Some(refused) = require_json(request, reply) {
        return refused;
    }
    let header_key = match keyed::header_key(head) {
        Ok(key) => key,
        Err(why) => return refuse(reply, head, Status::BadRequest, why),
    };
    let received_ns = clock::now_ns();
    let stored = ctx.validator().submit(request.body, |submission| {
        if submission
            .project_id
            .is_some_and(|project| !who.may_access(project))
        {
            return Stored::Forbidden;
        }
        #[cfg(feature = "test-seams")]
        {
            let seams = &ctx.config().test_seams;
            if seams.panic_patient.as_deref() == Some(submission.patient_id) {
                panic!("test seam: panic_patient");
            }
            if seams.wedge_patient.as_deref() == Some(submission.patient_id) {
                std::thread::sleep(std::time::Duration::from_secs(3));
            }
            if seams.escape_patient.as_deref() == Some(submission.patient_id) {
                // Later, on its own: spawn_local may run a task at once, inside the onion.
                crate::base::task::spawn("test seam", async {
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                    panic!("test seam: escape_patient");
                })
                .detach();
            }
        }
        let key = match (submission.submission_id, header_key) {
            (Some(body), Some(header)) if body != header => return Stored::KeyMismatch,
            (Some(body), _) => Some((body, true)),
            (None, header) => header.map(|header| (header, false)),
        };
        store(ctx, Kind::Report, who, key, received_ns, request.body)
    });
    let forbidden = "this principal may not write to the report's projectId";
    answer_stored(ctx, request, reply, Kind::Report, stored, forbidden)
}

const KEY_MISMATCH: &str = "submissionId and Idempotency-Key differ";
/// `POST /api/v1/tags/add`: a tag is a record in the log like a report; with an
/// `Idempotency-Key` it is stored at most once per key, like a submit.
fn add_tag(
    ctx: &Context,
    who: &Principal,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome {
    let head = &request.head;
    if let Some(refused) = require_json(request, reply) {
        return refused;
    }
    let header_key = match keyed::header_key(head) {
        Ok(key) => key,
        Err(why) => return refuse(reply, head, Status::BadRequest, why),
    };
    let received_ns = clock::now_ns();
    // Authorized like a submit to the tag's project.
    let stored = ctx.validator().tag(request.body, |tag| {
        if !who.may_access(tag.project_id) {
            return Stored::Forbidden;
        }
        let key = header_key.map(|key| (key, false));
        store(ctx, Kind::Tag, who, key, received_ns, request.body)
    });
    let forbidden = "this principal may not write to the tag's projectId";
    answer_stored(ctx, request, reply, Kind::Tag, stored, forbidden)
}

/// Answers what storing a validated record came to: its error, its deferral to the
/// key's owner, or its acknowledgement (once durable, with durability `sync`).
fn answer_stored(
    ctx: &Context,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
    kind: Kind,
    stored: Result<Stored, Invalids>,
    forbidden: &str,
) -> Outcome {
    let head = &request.head;
    let appended = match stored {
        Err(invalid) => {
            ack::refuse_invalid(reply, invalid);
            return Outcome::after(head);
        }
        Ok(Stored::Forbidden) => return refuse(reply, head, Status::Forbidden, forbidden),
        Ok(Stored::KeyMismatch) => return refuse(reply, head, Status::BadRequest, KEY_MISMATCH),
        Ok(Stored::Keyed(write)) => return keyed::defer(head, write),
        Ok(Stored::KeyedHere {
            decision,
            key_in_body,
        }) => {
            keyed::respond(reply, request, decision.answer, key_in_body);
            return Outcome {
                durable: decision.durable,
                ..Outcome::after(head)
            };
        }
        Ok(Stored::Appended(Err(e))) => return refuse_storage(reply, head, e),
        Ok(Stored::Appended(Ok(appended))) => appended,
    };
    let Appended { seq, received_ns } = appended;
    ack::acknowledge(reply, kind, ctx.shard() as u16, seq, received_ns, None);
    Outcome::appended(ctx, head, seq)
}

/// What storing a validated submission came to.
enum Stored {
    Appended(Result<Appended, LogError>),
    /// For its key's owner shard, another one, to store.
    Keyed(KeyedWrite),
    /// Decided here: this shard owns the key.
    KeyedHere {
        decision: Decision,
        key_in_body: bool,
    },
    Forbidden,
    /// Body `submissionId` and `Idempotency-Key` header disagree.
    KeyMismatch,
}

/// Appends a validated record, or, when it has a key (and whether that key is its
/// body's), has its key's owner decide: this shard at once, or another one later.
fn store(
    ctx: &Context,
    kind: Kind,
    who: &Principal,
    key: Option<(&str, bool)>,
    received_ns: u64,
    body: &[u8],
) -> Stored {
    match key {
        Some((key, key_in_body)) => {
            let write = Keyed {
                kind,
                principal: &who.id,
                key,
                key_in_body,
                received_ns,
                body,
            };
            if keyed::owned_here(ctx, &write) {
                Stored::KeyedHere {
                    decision: keyed::decide(ctx, &write),
                    key_in_body,
                }
            } else {
                Stored::Keyed(write.to_write())
            }
        }
        None => Stored::Appended(append(ctx, kind, who, received_ns, body)),
    }
}

fn append(
    ctx: &Context,
    kind: Kind,
    who: &Principal,
    received_ns: u64,
    body: &[u8],
) -> Result<Appended, LogError> {
    match ctx.log() {
        Some(log) => log.append(kind, &who.id, None, received_ns, body),
        None => Err(LogError::Closed),
    }
}

/// 503: this shard cannot store records now.
fn refuse_storage(reply: &mut Reply<'_>, head: &Head<'_>, e: LogError) -> Outcome {
    ack::refuse_storage(reply, e);
    Outcome::after(head)
}

/// 415 unless the body is declared `application/json` (parameters allowed; a charset
/// only if UTF-8).
fn require_json(request: &Request<'_>, reply: &mut Reply<'_>) -> Option<Outcome> {
    let head = &request.head;
    let is_json = head.content_type.is_some_and(is_json_media_type);
    (!is_json).then(|| {
        refuse(
            reply,
            head,
            Status::UnsupportedMediaType,
            "Content-Type must be application/json (with a charset, only UTF-8)",
        )
    })
}

/// An error response that keeps the connection as the request asked.
pub fn refuse(reply: &mut Reply<'_>, head: &Head<'_>, status: Status, message: &str) -> Outcome {
    reply.error(status, &[message.as_bytes()], None);
    Outcome::after(head)
}
