//! FHIR R4 QuestionnaireResponse intake: the rules a resource must meet before it is
//! stored (byte for byte, as a record of its own kind), the fields the read APIs count
//! it by, and the FHIR-shaped answers (`OperationOutcome`, `CapabilityStatement`).
//!
//! Two layers of rules. R4's own ([`r4`], over the tables of [`structure`] and the
//! lexical forms of [`primitive`]): a resource that breaks them is not valid FHIR and
//! gets 400. This server's profile ([`PROFILE`]) on top: `subject.reference` is
//! `Patient/<id>` (that id is the patient for the read APIs), `authored` is present,
//! and project and site come from `meta.tag` entries with the systems
//! [`PROJECT_SYSTEM`] and [`SITE_SYSTEM`], each at most once, identifiers like a
//! submit's; a valid R4 resource that breaks the profile gets 422. Parsed with
//! serde_json: an intake endpoint of its own, not the plain submit's allocation-free
//! path.

pub mod primitive;
pub mod r4;
pub mod render;
pub mod resource_types;
pub mod structure;

use serde_json::{json, Map, Value};

use crate::domain::validate::{is_clean_id, Rules, MAX_ID, NO_PROJECT};

pub const PROJECT_SYSTEM: &str = "urn:epro-ingest:project";
pub const SITE_SYSTEM: &str = "urn:epro-ingest:site";

/// The canonical URL of this server's QuestionnaireResponse profile (listed in the
/// CapabilityStatement's `supportedProfile`; docs/fhir.md says what it requires).
pub const PROFILE: &str = "urn:epro-ingest:StructureDefinition/epro-questionnaireresponse";

/// One problem with a resource, as an `OperationOutcome.issue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// FHIR issue type: `invalid`, `required`, `structure` or `value`.
    pub code: &'static str,
    /// FHIRPath of the element (`QuestionnaireResponse.item[2].linkId`).
    pub expression: String,
    pub diagnostics: String,
}

fn issue(code: &'static str, expression: impl Into<String>, diagnostics: &str) -> Issue {
    Issue {
        code,
        expression: expression.into(),
        diagnostics: diagnostics.to_string(),
    }
}

/// What the read APIs count a stored resource by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub patient_id: String,
    pub project_id: Option<String>,
    pub site_id: Option<String>,
}

/// Why a resource was refused: `invalid` ones (not JSON, not an object, not a
/// QuestionnaireResponse, or breaking R4's rules) are 400; a valid R4 resource that
/// breaks this server's profile 422.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub invalid: bool,
    pub issues: Vec<Issue>,
}

/// Checks a resource to be created against the rules; its fields when it meets them
/// all.
pub fn validate(body: &[u8]) -> Result<Fields, Refused> {
    check(body, Rules::Create)
}

/// The fields of a stored resource (validated when it was created), for the read APIs.
/// Rules added since are not applied again: a resource stored before them still
/// counts under the project it was stored for.
pub fn fields(body: &[u8]) -> Option<Fields> {
    check(body, Rules::Stored).ok()
}

fn check(body: &[u8], rules: Rules) -> Result<Fields, Refused> {
    let value = parse(body, rules)?;
    let object = questionnaire_response(&value)?;
    if rules == Rules::Create {
        let issues = r4::check(object);
        if !issues.is_empty() {
            return Err(Refused {
                invalid: true,
                issues,
            });
        }
    }
    profile(object, rules)
}

/// A refusal for one structural issue: the body is not a resource at all.
fn structural(code: &'static str, path: &'static str, text: &str) -> Refused {
    Refused {
        invalid: true,
        issues: vec![issue(code, path, text)],
    }
}

/// The body as JSON, each name once per object on creation.
fn parse(body: &[u8], rules: Rules) -> Result<Value, Refused> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        structural(
            "structure",
            "QuestionnaireResponse",
            &format!("not JSON: {e}"),
        )
    })?;
    // serde_json keeps the last of two equal names, and the body is stored whole: a
    // second `meta` or `status` would be checked while the first is what readers see.
    let unique = match rules {
        Rules::Create => crate::domain::malformed::names_once(body),
        Rules::Stored => Ok(()),
    };
    match unique {
        Ok(()) => Ok(value),
        Err(e) => Err(structural(
            "structure",
            "QuestionnaireResponse",
            &e.to_string(),
        )),
    }
}

