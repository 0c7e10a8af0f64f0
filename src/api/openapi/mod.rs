//! The API contract as an OpenAPI 3.1 document, built from the one route table
//! ([`crate::route::TABLE`], with each route's access rule) and the validation rules
//! ([`crate::domain::validate`]): served at `GET /openapi.json` and committed as
//! `docs/openapi.json` (a test fails when that copy is stale). A client generator
//! reads it; nothing here is written twice by hand.

mod fhir;
mod headers;

use headers::{error_headers, ok_headers};

use serde_json::{json, Map, Value};

use crate::domain::auth::Role;
use crate::domain::validate::{MAX_ID, NO_PROJECT};
use crate::http::parse::Method;
use crate::route::{Access, Route, TABLE};

thread_local! {
    /// `GET /openapi.json`'s body, built on a shard's first use.
    static DOCUMENT: std::cell::OnceCell<Box<[u8]>> = const { std::cell::OnceCell::new() };
}

/// Calls `f` with this shard's copy of the document.
pub fn with_document<T>(f: impl FnOnce(&[u8]) -> T) -> T {
    DOCUMENT.with(|doc| f(doc.get_or_init(|| document().into_bytes().into_boxed_slice())))
}

/// The document, pretty-printed with a final newline (as committed).
pub fn document() -> String {
    let mut paths = Map::new();
    for &(method, path, route) in TABLE {
        let entry = paths
            .entry(path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("an object");
        let name = method.as_str().to_ascii_lowercase();
        entry.insert(name, operation(route, path, false));
        // HEAD goes wherever GET goes: the same head, no body.
        if method == Method::Get {
            entry.insert("head".into(), operation(route, path, true));
        }
    }
    let doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "epro-ingest",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "ePRO submissions, acknowledged once on stable storage. Every response to a parsed request carries X-Request-Id; errors are {\"error\": \"...\"}, and a body that breaks several rules lists them all in \"errors\".",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        },
    });
    let mut text = serde_json::to_string_pretty(&doc).expect("a JSON value");
    text.push('\n');
    text
}

/// One operation (`head`: the HEAD twin of a GET): its summary, parameters, body,
/// security and every response with its headers.
fn operation(route: Route, path: &str, head: bool) -> Value {
    let mut op = Map::new();
    let id = if head {
        format!("{route:?}Head")
    } else {
        format!("{route:?}")
    };
    op.insert("operationId".into(), json!(id));
    op.insert("summary".into(), json!(summary(route)));
    let parameters = path_parameters(path);
    if !parameters.is_empty() {
        op.insert("parameters".into(), json!(parameters));
    }
    let mut errors = vec![
        "400", "408", "413", "414", "417", "431", "500", "501", "503", "505",
    ];
    if is_fhir(route) {
        errors.push("406");
    }
    match route.access() {
        Access::Open => {
            op.insert("security".into(), json!([]));
        }
        Access::Roles(roles) => {
            op.insert("security".into(), json!([{"bearer": []}]));
            let who: Vec<&str> = roles.iter().map(|r| Role::as_str(*r)).collect();
            op.insert("x-roles".into(), json!(who));
            errors.extend(["401", "403", "429"]);
        }
    }
    if let Some((body, parameters)) = request_body(route) {
        op.insert("requestBody".into(), body);
        op.insert("parameters".into(), parameters);
        errors.extend(["415", "422"]);
    }
    if matches!(route, Route::Record | Route::Permissions | Route::FhirRead) {
        errors.push("404");
    }
    errors.sort_unstable();
    let responses = responses(route, head, &errors);
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// A route under `/fhir`.
fn is_fhir(route: Route) -> bool {
    matches!(
        route,
        Route::FhirCreate | Route::FhirRead | Route::FhirMetadata | Route::FhirProfile
    )
}

/// The parameters in `path`'s braces.
fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            // A record id is the one acknowledge wrote: no sign, no leading zero, a
            // shard and a sequence number that fit (up to 4 and 19 digits).
            let schema = if name == "id" {
                json!({"type": "string", "pattern": RECORD_ID})
            } else {
                json!({"type": "string", "minLength": 1})
            };
            json!({"name": name, "in": "path", "required": true,
                   "description": "percent-encoded when it holds characters a path cannot",
                   "schema": schema})
        })
        .collect()
}

