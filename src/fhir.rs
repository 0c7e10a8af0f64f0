//! FHIR R4 QuestionnaireResponse intake: the rules a resource must meet before it is
//! stored (byte for byte, as a record of its own kind), the fields the read APIs count
//! it by, and the FHIR-shaped answers (`OperationOutcome`, `CapabilityStatement`).
//!
//! Rules (R4): `resourceType` is `QuestionnaireResponse`; `status` is one of R4's five;
//! `subject.reference` is `Patient/<id>` (that id is the patient for the read APIs);
//! `authored` is a FHIR dateTime; every `item`, at any depth (under items and under
//! answers), has a non-empty string `linkId`; `questionnaire`, when present, is a
//! canonical URL. Project and site come from `meta.tag` entries with the systems
//! [`PROJECT_SYSTEM`] and [`SITE_SYSTEM`]. Parsed with serde_json: an intake endpoint
//! of its own, not the plain submit's allocation-free path.

use serde_json::{json, Value};

use crate::validate::{is_clean_id, Rules, MAX_ID, NO_PROJECT};

pub const PROJECT_SYSTEM: &str = "urn:epro-ingest:project";
pub const SITE_SYSTEM: &str = "urn:epro-ingest:site";

const STATUSES: [&str; 5] = [
    "in-progress",
    "completed",
    "amended",
    "entered-in-error",
    "stopped",
];

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

/// Why a resource was refused: `structural` ones (not JSON, not an object, not a
/// QuestionnaireResponse) are 400; rule violations 422.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub structural: bool,
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
    let structural = |i: Issue| Refused {
        structural: true,
        issues: vec![i],
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        structural(issue(
            "structure",
            "QuestionnaireResponse",
            &format!("not JSON: {e}"),
        ))
    })?;
    // serde_json keeps the last of two equal names, and the body is stored whole: a
    // second `meta` or `status` would be checked while the first is what readers see.
    let unique = match rules {
        Rules::Create => crate::malformed::names_once(body),
        Rules::Stored => Ok(()),
    };
    if let Err(e) = unique {
        return Err(structural(issue(
            "structure",
            "QuestionnaireResponse",
            &e.to_string(),
        )));
    }
    let Some(object) = value.as_object() else {
        return Err(structural(issue(
            "structure",
            "QuestionnaireResponse",
            "the resource must be a JSON object",
        )));
    };
    if object.get("resourceType").and_then(Value::as_str) != Some("QuestionnaireResponse") {
        return Err(structural(issue(
            "invalid",
            "QuestionnaireResponse.resourceType",
            "resourceType must be QuestionnaireResponse",
        )));
    }
    let mut issues = Vec::new();
    match object.get("status").map(Value::as_str) {
        None => issues.push(issue(
            "required",
            "QuestionnaireResponse.status",
            "status is required",
        )),
        Some(Some(s)) if STATUSES.contains(&s) => {}
        Some(_) => issues.push(issue(
            "value",
            "QuestionnaireResponse.status",
            "status must be in-progress, completed, amended, entered-in-error or stopped",
        )),
    }
    let patient = patient(object.get("subject"), &mut issues);
    match object.get("authored").map(Value::as_str) {
        None => issues.push(issue(
            "required",
            "QuestionnaireResponse.authored",
            "authored is required",
        )),
        Some(Some(s)) if is_date_time(s) => {}
        Some(_) => issues.push(issue(
            "value",
            "QuestionnaireResponse.authored",
            "authored must be a FHIR dateTime",
        )),
    }
    if let Some(q) = object.get("questionnaire") {
        if !q.as_str().is_some_and(is_canonical) {
            issues.push(issue(
                "value",
                "QuestionnaireResponse.questionnaire",
                "questionnaire must be a canonical URL",
            ));
        }
    }
    items(object.get("item"), "QuestionnaireResponse", &mut issues);
    let (project_id, site_id) = tags(object.get("meta"), rules, &mut issues);
    match patient {
        Some(patient_id) if issues.is_empty() => Ok(Fields {
            patient_id,
            project_id,
            site_id,
        }),
        _ => Err(Refused {
            structural: false,
            issues,
        }),
    }
}