/// The value's object, if it is a QuestionnaireResponse.
fn questionnaire_response(value: &Value) -> Result<&Map<String, Value>, Refused> {
    let Some(object) = value.as_object() else {
        return Err(structural(
            "structure",
            "QuestionnaireResponse",
            "the resource must be a JSON object",
        ));
    };
    if object.get("resourceType").and_then(Value::as_str) != Some("QuestionnaireResponse") {
        return Err(structural(
            "invalid",
            "QuestionnaireResponse.resourceType",
            "resourceType must be QuestionnaireResponse",
        ));
    }
    Ok(object)
}

/// This server's profile: a patient subject, `authored`, and the project and site tags.
fn profile(object: &Map<String, Value>, rules: Rules) -> Result<Fields, Refused> {
    let mut issues = Vec::new();
    let patient = patient(object.get("subject"), &mut issues);
    if object.get("authored").is_none() {
        let why = "authored is required by this server's profile";
        issues.push(issue("required", "QuestionnaireResponse.authored", why));
    }
    let (project_id, site_id) = tags(object.get("meta"), rules, &mut issues);
    match patient {
        Some(patient_id) if issues.is_empty() => Ok(Fields {
            patient_id,
            project_id,
            site_id,
        }),
        _ => Err(Refused {
            invalid: false,
            issues,
        }),
    }
}

fn patient(subject: Option<&Value>, issues: &mut Vec<Issue>) -> Option<String> {
    let path = "QuestionnaireResponse.subject.reference";
    let Some(reference) = subject.and_then(|s| s.get("reference")) else {
        let why = "subject.reference is required by this server's profile";
        issues.push(issue("required", path, why));
        return None;
    };
    let id = reference
        .as_str()
        .and_then(|r| r.strip_prefix("Patient/"))
        .filter(|id| primitive::is_id(id));
    if id.is_none() {
        issues.push(issue(
            "value",
            path,
            "this server's profile takes subject.reference as Patient/<id>",
        ));
    }
    id.map(str::to_string)
}

/// Project and site from `meta.tag`, checked like a submit's `projectId` and `siteId`.
fn tags(
    meta: Option<&Value>,
    rules: Rules,
    issues: &mut Vec<Issue>,
) -> (Option<String>, Option<String>) {
    let (mut project, mut site) = (None, None);
    let tags = meta.and_then(|m| m.get("tag")).and_then(Value::as_array);
    for (i, tag) in tags.into_iter().flatten().enumerate() {
        let system = tag.get("system").and_then(Value::as_str);
        let slot = match system {
            Some(PROJECT_SYSTEM) => &mut project,
            Some(SITE_SYSTEM) => &mut site,
            _ => continue,
        };
        let path = format!("QuestionnaireResponse.meta.tag[{i}].code");
        match tag.get("code").and_then(Value::as_str) {
            Some(code)
                if !code.is_empty()
                    && code.len() <= MAX_ID
                    && code != NO_PROJECT
                    && (rules == Rules::Stored || is_clean_id(code)) =>
            {
                if slot.replace(code.to_string()).is_some() {
                    issues.push(issue("value", path, "a project or site tag given twice"));
                }
            }
            _ => issues.push(issue(
                "value",
                path,
                "a project or site tag needs a code of 1 to 128 bytes without control characters, not -",
            )),
        }
    }
    (project, site)
}

/// An `OperationOutcome` with these issues (all errors).
pub fn outcome(issues: &[Issue]) -> String {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut issue =
                json!({"severity": "error", "code": i.code, "diagnostics": i.diagnostics});
            if !i.expression.is_empty() {
                issue["expression"] = json!([i.expression]);
            }
            issue
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues}).to_string()
}