/// A write's body and its header parameters (`Idempotency-Key`, and `Prefer` on the
/// FHIR create).
fn request_body(route: Route) -> Option<(Value, Value)> {
    let reference = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let v1 = |schema: Value| {
        let key = idempotency_key("stored at most once per (principal, key); equal to the body's submissionId when both are given (else 400)");
        let body = json!({"required": true, "content": {"application/json": {"schema": schema}}});
        Some((body, json!([key])))
    };
    match route {
        Route::Submit => v1(reference("Submission")),
        Route::AddTag => v1(reference("Tag")),
        Route::FhirCreate => {
            let schema = reference("QuestionnaireResponse");
            let body = json!({"required": true, "content": {
                "application/fhir+json": {"schema": schema},
                "application/json": {"schema": schema},
            }});
            let parameters = json!([{"name": "Prefer", "in": "header", "required": false,
                    "description": "return=minimal: no body; return=representation: the resource; else an OperationOutcome naming its id",
                    "schema": {"type": "string"}},
                   idempotency_key("stored at most once per (principal, key); a retry with the same body gets the first 201 again (same Location) with Idempotent-Replayed: true, another body 422")]);
            Some((body, parameters))
        }
        _ => None,
    }
}

/// The success response and one for each of `errors`, with their headers (`head`:
/// without bodies).
fn responses(route: Route, head: bool, errors: &[&str]) -> Map<String, Value> {
    let mut responses = Map::new();
    let (ok_type, ok_schema) = success(route);
    let ok_status = if route == Route::FhirCreate {
        "201"
    } else {
        "200"
    };
    let mut ok = json!({"description": "done", "headers": ok_headers(route)});
    if !head {
        ok["content"] = json!({ok_type: {"schema": ok_schema}});
    }
    responses.insert(ok_status.into(), ok);
    let error = json!({"schema": {"$ref": "#/components/schemas/Error"}});
    let outcome = json!({"schema": {"$ref": "#/components/schemas/OperationOutcome"}});
    for &status in errors {
        // The /fhir routes refuse with an OperationOutcome; a request refused while
        // it is framed (malformed, over a limit) gets the v1 error, as everywhere.
        let content = if is_fhir(route) {
            json!({"application/json": error, "application/fhir+json": outcome})
        } else {
            json!({"application/json": error})
        };
        let mut response = json!({"description": error_meaning(status),
                                  "headers": error_headers(status)});
        if !head {
            response["content"] = content;
        }
        responses.insert(status.into(), response);
    }
    responses
}

/// A record id as acknowledge writes it.
pub(crate) const RECORD_ID: &str = "^s(0|[1-9][0-9]{0,3})-(0|[1-9][0-9]{0,18})$";

/// An identifier's characters: no control character (C0, DEL, C1).
const CLEAN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// The `Idempotency-Key` header parameter, with what it does on this route.
fn idempotency_key(what: &str) -> Value {
    json!({"name": "Idempotency-Key", "in": "header", "required": false,
           "description": format!("{what}; 1 to 126 visible ASCII characters"),
           "schema": {"type": "string", "pattern": "^[!-~]{1,126}$"}})
}

