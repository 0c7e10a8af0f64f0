//! The response headers each operation documents: `X-Request-Id` on every response,
//! and what a success or a refusal adds (`Location`, `ETag`, `Retry-After`,
//! `WWW-Authenticate`, `Idempotent-Replayed`, `X-Record-Principal`, `X-Received-At`).

use serde_json::{json, Map, Value};

use super::RECORD_ID;
use crate::route::Route;

fn header(description: &str, required: bool, schema: Value) -> Value {
    json!({"description": description, "required": required, "schema": schema})
}

fn request_id() -> Value {
    let schema = json!({"type": "string", "pattern": "^[!-~]{1,64}$"});
    header(
        "the caller's X-Request-Id when usable, else one the server made",
        true,
        schema,
    )
}

/// The headers of a success on `route`.
pub(super) fn ok_headers(route: Route) -> Value {
    let mut headers = Map::new();
    headers.insert("X-Request-Id".into(), request_id());
    let etag = header(
        "the version: resources are never updated",
        true,
        json!({"const": "W/\"1\""}),
    );
    let replayed = header(
        "true on the first answer given again to a retry with the same key and body",
        false,
        json!({"const": "true"}),
    );
    let principal = header(
        "the principal that stored the record",
        true,
        json!({"type": "string"}),
    );
    let received = header(
        "the server's receive time (RFC 3339, UTC)",
        true,
        json!({"type": "string", "format": "date-time"}),
    );
    match route {
        Route::FhirCreate => {
            let location = json!({"type": "string",
                "pattern": format!("^/fhir/QuestionnaireResponse/{}", &RECORD_ID[1..])});
            headers.insert(
                "Location".into(),
                header("the stored resource", true, location),
            );
            headers.insert("ETag".into(), etag);
            headers.insert("Idempotent-Replayed".into(), replayed);
        }
        Route::Submit | Route::AddTag => {
            headers.insert("Idempotent-Replayed".into(), replayed);
        }
        Route::Record => {
            headers.insert("X-Record-Principal".into(), principal);
            headers.insert("X-Received-At".into(), received);
        }
        Route::FhirRead => {
            headers.insert("X-Record-Principal".into(), principal);
            headers.insert("X-Received-At".into(), received);
            headers.insert("ETag".into(), etag);
        }
        _ => {}
    }
    Value::Object(headers)
}

/// The headers of a refusal with `status`. `X-Request-Id` is there once the request's
/// head was read whole (not on a head cut by a limit or an unreadable request line).
pub(super) fn error_headers(status: &str) -> Value {
    let mut headers = Map::new();
    let mut id = request_id();
    id["required"] = json!(false);
    headers.insert("X-Request-Id".into(), id);
    let seconds = json!({"type": "string", "pattern": "^[0-9]+$"});
    match status {
        "401" => {
            let challenge = json!({"type": "string", "pattern": "^Bearer realm=\"epro-ingest\""});
            let what =
                "Bearer realm=\"epro-ingest\", with error=\"invalid_token\" for an unknown token";
            headers.insert("WWW-Authenticate".into(), header(what, true, challenge));
        }
        "429" => {
            let what = "seconds until the principal's limit lets a request through";
            headers.insert("Retry-After".into(), header(what, true, seconds));
        }
        "503" => {
            let what = "seconds to wait, when waiting helps";
            headers.insert("Retry-After".into(), header(what, false, seconds));
        }
        _ => {}
    }
    Value::Object(headers)
}