fn patient(subject: Option<&Value>, issues: &mut Vec<Issue>) -> Option<String> {
    let path = "QuestionnaireResponse.subject.reference";
    let Some(reference) = subject.and_then(|s| s.get("reference")) else {
        issues.push(issue("required", path, "subject.reference is required"));
        return None;
    };
    let id = reference
        .as_str()
        .and_then(|r| r.strip_prefix("Patient/"))
        .filter(|id| is_fhir_id(id));
    if id.is_none() {
        issues.push(issue(
            "value",
            path,
            "subject.reference must be Patient/<id>",
        ));
    }
    id.map(str::to_string)
}

/// Every `item` under `parent`, at any depth: each needs a non-empty string `linkId`.
fn items(list: Option<&Value>, parent: &str, issues: &mut Vec<Issue>) {
    let Some(list) = list else {
        return;
    };
    let Some(list) = list.as_array() else {
        issues.push(issue(
            "structure",
            format!("{parent}.item"),
            "item must be an array",
        ));
        return;
    };
    for (i, item) in list.iter().enumerate() {
        let here = format!("{parent}.item[{i}]");
        let link = item.get("linkId").and_then(Value::as_str);
        if !link.is_some_and(|l| !l.is_empty()) {
            let code = if item.get("linkId").is_none() {
                "required"
            } else {
                "value"
            };
            issues.push(issue(
                code,
                format!("{here}.linkId"),
                "every item needs a non-empty linkId",
            ));
        }
        items(item.get("item"), &here, issues);
        if let Some(answers) = item.get("answer").and_then(Value::as_array) {
            for (j, answer) in answers.iter().enumerate() {
                items(answer.get("item"), &format!("{here}.answer[{j}]"), issues);
            }
        }
    }
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

/// FHIR `id`: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// FHIR `dateTime`: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or a date and time with seconds,
/// optional fraction, and a zone (`Z` or `+hh:mm`).
pub fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    match b.len() {
        4 => digits(0..4),
        7 => digits(0..4) && b[4] == b'-' && digits(5..7),
        10 => digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10),
        _ => crate::clock::is_rfc3339(s),
    }
}

/// A canonical URL: an absolute URI (`scheme:...`) without whitespace, with an optional
/// `|version`; or, as FHIR allows for a resource on the same server and as the R4
/// examples write it, `Questionnaire/<id>`.
fn is_canonical(s: &str) -> bool {
    let url = s.split_once('|').map_or(s, |(url, _)| url);
    if url.strip_prefix("Questionnaire/").is_some_and(is_fhir_id) {
        return true;
    }
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    scheme_ok && !rest.is_empty() && !s.bytes().any(|b| b.is_ascii_whitespace())
}

/// An `OperationOutcome` with these issues (all errors).
pub fn outcome(issues: &[Issue]) -> String {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            json!({"severity": "error", "code": i.code, "diagnostics": i.diagnostics,
                   "expression": [i.expression]})
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
        assert!(refused.structural, "{refused:?}");
        assert!(refused.issues[0]
            .diagnostics
            .contains("\"authored\" is given more than once"));
        let fields = fields(body).expect("a stored resource's fields");
        assert_eq!(fields.patient_id, "p1");
        assert_eq!(fields.project_id.as_deref(), Some("P001"));
        assert_eq!(fields.site_id.as_deref(), Some("S\u{1}1"));
    }

    #[test]
    fn date_times_and_canonicals() {
        for ok in [
            "2013",
            "2013-06",
            "2013-06-08",
            "2013-06-08T10:57:34+01:00",
            "2013-06-08T10:57:34.5Z",
        ] {
            assert!(is_date_time(ok), "{ok}");
        }
        for bad in ["13", "2013-6", "2013-06-08T10:57", "June 2013", ""] {
            assert!(!is_date_time(bad), "{bad}");
        }
        assert!(is_canonical("http://hl7.org/fhir/Questionnaire/3141"));
        assert!(is_canonical("urn:uuid:1|2.0"));
        assert!(is_canonical("Questionnaire/gcs"));
        assert!(!is_canonical("Questionnaire/a b"));
        assert!(!is_canonical("questionnaire 3141"));
        assert!(!is_canonical("http://a b"));
    }
}