fn summary(route: Route) -> &'static str {
    match route {
        Route::Healthz => "Liveness of the process",
        Route::Livez => "Liveness of the process",
        Route::Readyz => "Whether every shard has recovered and can take writes",
        Route::Metrics => "Prometheus metrics (text format 0.0.4)",
        Route::OpenApi => "This document",
        Route::Submit => "Submit a patient-reported outcome report",
        Route::AddTag => "Tag a patient of a project",
        Route::Subjects => "The patients with reports at a site, with their tags",
        Route::Summary => "A project's report counts, by site",
        Route::Permissions => "A principal's role and projects",
        Route::Record => "One stored record by its id, its body exactly as received",
        Route::LogHeads => {
            "Each shard's hash-chain head on stable storage (a heads file for verify --against)"
        }
        Route::FhirCreate => "Store a FHIR R4 QuestionnaireResponse (201, Location, ETag)",
        Route::FhirRead => "A stored QuestionnaireResponse, with the server's id and meta",
        Route::FhirMetadata => "The FHIR CapabilityStatement",
        Route::FhirProfile => "This server's QuestionnaireResponse profile, a StructureDefinition",
    }
}

/// The 200's media type and schema.
fn success(route: Route) -> (&'static str, Value) {
    let reference = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    match route {
        Route::Healthz | Route::Livez | Route::Readyz => ("text/plain", json!({"const": "ok"})),
        Route::Metrics => ("text/plain", json!({"type": "string"})),
        Route::OpenApi => ("application/json", json!({"type": "object"})),
        Route::Submit => ("application/json", reference("Submitted")),
        Route::AddTag => (
            "application/json",
            json!({"type": "object", "required": ["success"],
            "properties": {"success": {"const": true}}}),
        ),
        Route::Subjects => ("application/json", reference("Subjects")),
        Route::Summary => ("application/json", reference("Summary")),
        Route::Permissions => ("application/json", reference("Permissions")),
        Route::Record => (
            "application/json",
            json!({"type": "object",
            "description": "the submitted body, byte for byte; headers X-Record-Principal and X-Received-At"}),
        ),
        Route::LogHeads => (
            "text/plain",
            json!({"type": "string",
                   "pattern": "^(shard=[0-9]+ seq=[0-9]+ sha256=[0-9a-f]{64}\n)+$"}),
        ),
        Route::FhirCreate => ("application/fhir+json", reference("OperationOutcome")),
        Route::FhirRead => (
            "application/fhir+json",
            json!({"type": "object", "required": ["resourceType"],
                   "properties": {"resourceType": {"const": "QuestionnaireResponse"}}}),
        ),
        Route::FhirMetadata => (
            "application/fhir+json",
            json!({"type": "object", "required": ["resourceType"],
                   "properties": {"resourceType": {"const": "CapabilityStatement"}}}),
        ),
        Route::FhirProfile => (
            "application/fhir+json",
            json!({"type": "object", "required": ["resourceType", "url"],
                   "properties": {"resourceType": {"const": "StructureDefinition"},
                                  "url": {"const": crate::domain::fhir::PROFILE}}}),
        ),
    }
}

fn error_meaning(status: &str) -> &'static str {
    match status {
        "400" => "malformed request or body; every broken rule is named",
        "401" => "missing or unknown bearer token (WWW-Authenticate says how)",
        "403" => "the principal's role or projects do not allow this",
        "404" => "no such record or principal (a record the caller may not read is alike)",
        "408" => "the request did not arrive in time",
        "413" => "body over max_body_bytes",
        "414" => "request line over max_head_bytes",
        "406" => "the request asks for a format other than JSON (Accept, or _format on a FHIR route)",
        "415" => "the body is not application/json",
        "417" => "an Expect other than 100-continue; the connection closes",
        "422" => "the idempotency key was used before with another body (on a FHIR create also: a valid R4 resource that breaks this server's profile)",
        "429" => "over the principal's rate limit (Retry-After)",
        "431" => "head over max_head_bytes or max_headers",
        "500" => "the handler failed; the connection closes",
        "501" => "a Transfer-Encoding other than chunked; the connection closes",
        "505" => "an HTTP version other than 1.0 or 1.1; the connection closes",
        _ => "not ready, overloaded or storage unavailable (Retry-After when retrying helps)",
    }
}

