//! The JSON Schema of a QuestionnaireResponse a client may send, as strict as the
//! server: a subset of R4 (the elements an ePRO app writes: `status`, `subject`,
//! `authored`, `questionnaire`, items with one level of answers), with each
//! primitive's lexical form as a pattern ([`crate::domain::fhir::primitive`]'s rules written
//! as regular expressions, calendar days included) and this server's profile
//! (`Patient/<id>` subject, `authored` required). Every resource it admits is stored;
//! the server also takes more of R4 (extensions, contained resources, nested items,
//! Attachment, Quantity, Reference answers: `docs/fhir.md`), which a client writes
//! as R4 says.

use serde_json::{json, Value};

use crate::domain::fhir::structure::QR_STATUSES;

/// A year of R4's date: four digits, not 0000.
const YEAR: &str = "([0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)";
/// A full date that is a calendar day: days 1 to 28 of any month, 29 and 30 of all but
/// February, 31 of the long months, and February 29th of leap years.
const FULL_DATE: &str = concat!(
    "(([0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)-",
    "((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)",
    "|([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29)"
);
const TIME: &str = "([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?";
const ZONE: &str = "(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))";
/// A string of R4: non-empty, no control character but tab, CR and LF.
const STRING: &str = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f]+$";
/// Unicode's whitespace above U+0020, as the server reads whitespace.
macro_rules! white {
    () => {
        "\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
    };
}

/// A uri (and canonical): non-empty, no whitespace, no control character.
const URI: &str = concat!("^[^\\u0000-\\u0020", white!(), "]+$");
/// A code: no whitespace at either end, none but single spaces inside.
const CODE: &str = concat!(
    "^[^\\u0000-\\u0020",
    white!(),
    "]+( [^\\u0000-\\u0020",
    white!(),
    "]+)*$"
);

fn string() -> Value {
    json!({"type": "string", "minLength": 1, "pattern": STRING})
}

/// R4 dateTime: a date of any precision, or a full date with time and zone.
pub fn date_time_pattern() -> String {
    format!("^({YEAR}(-(0[1-9]|1[0-2]))?|{FULL_DATE}(T{TIME}{ZONE})?)$")
}

fn date_pattern() -> String {
    format!("^({YEAR}(-(0[1-9]|1[0-2]))?|{FULL_DATE})$")
}

/// The QuestionnaireResponse schema and the schemas it refers to.
pub fn schemas() -> Value {
    let uri = json!({"type": "string", "pattern": URI});
    let answers = answer_variants(&uri);
    json!({
        "QuestionnaireResponse": {
            "type": "object",
            "required": ["resourceType", "status", "subject", "authored"],
            "additionalProperties": false,
            "description": "FHIR R4 QuestionnaireResponse, as far as an ePRO app writes it; the server also takes the rest of R4 (docs/fhir.md). Its profile: subject.reference Patient/<id>, authored required. A client's id is ignored: the server assigns it.",
            "properties": {
                "resourceType": {"const": "QuestionnaireResponse"},
                "status": {"enum": QR_STATUSES},
                "questionnaire": uri,
                "subject": {
                    "type": "object", "required": ["reference"], "additionalProperties": false,
                    "properties": {
                        "reference": {"type": "string", "pattern": "^Patient/[A-Za-z0-9.-]{1,64}$"},
                        "display": string(),
                    },
                },
                "authored": {"type": "string", "pattern": date_time_pattern()},
                "item": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/QuestionnaireResponseItem"}},
            },
        },
        "QuestionnaireResponseItem": {
            "type": "object", "required": ["linkId"], "additionalProperties": false,
            "properties": {
                "linkId": string(),
                "text": string(),
                "answer": {"type": "array", "minItems": 1, "items": {"oneOf": answers}},
            },
        },
    })
}

/// An answer's variants: one type each, each allowing its own value element only.
fn answer_variants(uri: &Value) -> Vec<Value> {
    let coding = json!({
        "type": "object", "minProperties": 1, "additionalProperties": false,
        "properties": {"system": uri, "code": {"type": "string", "pattern": CODE}, "display": string()},
    });
    let value_types = [
        ("valueBoolean", json!({"type": "boolean"})),
        ("valueDecimal", json!({"type": "number"})),
        (
            "valueInteger",
            json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX}),
        ),
        (
            "valueDate",
            json!({"type": "string", "pattern": date_pattern()}),
        ),
        (
            "valueDateTime",
            json!({"type": "string", "pattern": date_time_pattern()}),
        ),
        (
            "valueTime",
            json!({"type": "string", "pattern": format!("^{TIME}$")}),
        ),
        ("valueString", string()),
        ("valueUri", uri.clone()),
        ("valueCoding", coding),
    ];
    value_types
        .into_iter()
        .map(|(name, schema)| {
            json!({"type": "object", "required": [name], "additionalProperties": false,
                   "properties": {name: schema}})
        })
        .collect()
}
