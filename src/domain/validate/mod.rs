//! Request bodies: JSON parsed with simd-json into a reused tape, checked field by
//! field, returning strings borrowed from the parse. The body itself is never changed:
//! simd-json parses in place, so it parses a copy in a reused scratch buffer, and what
//! is stored is the original bytes.
//!
//! Rules: the body is a JSON object; a required field missing, of the wrong type or
//! empty is refused naming the field (every field that breaks a rule is reported, as
//! Gin's binding does: [`Invalids`]); optional fields, when present, are non-empty
//! strings; a field given twice is refused (which one would count is ambiguous);
//! identifiers are at most [`MAX_ID`] bytes, without control characters; every
//! surrogate escape is paired ([`prescan`]); arrays and objects nest at most
//! [`MAX_DEPTH`] levels; unknown fields are allowed and kept.

use simd_json::prelude::*;
use simd_json::tape::{Object, Value};
use simd_json::{Buffers, Tape};

use crate::domain::malformed::Fault;

mod json;

use json::malformed;
pub use json::prescan;

/// The project under which reports without a `projectId` are counted (the original
/// Gin clients send none): readable by admins and `"*"` principals, never a real
/// project's id, so a submit or tag naming it is refused.
pub const NO_PROJECT: &str = "-";

/// Longest identifier accepted (patient, project, site, submission, tag).
pub const MAX_ID: usize = 128;
/// Deepest nesting of arrays and objects accepted in a body (the body object itself is
/// level 1). Deeper is refused with 400: no ePRO form nests that deep, and every reader
/// of a stored record (the index at start-up, export, PostgreSQL) then parses it.
pub const MAX_DEPTH: usize = 64;

/// The fields a submit body's rules read, in the order [`Validator::submit`] takes them.
pub const SUBMIT_FIELDS: [&str; 6] = [
    "patientId",
    "reportData",
    "timestamp",
    "projectId",
    "siteId",
    "submissionId",
];
/// The fields a tag body's rules read.
pub const TAG_FIELDS: [&str; 3] = ["patientId", "tagName", "projectId"];

/// Why a body was refused: the message names the field and the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Not JSON: the byte offset of the fault, and what it is.
    Malformed(usize, Fault),
    NotObject,
    Missing(&'static str),
    NotString(&'static str),
    Empty(&'static str),
    TooLong(&'static str),
    /// A control character (escaped: a raw one is not JSON).
    Control(&'static str),
    Duplicate(&'static str),
    ReportDataType,
    Timestamp,
    TooDeep,
    /// `projectId` is [`NO_PROJECT`].
    ReservedProject,
}

/// Every rule a body broke: one per field at most, in the order of the fields' rules;
/// a body that is not a JSON object, or names a field twice, has just that one. Held
/// inline: a refusal allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalids {
    items: [Invalid; MAX_INVALIDS],
    len: usize,
}

/// The most rules one body can break (one per field of a submit).
pub const MAX_INVALIDS: usize = SUBMIT_FIELDS.len();

impl Invalids {
    fn none() -> Invalids {
        Invalids {
            items: [Invalid::NotObject; MAX_INVALIDS],
            len: 0,
        }
    }

    fn push(&mut self, invalid: Invalid) {
        if self.len < MAX_INVALIDS {
            self.items[self.len] = invalid;
            self.len += 1;
        }
    }

    /// The first rule broken: the v1 `error` message.
    pub fn first(&self) -> Invalid {
        self.items[0]
    }

    pub fn all(&self) -> &[Invalid] {
        &self.items[..self.len]
    }

    /// Keeps `result`'s value, or notes its error.
    fn note<T>(&mut self, result: Result<T, Invalid>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }
}

impl From<Invalid> for Invalids {
    fn from(invalid: Invalid) -> Invalids {
        let mut all = Invalids::none();
        all.push(invalid);
        all
    }
}

impl Invalid {
    /// Writes the message; every part is JSON-safe.
    pub fn message<'a>(&self, number: &'a mut itoa::Buffer) -> [&'a [u8]; 3] {
        let field = |f: &'static str, rule: &'static str| -> [&'a [u8]; 3] {
            [f.as_bytes(), rule.as_bytes(), b""]
        };
        match *self {
            Invalid::Malformed(at, fault) => [
                b"malformed JSON at byte ",
                number.format(at).as_bytes(),
                fault.message().as_bytes(),
            ],
            Invalid::NotObject => [b"body must be a JSON object", b"", b""],
            Invalid::Missing(f) => field(f, " is required"),
            Invalid::NotString(f) => field(f, " must be a string"),
            Invalid::Empty(f) => field(f, " must not be empty"),
            Invalid::TooLong(f) => field(f, " is longer than 128 bytes"),
            Invalid::Control(f) => field(f, " must not contain control characters"),
            Invalid::Duplicate(f) => field(f, " is given more than once"),
            Invalid::ReportDataType => {
                [b"reportData must be a non-empty string or object", b"", b""]
            }
            Invalid::Timestamp => [b"timestamp must be an RFC 3339 date-time", b"", b""],
            Invalid::ReservedProject => [
                b"projectId must not be - (reports without a projectId are counted under it)",
                b"",
                b"",
            ],
            Invalid::TooDeep => [
                b"body nests arrays and objects deeper than 64 levels",
                b"",
                b"",
            ],
        }
    }
}

/// Whether a `Content-Type` value is `application/json`: parameters allowed, but a
/// `charset` other than UTF-8 is refused (the body is read as UTF-8, RFC 8259 8.1).
pub fn is_json_media_type(value: &[u8]) -> bool {
    is_media_type(value, b"application/json")
}

/// Whether a `Content-Type` value is `media` (case-insensitive), with no `charset`
/// parameter other than UTF-8 (quoted or not, any case).
pub fn is_media_type(value: &[u8], media: &[u8]) -> bool {
    let mut parts = value.split(|&b| b == b';');
    let named = parts
        .next()
        .is_some_and(|m| m.trim_ascii().eq_ignore_ascii_case(media));
    named
        && parts.all(|parameter| {
            let eq = parameter.iter().position(|&b| b == b'=');
            match eq.map(|i| parameter.split_at(i)) {
                Some((name, charset)) if name.trim_ascii().eq_ignore_ascii_case(b"charset") => {
                    let charset = charset[1..].trim_ascii();
                    let charset = charset
                        .strip_prefix(b"\"")
                        .and_then(|c| c.strip_suffix(b"\""))
                        .unwrap_or(charset);
                    charset.eq_ignore_ascii_case(b"utf-8") || charset.eq_ignore_ascii_case(b"utf8")
                }
                _ => true,
            }
        })
}

/// A valid `/epro/submit` body.
#[derive(Debug, Default)]
pub struct Submission<'a> {
    pub patient_id: &'a str,
    pub project_id: Option<&'a str>,
    pub site_id: Option<&'a str>,
    pub submission_id: Option<&'a str>,
}

/// A valid `/api/v1/tags/add` body.
#[derive(Debug, Default)]
pub struct TagAdd<'a> {
    pub patient_id: &'a str,
    pub tag_name: &'a str,
    pub project_id: &'a str,
}

/// Which rules a body is held to: all of them before it is stored; once stored
/// (recovery, the read model, ship), only those it was stored under, so a rule added
/// later (the identifiers' control characters, surrogate pairing) never stops a record
/// from being counted or its key from being remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rules {
    Create,
    Stored,
}