/// The `OperationOutcome` of a stored resource: informational, naming its id.
pub fn stored_outcome(id: &str) -> String {
    json!({"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational",
        "diagnostics": format!("stored as QuestionnaireResponse/{id}"),
    }]})
    .to_string()
}

/// This server's profile as an R4 StructureDefinition (a constraint on
/// QuestionnaireResponse): what `check` requires beyond R4.
pub fn structure_definition() -> String {
    let element = |path: &str, extra: Value| {
        let mut e = json!({"id": path, "path": path});
        if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
            e.extend(extra.clone());
        }
        e
    };
    json!({
        "resourceType": "StructureDefinition",
        "id": "epro-questionnaireresponse",
        "url": PROFILE,
        "name": "EproQuestionnaireResponse",
        "title": "epro-ingest QuestionnaireResponse",
        "status": "active",
        "date": "2026-12-04",
        "description": "What epro-ingest requires of a QuestionnaireResponse beyond R4 (refused with 422): subject.reference Patient/<id>, authored present; project and site, when given, as meta.tag codes with systems urn:epro-ingest:project and urn:epro-ingest:site, each at most once, 1 to 128 bytes without control characters, not -.",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": false,
        "type": "QuestionnaireResponse",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/QuestionnaireResponse",
        "derivation": "constraint",
        "differential": {"element": [
            element("QuestionnaireResponse.subject", json!({"min": 1})),
            element("QuestionnaireResponse.subject.reference", json!({
                "min": 1,
                "constraint": [{
                    "key": "epro-1", "severity": "error",
                    "human": "the subject is a Patient on this server: Patient/<id>",
                    "expression": "matches('^Patient/[A-Za-z0-9\\\\-\\\\.]{1,64}$')",
                }],
            })),
            element("QuestionnaireResponse.authored", json!({"min": 1})),
            element("QuestionnaireResponse.meta.tag", json!({
                "constraint": [{
                    "key": "epro-2", "severity": "error",
                    "human": "at most one project and one site tag",
                    "expression": "where(system = 'urn:epro-ingest:project').count() <= 1 and where(system = 'urn:epro-ingest:site').count() <= 1",
                }],
            })),
        ]},
    })
    .to_string()
}

/// `GET /fhir/metadata`: what this server supports.
pub fn capability_statement() -> String {
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-27",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json"],
        "software": {"name": "epro-ingest", "version": env!("CARGO_PKG_VERSION")},
        "rest": [{
            "mode": "server",
            "security": {"description": "Authorization: Bearer <token> of a configured principal"},
            "resource": [{
                "type": "QuestionnaireResponse",
                "supportedProfile": [PROFILE],
                "documentation": "R4 rules are refused with 400; this server's profile (subject.reference Patient/<id>, authored required, project and site in meta.tag) with 422",
                "interaction": [{"code": "create"}, {"code": "read"}],
                "versioning": "no-version",
                "readHistory": false,
                "updateCreate": false,
            }],
        }],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules added after a resource was stored do not stop it being counted: a
    /// property given twice and a tag code with a control character are refused at
    /// create, and still read for their fields.
    #[test]
    fn create_only_rules_are_not_applied_to_stored_resources() {
        let body = br#"{"resourceType":"QuestionnaireResponse","status":"completed",
            "meta":{"tag":[{"system":"urn:epro-ingest:project","code":"P001"},
                           {"system":"urn:epro-ingest:site","code":"S\u00011"}]},
            "subject":{"reference":"Patient/p1"},"authored":"2026-11-27","authored":"2026-11-27"}"#;
        let refused = validate(body).unwrap_err();
        assert!(refused.invalid, "{refused:?}");
        assert!(refused.issues[0]
            .diagnostics
            .contains("\"authored\" is given more than once"));
        let fields = fields(body).expect("a stored resource's fields");
        assert_eq!(fields.patient_id, "p1");
        assert_eq!(fields.project_id.as_deref(), Some("P001"));
        assert_eq!(fields.site_id.as_deref(), Some("S\u{1}1"));
    }
}