/// Every schema of the document: the bodies the server takes, its answers, its
/// refusals, and the FHIR resources.
fn schemas() -> Value {
    let mut all = Map::new();
    for group in [bodies(), answers(), refusals(), fhir::schemas()] {
        if let Value::Object(group) = group {
            all.extend(group);
        }
    }
    Value::Object(all)
}

/// The v1 bodies' schemas, from the validation rules.
fn bodies() -> Value {
    let id = json!({"type": "string", "minLength": 1, "maxLength": MAX_ID, "pattern": CLEAN,
        "description": "1 to 128 bytes (UTF-8) without control characters"});
    let project = json!({"type": "string", "minLength": 1, "maxLength": MAX_ID, "pattern": CLEAN,
        "not": {"const": NO_PROJECT},
        "description": "1 to 128 bytes (UTF-8) without control characters, not -"});
    json!({
        "Submission": {
            "type": "object", "required": ["patientId", "reportData"],
            "description": "unknown fields are allowed and stored; a field given twice is refused; nesting at most 64 levels",
            "properties": {
                "patientId": id,
                "reportData": {"oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "object", "minProperties": 1},
                ]},
                "timestamp": {"type": "string", "format": "date-time"},
                "projectId": project,
                "siteId": id,
                "submissionId": id,
            },
        },
        "Tag": {
            "type": "object", "required": ["patientId", "tagName", "projectId"],
            "properties": {"patientId": id, "tagName": id, "projectId": project},
        },
    })
}

/// The v1 answers' schemas.
fn answers() -> Value {
    json!({
        "Submitted": {
            "type": "object", "required": ["status", "message", "id", "receivedAt"],
            "properties": {
                "status": {"const": "success"},
                "message": {"type": "string"},
                "id": {"type": "string", "pattern": RECORD_ID},
                "receivedAt": {"type": "string", "format": "date-time"},
            },
        },
        "Subjects": {
            "type": "object", "required": ["projectId", "siteId", "subjects"],
            "properties": {
                "projectId": {"type": "string"},
                "siteId": {"type": "string"},
                "subjects": {"type": "array", "items": {
                    "type": "object", "required": ["patientId", "reports", "tags"],
                    "properties": {
                        "patientId": {"type": "string"},
                        "reports": {"type": "integer", "minimum": 0},
                        "lastReceivedAt": {"type": ["string", "null"], "format": "date-time"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                }},
            },
        },
        "Summary": {
            "type": "object", "required": ["projectId", "reports", "subjects", "sites"],
            "properties": {
                "projectId": {"type": "string"},
                "reports": {"type": "integer", "minimum": 0},
                "subjects": {"type": "integer", "minimum": 0},
                "lastReceivedAt": {"type": ["string", "null"], "format": "date-time"},
                "sites": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["reports", "subjects"],
                    "properties": {
                        "reports": {"type": "integer", "minimum": 0},
                        "subjects": {"type": "integer", "minimum": 0},
                    },
                }},
            },
        },
        "Permissions": {
            "type": "object", "required": ["userId", "role", "projects"],
            "properties": {
                "userId": {"type": "string"},
                "role": {"enum": ["device", "staff", "admin"]},
                "projects": {"type": "array", "items": {"type": "string"}},
            },
        },
    })
}

/// The refusals' schemas: v1, and FHIR.
fn refusals() -> Value {
    json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "errors": {"type": "array", "items": {"type": "string"}},
            },
        },
        "OperationOutcome": {
            "type": "object", "required": ["resourceType", "issue"],
            "properties": {
                "resourceType": {"const": "OperationOutcome"},
                "issue": {"type": "array", "items": {
                    "type": "object", "required": ["severity", "code"],
                    "properties": {
                        "severity": {"type": "string"},
                        "code": {"type": "string"},
                        "diagnostics": {"type": "string"},
                        "expression": {"type": "array", "items": {"type": "string"}},
                    },
                }},
            },
        },
    })
}
