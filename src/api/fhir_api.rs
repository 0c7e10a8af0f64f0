//! The `/fhir` endpoints ([`crate::domain::fhir`] has the rules): `POST
//! /fhir/QuestionnaireResponse` stores a valid resource byte for byte as a record of
//! its own kind and answers 201 with `Location` and `ETag` (with an `Idempotency-Key`,
//! at most once per key, through [`crate::api::keyed`]); `GET
//! /fhir/QuestionnaireResponse/{id}` reads it back (through [`crate::api::reads`]); `GET
//! /fhir/metadata` says what is supported. Their refusals are `OperationOutcome`s.

use crate::api::ack;
use crate::api::keyed;
use crate::api::outcome::Outcome;
use crate::base::clock;
use crate::domain::auth::Principal;
use crate::domain::fhir::{self, Issue};
use crate::domain::keys::Keyed;
use crate::domain::validate::{is_json_media_type, is_media_type};
use crate::http::parse::Head;
use crate::http::percent;
use crate::http::request::Request;
use crate::http::response::{Header, Reply, Status, FHIR_JSON, RETRY_AFTER};
use crate::log::record::Kind;
use crate::log::LogError;
use crate::shard::context::Context;

/// Writes an `OperationOutcome` of one error issue with `status`.
pub fn refuse(
    reply: &mut Reply<'_>,
    status: Status,
    code: &'static str,
    expression: &str,
    diagnostics: &str,
    extra: &[Header<'_>],
) {
    let issue = Issue {
        code,
        expression: expression.to_string(),
        diagnostics: diagnostics.to_string(),
    };
    let body = fhir::outcome(&[issue]);
    reply.with(status, FHIR_JSON, extra, &[body.as_bytes()]);
}

/// `application/fhir+json` or `application/json`, parameters allowed (a charset only
/// if UTF-8).
fn is_fhir_media_type(value: &[u8]) -> bool {
    is_media_type(value, FHIR_JSON) || is_json_media_type(value)
}

/// Whether a response in FHIR JSON is acceptable to the request: its `_format`
/// parameter when given (FHIR: it overrides `Accept`), else its `Accept` field. JSON
/// is all this server writes; XML, Turtle or HTML get 406.
pub fn json_acceptable(head: &Head<'_>) -> bool {
    let format = head
        .query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|p| {
            let value = p.strip_prefix("_format=")?;
            // A query's `+` is a space: `_format=application/fhir+json` arrives either way.
            Some(percent::decode(value).map(|v| v.replace(' ', "+")))
        });
    match format {
        Some(Some(format)) => matches!(
            format.as_str(),
            "json" | "application/json" | "application/fhir+json" | "application/json+fhir"
        ),
        Some(None) => false,
        None => head.accept.map_or(true, accepts_json),
    }
}

/// An `Accept` value names a range that JSON meets, with a weight above zero (an
/// empty one accepts anything).
fn accepts_json(accept: &[u8]) -> bool {
    let ranges = accept.split(|&b| b == b',').map(<[u8]>::trim_ascii);
    let mut any = false;
    for range in ranges.filter(|r| !r.is_empty()) {
        any = true;
        let mut parts = range.split(|&b| b == b';').map(<[u8]>::trim_ascii);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.to_ascii_lowercase();
            p.strip_prefix(b"q=")
                .is_some_and(|q| q.iter().all(|&b| b == b'0' || b == b'.'))
        });
        let json = [
            &b"*/*"[..],
            b"application/*",
            b"application/json",
            b"application/fhir+json",
            b"application/json+fhir",
        ];
        if !refused && json.contains(&media.as_slice()) {
            return true;
        }
    }
    !any
}

/// The 406 of a request for a format this server cannot write.
fn refuse_format(reply: &mut Reply<'_>) {
    let why = "this server writes FHIR JSON only (application/fhir+json); ask for it in Accept or _format";
    refuse(reply, Status::NotAcceptable, "not-supported", "", why, &[]);
}