/// One shard's reusable parse state.
pub struct Validator {
    scratch: Vec<u8>,
    buffers: Buffers,
    tape: Option<Tape<'static>>,
    rules: Rules,
}

impl Default for Validator {
    /// A validator for bodies to be stored.
    fn default() -> Self {
        Validator {
            scratch: Vec::with_capacity(4096),
            buffers: Buffers::new(4096),
            tape: Some(Tape::null()),
            rules: Rules::Create,
        }
    }
}

impl Validator {
    /// A validator for bodies already stored (see [`Rules`]).
    pub fn for_stored() -> Validator {
        Validator {
            rules: Rules::Stored,
            ..Validator::default()
        }
    }

    /// Validates a submission; `then` runs on the valid fields while they are borrowed.
    // Invalids is held inline on purpose (152 bytes on the refusal path): boxing it
    // would allocate for every refused body.
    #[allow(clippy::result_large_err)]
    pub fn submit<R>(
        &mut self,
        body: &[u8],
        then: impl FnOnce(&Submission<'_>) -> R,
    ) -> Result<R, Invalids> {
        let rules = self.rules;
        self.parse(body, |object| {
            let mut fields: [Option<Value<'_, '_>>; 6] = Default::default();
            collect(object, &SUBMIT_FIELDS, &mut fields)?;
            let [patient, report, timestamp, project, site, submission] = fields;
            let mut errors = Invalids::none();
            let patient_id = errors.note(required_id(patient, "patientId", rules));
            errors.note(report_data(report));
            errors.note(timestamp_rule(timestamp));
            let project_id = errors.note(project_id(project, rules));
            let site_id = errors.note(optional_id(site, "siteId", rules));
            let submission_id = errors.note(optional_id(submission, "submissionId", rules));
            let (Some(patient_id), Some(project_id), Some(site_id), Some(submission_id), 0) =
                (patient_id, project_id, site_id, submission_id, errors.len)
            else {
                return Err(errors);
            };
            let submission = Submission {
                patient_id,
                project_id,
                site_id,
                submission_id,
            };
            Ok(then(&submission))
        })
    }

    /// Validates a tag; `then` runs on the valid fields while they are borrowed.
    #[allow(clippy::result_large_err)] // as for submit
    pub fn tag<R>(
        &mut self,
        body: &[u8],
        then: impl FnOnce(&TagAdd<'_>) -> R,
    ) -> Result<R, Invalids> {
        let rules = self.rules;
        self.parse(body, |object| {
            let mut fields: [Option<Value<'_, '_>>; 3] = Default::default();
            collect(object, &TAG_FIELDS, &mut fields)?;
            let [patient, tag, project] = fields;
            let mut errors = Invalids::none();
            let patient_id = errors.note(required_id(patient, "patientId", rules));
            let tag_name = errors.note(required_id(tag, "tagName", rules));
            let project = project_id(project, rules)
                .and_then(|project| project.ok_or(Invalid::Missing("projectId")));
            let project_id = errors.note(project);
            let (Some(patient_id), Some(tag_name), Some(project_id)) =
                (patient_id, tag_name, project_id)
            else {
                return Err(errors);
            };
            Ok(then(&TagAdd {
                patient_id,
                tag_name,
                project_id,
            }))
        })
    }

    /// Parses `body` (a copy of it: simd-json parses in place) into the reused tape.
    #[allow(clippy::result_large_err)] // as for submit
    fn parse<R>(
        &mut self,
        body: &[u8],
        f: impl FnOnce(&Object<'_, '_>) -> Result<R, Invalids>,
    ) -> Result<R, Invalids> {
        // A surrogate fault is named unless the parser finds an earlier fault.
        let unpaired = match prescan(body, MAX_DEPTH, self.rules) {
            Ok(()) => None,
            Err(Invalid::Malformed(at, Fault::Surrogate)) => Some(at),
            Err(e) => return Err(e.into()),
        };
        self.scratch.clear();
        self.scratch.extend_from_slice(body);
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        let parsed = simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape);
        let result = match (parsed, unpaired) {
            (Err(e), unpaired) => Err(malformed(body, &e, unpaired).into()),
            (Ok(()), Some(at)) => Err(Invalid::Malformed(at, Fault::Surrogate).into()),
            (Ok(()), None) => match tape.as_value().as_object() {
                None => Err(Invalid::NotObject.into()),
                Some(object) => f(&object),
            },
        };
        self.tape = Some(tape.reset());
        result
    }
}

/// Picks the named fields out of `object`, refusing a name given twice.
#[allow(clippy::result_large_err)] // as for Validator::submit
fn collect<'t, 'i>(
    object: &Object<'t, 'i>,
    names: &[&'static str],
    out: &mut [Option<Value<'t, 'i>>],
) -> Result<(), Invalids> {
    for (key, value) in object.iter() {
        if let Some(i) = names.iter().position(|n| *n == key) {
            if out[i].is_some() {
                return Err(Invalid::Duplicate(names[i]).into());
            }
            out[i] = Some(value);
        }
    }
    Ok(())
}

/// `reportData`: a non-empty string or object.
fn report_data(value: Option<Value<'_, '_>>) -> Result<(), Invalid> {
    let value = value.ok_or(Invalid::Missing("reportData"))?;
    match (value.as_str(), value.as_object()) {
        (Some(s), _) if !s.is_empty() => Ok(()),
        (_, Some(o)) if !o.is_empty() => Ok(()),
        _ => Err(Invalid::ReportDataType),
    }
}

/// An optional `timestamp`: an RFC 3339 date-time.
fn timestamp_rule(value: Option<Value<'_, '_>>) -> Result<(), Invalid> {
    let Some(value) = value else {
        return Ok(());
    };
    let text = value.as_str().ok_or(Invalid::NotString("timestamp"))?;
    if !crate::base::clock::is_rfc3339(text) {
        return Err(Invalid::Timestamp);
    }
    Ok(())
}

/// An optional `projectId`, which must not be [`NO_PROJECT`].
fn project_id<'i>(value: Option<Value<'_, 'i>>, rules: Rules) -> Result<Option<&'i str>, Invalid> {
    let project = optional_id(value, "projectId", rules)?;
    if project == Some(NO_PROJECT) {
        return Err(Invalid::ReservedProject);
    }
    Ok(project)
}

fn required_id<'i>(
    value: Option<Value<'_, 'i>>,
    name: &'static str,
    rules: Rules,
) -> Result<&'i str, Invalid> {
    optional_id(value, name, rules)?.ok_or(Invalid::Missing(name))
}

fn optional_id<'i>(
    value: Option<Value<'_, 'i>>,
    name: &'static str,
    rules: Rules,
) -> Result<Option<&'i str>, Invalid> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value.into_string().ok_or(Invalid::NotString(name))?;
    if text.is_empty() {
        return Err(Invalid::Empty(name));
    }
    if text.len() > MAX_ID {
        return Err(Invalid::TooLong(name));
    }
    if rules == Rules::Create && !is_clean_id(text) {
        return Err(Invalid::Control(name));
    }
    Ok(Some(text))
}

/// Whether an identifier is free of control characters (C0, DEL, C1). Identifiers are
/// compared, counted and shipped as text: an invisible byte would make two look alike,
/// and PostgreSQL's text refuses U+0000.
pub fn is_clean_id(text: &str) -> bool {
    // By bytes (this runs on every submit): C0 and DEL are single bytes; C1 is 0xC2
    // followed by 0x80..=0x9F in UTF-8, looked for only when a 0xC2 is there at all.
    let bytes = text.as_bytes();
    bytes.iter().all(|&b| b >= 0x20 && b != 0x7f)
        && (!bytes.contains(&0xc2) || !bytes.windows(2).any(|w| w[0] == 0xc2 && w[1] < 0xa0))
}
