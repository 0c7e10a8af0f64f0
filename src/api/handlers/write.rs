//! The three writes (a report, a tag, a FHIR resource) and the one pipeline they share:
//! media type, idempotency key, validate and authorize, then owned here? (a keyed
//! write is decided by its key's owner shard, [`crate::api::keyed`]), decide, defer or
//! append, and answer (once durable, with durability `sync`).

use crate::api::ack;
use crate::api::handlers::fhir::{acceptable, is_fhir_media_type};
use crate::api::handlers::{Ask, Handled};
use crate::api::keyed::{self, Decision};
use crate::api::outcome::Outcome;
use crate::api::refusal::{Refusal, Resource, Why};
use crate::base::clock;
use crate::domain::fhir;
use crate::domain::keys::{Keyed, KeyedWrite};
use crate::domain::pending::Fields;
use crate::domain::validate::{is_json_media_type, Submission};
use crate::http::response::Reply;
use crate::log::record::Kind;
use crate::log::{Appended, LogError};

/// `POST /epro/submit`: a report. Its key is its body's `submissionId`, else its
/// `Idempotency-Key`.
pub fn submit(ask: &Ask<'_>, reply: &mut Reply<'_>) -> Handled {
    write(ask, reply, Kind::Report)
}

/// `POST /api/v1/tags/add`: a tag is a record in the log like a report, authorized
/// like a submit to the tag's project.
pub fn add_tag(ask: &Ask<'_>, reply: &mut Reply<'_>) -> Handled {
    write(ask, reply, Kind::Tag)
}

/// `POST /fhir/QuestionnaireResponse`: a valid resource, stored byte for byte as a
/// record of its own kind, answered 201 with `Location` and `ETag`.
pub fn create(ask: &Ask<'_>, reply: &mut Reply<'_>) -> Handled {
    write(ask, reply, Kind::Fhir)
}

/// A key, and whether it is the body's own (`submissionId`) rather than the header's.
type Key<'k> = Option<(&'k str, bool)>;

/// The pipeline: each kind's checks of the request, in its order, then [`store`] and
/// [`answer`].
fn write(ask: &Ask<'_>, reply: &mut Reply<'_>, kind: Kind) -> Handled {
    let head = ask.head();
    if kind == Kind::Fhir {
        acceptable(head)?;
    }
    media_type(head.content_type, kind)?;
    let header_key = keyed::header_key(head).map_err(Refusal::BadKey);
    let received_ns = clock::now_ns();
    let keep =
        |key: Key<'_>, report: Option<&Submission<'_>>| store(ask, kind, key, received_ns, report);
    let stored = match kind {
        Kind::Fhir => resource(ask, header_key, keep)?,
        Kind::Tag => tag(ask, header_key?, keep)?,
        Kind::Report => report(ask, header_key?, keep)?,
    };
    answer(ask, reply, kind, stored)
}

/// A 415 unless the body is declared as the kind's media type (parameters allowed; a
/// charset only if UTF-8).
fn media_type(content_type: Option<&[u8]>, kind: Kind) -> Result<(), Refusal> {
    let (fits, refused): (fn(&[u8]) -> bool, _) = match kind {
        Kind::Fhir => (is_fhir_media_type, Refusal::Resource(Resource::MediaType)),
        Kind::Report | Kind::Tag => (is_json_media_type, Refusal::Fixed(Why::NotJson)),
    };
    if content_type.is_some_and(fits) {
        Ok(())
    } else {
        Err(refused)
    }
}

/// A report: valid, of a project the caller may write, its two keys (if both) alike.
fn report(
    ask: &Ask<'_>,
    header_key: Option<&str>,
    store: impl FnOnce(Key<'_>, Option<&Submission<'_>>) -> Stored,
) -> Result<Stored, Refusal> {
    let who = ask.who;
    let validated = ask.ctx.validator().submit(ask.request.body, |submission| {
        if submission.project_id.is_some_and(|p| !who.may_access(p)) {
            return Err(Refusal::Fixed(Why::ReportForbidden));
        }
        #[cfg(feature = "test-seams")]
        seams(ask, submission.patient_id);
        let key = match (submission.submission_id, header_key) {
            (Some(body), Some(header)) if body != header => {
                return Err(Refusal::Fixed(Why::KeyMismatch))
            }
            (Some(body), _) => Some((body, true)),
            (None, header) => header.map(|header| (header, false)),
        };
        Ok(store(key, Some(submission)))
    });
    validated.map_err(Refusal::Invalid)?
}

