//! The `/fhir` reads ([`crate::domain::fhir`] has the rules): `GET
//! /fhir/QuestionnaireResponse/{id}` reads a stored resource back (through
//! [`crate::api::reads`]); `GET /fhir/metadata` says what is supported, and `GET
//! /fhir/StructureDefinition/epro-questionnaireresponse` is this server's profile. The
//! create is a write ([`crate::api::handlers::write`]). Their refusals are
//! `OperationOutcome`s.

use crate::api::ack;
use crate::api::handlers::read::record_read;
use crate::api::handlers::{Ask, Handled};
use crate::api::outcome::Outcome;
use crate::api::refusal::{Refusal, Resource, FHIR_JSON};
use crate::domain::fhir;
use crate::domain::validate::{is_json_media_type, is_media_type};
use crate::http::parse::Head;
use crate::http::percent;
use crate::http::response::Reply;
use crate::shard::context::Context;

/// `GET /fhir/QuestionnaireResponse/{id}`: found and authorized as a record by id.
pub fn read(ask: &Ask<'_>, _: &mut Reply<'_>) -> Handled {
    acceptable(ask.head())?;
    // A malformed escape names no record: 404 like any id that is not one.
    let id = ask.param("id").unwrap_or_default();
    let found = ack::parse_id(&id).filter(|&(shard, _)| shard < ask.ctx.shards());
    let record = found.ok_or(Refusal::Resource(Resource::NotFound))?;
    Ok(record_read(ask, record, true))
}

/// `GET /fhir/StructureDefinition/epro-questionnaireresponse`: this server's profile.
pub fn profile(_: &Context, head: &Head<'_>, reply: &mut Reply<'_>) -> Handled {
    acceptable(head)?;
    let definition = fhir::structure_definition();
    reply.ok(FHIR_JSON, &[definition.as_bytes()]);
    Ok(Outcome::after(head))
}

/// `GET /fhir/metadata`.
pub fn metadata(_: &Context, head: &Head<'_>, reply: &mut Reply<'_>) -> Handled {
    acceptable(head)?;
    let statement = fhir::capability_statement();
    reply.ok(FHIR_JSON, &[statement.as_bytes()]);
    Ok(Outcome::after(head))
}

/// `application/fhir+json` or `application/json`, parameters allowed (a charset only
/// if UTF-8).
pub fn is_fhir_media_type(value: &[u8]) -> bool {
    is_media_type(value, FHIR_JSON) || is_json_media_type(value)
}

/// A 406 unless a response in FHIR JSON is acceptable to the request.
pub fn acceptable(head: &Head<'_>) -> Result<(), Refusal> {
    if json_acceptable(head) {
        Ok(())
    } else {
        Err(Refusal::Resource(Resource::NotAcceptable))
    }
}

/// Whether a response in FHIR JSON is acceptable to the request: its `_format`
/// parameter when given (FHIR: it overrides `Accept`), else its `Accept` field. JSON
/// is all this server writes; XML, Turtle or HTML get 406.
fn json_acceptable(head: &Head<'_>) -> bool {
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