/// `POST /fhir/QuestionnaireResponse`.
pub fn create(
    ctx: &Context,
    who: &Principal,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome {
    let head = &request.head;
    let after = Outcome::after(head);
    if !json_acceptable(head) {
        refuse_format(reply);
        return after;
    }
    if !head.content_type.is_some_and(is_fhir_media_type) {
        let why =
            "Content-Type must be application/fhir+json or application/json (with a charset, only UTF-8)";
        refuse(
            reply,
            Status::UnsupportedMediaType,
            "not-supported",
            "QuestionnaireResponse",
            why,
            &[],
        );
        return after;
    }
    let fields = match fhir::validate(request.body) {
        Ok(fields) => fields,
        Err(refused) => {
            let status = if refused.invalid {
                Status::BadRequest
            } else {
                Status::UnprocessableContent
            };
            let body = fhir::outcome(&refused.issues);
            reply.with(status, FHIR_JSON, &[], &[body.as_bytes()]);
            return after;
        }
    };
    if fields
        .project_id
        .as_deref()
        .is_some_and(|p| !who.may_access(p))
    {
        let why = "this principal may not write to the resource's project (meta.tag)";
        refuse(
            reply,
            Status::Forbidden,
            "forbidden",
            "QuestionnaireResponse.meta.tag",
            why,
            &[],
        );
        return after;
    }
    let received_ns = clock::now_ns();
    let key = match keyed::header_key(head) {
        Ok(key) => key,
        Err(why) => {
            reply.error(Status::BadRequest, &[why.as_bytes()], None);
            return after;
        }
    };
    if let Some(key) = key {
        // Stored at most once per (principal, key), as a keyed submit is.
        let write = Keyed {
            kind: Kind::Fhir,
            principal: &who.id,
            key,
            key_in_body: false,
            received_ns,
            body: request.body,
        };
        if !keyed::owned_here(ctx, &write) {
            return keyed::defer(head, write.to_write());
        }
        let decision = keyed::decide(ctx, &write);
        keyed::respond(reply, request, decision.answer, false);
        return Outcome {
            durable: decision.durable,
            ..after
        };
    }
    let appended = match ctx.log() {
        Some(log) => log.append(Kind::Fhir, &who.id, None, received_ns, request.body),
        None => Err(LogError::Closed),
    };
    let seq = match appended {
        Ok(appended) => appended.seq,
        Err(e) => {
            let retry = if e == LogError::Unencodable {
                &[][..]
            } else {
                &[RETRY_AFTER][..]
            };
            let why = "the resource cannot be stored now";
            refuse(
                reply,
                Status::ServiceUnavailable,
                "transient",
                "QuestionnaireResponse",
                why,
                retry,
            );
            return after;
        }
    };
    ack::fhir_created(reply, (ctx.shard() as u16, seq, received_ns), request, None);
    Outcome::appended(ctx, head, seq)
}

/// `GET /fhir/QuestionnaireResponse/{id}`: found and authorized as a record by id.
pub fn read(
    ctx: &Context,
    who: &Principal,
    id: &str,
    head: &Head<'_>,
    reply: &mut Reply<'_>,
) -> Outcome {
    if !json_acceptable(head) {
        refuse_format(reply);
        return Outcome::after(head);
    }
    let shards = ctx.peers().map_or(1, |peers| peers.shards());
    let found = ack::parse_id(id).filter(|&(shard, _)| shard < shards);
    let Some((shard, seq)) = found else {
        let why = crate::api::outcome::NO_SUCH_RECORD;
        refuse(
            reply,
            Status::NotFound,
            "not-found",
            "QuestionnaireResponse",
            why,
            &[],
        );
        return Outcome::after(head);
    };
    Outcome::read_record(&who.id, (shard, seq), true, head)
}

/// `GET /fhir/StructureDefinition/epro-questionnaireresponse`: this server's profile.
pub fn profile(head: &Head<'_>, reply: &mut Reply<'_>) {
    if !json_acceptable(head) {
        return refuse_format(reply);
    }
    let definition = fhir::structure_definition();
    reply.with(Status::Ok, FHIR_JSON, &[], &[definition.as_bytes()]);
}

/// `GET /fhir/metadata`.
pub fn metadata(head: &Head<'_>, reply: &mut Reply<'_>) {
    if !json_acceptable(head) {
        return refuse_format(reply);
    }
    let statement = fhir::capability_statement();
    reply.with(Status::Ok, FHIR_JSON, &[], &[statement.as_bytes()]);
}