/// A tag: valid, of a project the caller may write.
fn tag(
    ask: &Ask<'_>,
    header_key: Option<&str>,
    store: impl FnOnce(Key<'_>, Option<&Submission<'_>>) -> Stored,
) -> Result<Stored, Refusal> {
    let who = ask.who;
    let validated = ask.ctx.validator().tag(ask.request.body, |tag| {
        if !who.may_access(tag.project_id) {
            return Err(Refusal::Fixed(Why::TagForbidden));
        }
        Ok(store(header_key.map(|key| (key, false)), None))
    });
    validated.map_err(Refusal::Invalid)?
}

/// A FHIR resource: valid, of a project (`meta.tag`) the caller may write; its key
/// is looked at only then.
fn resource(
    ask: &Ask<'_>,
    header_key: Result<Option<&str>, Refusal>,
    store: impl FnOnce(Key<'_>, Option<&Submission<'_>>) -> Stored,
) -> Result<Stored, Refusal> {
    let fields = fhir::validate(ask.request.body).map_err(|_| Refusal::InvalidResource)?;
    if fields
        .project_id
        .as_deref()
        .is_some_and(|p| !ask.who.may_access(p))
    {
        return Err(Refusal::Resource(Resource::Forbidden));
    }
    Ok(store(header_key?.map(|key| (key, false)), None))
}

/// What storing a validated record came to.
enum Stored {
    Appended(Result<Appended, LogError>),
    /// For its key's owner shard, another one, to store.
    Keyed(KeyedWrite),
    /// Decided here: this shard owns the key.
    KeyedHere {
        decision: Decision,
        key_in_body: bool,
    },
}

/// Appends a validated record, or, when it has a key, has its key's owner decide:
/// this shard at once, or another one later. A report leaves its validated fields
/// for the index of the shard that appends it, to count it by once durable.
fn store(
    ask: &Ask<'_>,
    kind: Kind,
    key: Key<'_>,
    received_ns: u64,
    report: Option<&Submission<'_>>,
) -> Stored {
    let (ctx, body) = (ask.ctx, ask.request.body);
    let principal = &ask.who.id;
    let report = report.map(Fields::of);
    let Some((key, key_in_body)) = key else {
        let appended = match ctx.log() {
            Some(log) => log.append(kind, principal, None, received_ns, body),
            None => Err(LogError::Closed),
        };
        if let (Ok(appended), Some(report)) = (&appended, report) {
            ctx.index().borrow_mut().expect_report(appended.seq, report);
        }
        return Stored::Appended(appended);
    };
    let write = Keyed {
        kind,
        principal,
        key,
        key_in_body,
        received_ns,
        body,
        report,
    };
    if !keyed::owned_here(ctx, &write) {
        return Stored::Keyed(write.to_write());
    }
    Stored::KeyedHere {
        decision: keyed::decide(ctx, &write),
        key_in_body,
    }
}

/// Answers what storing came to: its deferral to the key's owner, the owner's
/// decision, or the record's acknowledgement (once durable, with durability `sync`).
fn answer(ask: &Ask<'_>, reply: &mut Reply<'_>, kind: Kind, stored: Stored) -> Handled {
    let (ctx, head) = (ask.ctx, ask.head());
    match stored {
        Stored::Keyed(write) => Ok(keyed::defer(head, write)),
        Stored::KeyedHere {
            decision,
            key_in_body,
        } => {
            keyed::respond(reply, ask.request, decision.answer, key_in_body);
            Ok(Outcome {
                durable: decision.durable,
                ..Outcome::after(head)
            })
        }
        Stored::Appended(Err(e)) if kind == Kind::Fhir => {
            Err(Refusal::Resource(Resource::NotStored(e)))
        }
        Stored::Appended(Err(e)) => Err(Refusal::Storage(e)),
        Stored::Appended(Ok(Appended { seq, received_ns })) => {
            let stored = (ctx.shard() as u16, seq, received_ns);
            if kind == Kind::Fhir {
                ack::fhir_created(reply, stored, ask.request, None);
            } else {
                ack::acknowledge(reply, kind, stored.0, seq, received_ns, None);
            }
            Ok(Outcome::appended(ctx, head, seq))
        }
    }
}

/// The test seams of a submit: a patient whose report panics the handler, wedges the
/// shard, or panics a task of its own later.
#[cfg(feature = "test-seams")]
fn seams(ask: &Ask<'_>, patient: &str) {
    let seams = &ask.ctx.config().test_seams;
    if seams.panic_patient.as_deref() == Some(patient) {
        panic!("test seam: panic_patient");
    }
    if seams.wedge_patient.as_deref() == Some(patient) {
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
    if seams.escape_patient.as_deref() == Some(patient) {
        // Later, on its own: spawn_local may run a task at once, inside the onion.
        crate::base::task::spawn("test seam", async {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            panic!("test seam: escape_patient");
        })
        .detach();
    }
}
