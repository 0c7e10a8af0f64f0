//! Writing a [`Refusal`] out: its status, its headers (`Allow`, `WWW-Authenticate`,
//! `Retry-After` where retrying helps) and its body in the caller's [`Dialect`].

use super::{Dialect, Refusal, Resource, Why, FHIR_JSON};
use crate::domain::fhir::{self, Issue};
use crate::domain::validate::{Invalids, MAX_INVALIDS};
use crate::http::parse::Head;
use crate::http::reject::Reject;
use crate::http::request::Request;
use crate::http::response::{Header, Reply, Status, JSON, RETRY_AFTER};
use crate::log::{Fault, LogError};
use crate::route::tree::allow_header;

/// Writes `refusal` as the answer to `request`, in its dialect.
pub fn answer(reply: &mut Reply<'_>, request: &Request<'_>, refusal: Refusal) {
    if refusal != Refusal::InvalidResource {
        return refuse(reply, Dialect::of(request.head.path), refusal);
    }
    // Rules are pure: checked again, the body breaks the same ones (a refusal is off
    // the happy path, and so the refusal stays a small value).
    let Err(refused) = fhir::validate(request.body) else {
        return refuse(reply, Dialect::Fhir, Refusal::Fixed(Why::Internal));
    };
    let status = if refused.invalid {
        Status::BadRequest
    } else {
        Status::UnprocessableContent
    };
    let body = fhir::outcome(&refused.issues);
    reply.with(status, FHIR_JSON, &[], &[body.as_bytes()]);
}

/// Writes `refusal` as the answer to a request for `head`, in its dialect.
pub fn refuse_to(reply: &mut Reply<'_>, head: &Head<'_>, refusal: Refusal) {
    refuse(reply, Dialect::of(head.path), refusal);
}

/// Writes `refusal` in `dialect`.
pub fn refuse(reply: &mut Reply<'_>, dialect: Dialect, refusal: Refusal) {
    let say = |reply: &mut Reply<'_>, status, message: &[&[u8]], extra| {
        error(reply, dialect, status, message, extra);
    };
    match refusal {
        Refusal::Fixed(why) => {
            let (status, message, retry) = why.describe();
            say(
                reply,
                status,
                &[message.as_bytes()],
                retry.then_some(RETRY_AFTER),
            );
        }
        Refusal::Reject(reject) => {
            // A limit that frees up says when to retry.
            let status = reject.status();
            let retry = (status == Status::ServiceUnavailable).then_some(RETRY_AFTER);
            say(reply, status, &[reject.message().as_bytes()], retry);
        }
        Refusal::MethodNotAllowed(allowed) => {
            let mut allow = [0u8; 64];
            let len = allow_header(allowed, &mut allow);
            let message = Reject::MethodNotAllowed.message().as_bytes();
            let allow = (&b"Allow"[..], &allow[..len]);
            say(reply, Status::MethodNotAllowed, &[message], Some(allow));
        }
        Refusal::Unauthenticated { bearer } => unauthenticated(reply, dialect, bearer),
        Refusal::BadKey(why) => say(reply, Status::BadRequest, &[why.as_bytes()], None),
        Refusal::Invalid(invalid) => invalid_body(reply, invalid),
        // Without the body to list its issues ([`answer`] has it).
        Refusal::InvalidResource => {
            let message = b"the resource breaks the rules of FHIR R4 or of this server's profile";
            say(reply, Status::BadRequest, &[message], None);
        }
        Refusal::Storage(e) => storage(reply, dialect, e),
        Refusal::KeyConflict { key_in_body } => {
            let key: &[u8] = if key_in_body {
                b"submissionId"
            } else {
                b"Idempotency-Key"
            };
            let message = [key, b" reused with a different body"];
            say(reply, Status::UnprocessableContent, &message, None);
        }
        Refusal::NotReady { shard, fault } => not_ready(reply, dialect, shard, fault),
        Refusal::Unavailable(why) => {
            say(reply, Status::ServiceUnavailable, &[why.as_bytes()], None)
        }
        Refusal::Resource(resource) => about_resource(reply, resource),
    }
}

/// The 429 of a caller over its rate limit: named in the message (escaped as JSON:
/// an id may hold quotes), with when to retry.
pub fn rate_limited(reply: &mut Reply<'_>, dialect: Dialect, principal: &str, retry_after: u32) {
    let message = serde_json::to_string(&format!("rate limit exceeded for principal {principal}"))
        .unwrap_or_default();
    let escaped = message
        .get(1..message.len().saturating_sub(1))
        .unwrap_or("");
    let mut seconds = itoa::Buffer::new();
    let retry = (&b"Retry-After"[..], seconds.format(retry_after).as_bytes());
    let status = Status::TooManyRequests;
    error(reply, dialect, status, &[escaped.as_bytes()], Some(retry));
}

/// 401: RFC 9110 15.5.2 and RFC 6750 3: say how to authenticate, and, when a token
/// came, that it was not accepted.
fn unauthenticated(reply: &mut Reply<'_>, dialect: Dialect, bearer: bool) {
    let challenge: &[u8] = if bearer {
        b"Bearer realm=\"epro-ingest\", error=\"invalid_token\""
    } else {
        b"Bearer realm=\"epro-ingest\""
    };
    let message: &[u8] = b"missing or unknown bearer token";
    let extra = Some((&b"WWW-Authenticate"[..], challenge));
    error(reply, dialect, Status::Unauthorized, &[message], extra);
}

/// The 503 of a shard that cannot store records now.
fn storage(reply: &mut Reply<'_>, dialect: Dialect, e: LogError) {
    let (message, cause) = match e {
        LogError::Closed => ("not accepting writes (starting up or shutting down)", ""),
        LogError::Behind => ("storage is behind on this shard; retry later", ""),
        LogError::Unencodable => ("the record does not fit the log format", ""),
        LogError::NoSpace => ("no space for the log on this shard; retry later", ""),
        LogError::Stopped(fault) => ("writes to this shard are stopped: ", fault.says()),
    };
    // Retrying can help unless the record itself cannot be stored (another connection
    // may reach another shard).
    let retry = (e != LogError::Unencodable).then_some(RETRY_AFTER);
    let message = [message.as_bytes(), cause.as_bytes()];
    error(reply, dialect, Status::ServiceUnavailable, &message, retry);
}

/// The 503 of `/readyz` naming a shard that cannot take writes, and why when its live
/// segment is the reason.
fn not_ready(reply: &mut Reply<'_>, dialect: Dialect, shard: usize, fault: Option<Fault>) {
    let mut number = itoa::Buffer::new();
    let (cannot, why) = fault.map_or((" cannot take writes", ""), |f| {
        (" cannot take writes: ", f.says())
    });
    let parts: [&[u8]; 4] = [
        b"not ready: shard ",
        number.format(shard).as_bytes(),
        cannot.as_bytes(),
        why.as_bytes(),
    ];
    error(
        reply,
        dialect,
        Status::ServiceUnavailable,
        &parts,
        Some(RETRY_AFTER),
    );
}

/// 400 `{"error":"<the first rule broken>","errors":["<each rule broken>", ...]}`: the
/// v1 shape, with every field's problem beside it.
fn invalid_body(reply: &mut Reply<'_>, invalid: Invalids) {
    const PARTS: usize = 6 + 4 * MAX_INVALIDS;
    let mut numbers = [itoa::Buffer::new(); MAX_INVALIDS + 1];
    let (first_number, numbers) = numbers.split_first_mut().expect("not empty");
    let mut body: [&[u8]; PARTS] = [b""; PARTS];
    body[0] = b"{\"error\":\"";
    body[1..4].copy_from_slice(&invalid.first().message(first_number));
    body[4] = b"\",\"errors\":[\"";
    let mut n = 5;
    for (i, (rule, number)) in invalid.all().iter().zip(numbers).enumerate() {
        if i > 0 {
            body[n] = b"\",\"";
            n += 1;
        }
        body[n..n + 3].copy_from_slice(&rule.message(number));
        n += 3;
    }
    body[n] = b"\"]}";
    reply.with(Status::BadRequest, JSON, &[], &body[..=n]);
}

/// A FHIR endpoint's refusal about the resource, as an `OperationOutcome` of one issue.
fn about_resource(reply: &mut Reply<'_>, resource: Resource) {
    let (status, expression, diagnostics) = resource.describe();
    let retry = match resource {
        Resource::NotStored(e) => e != LogError::Unencodable,
        _ => false,
    };
    let issue = Issue {
        code: issue_type(status),
        expression: expression.to_string(),
        diagnostics: diagnostics.to_string(),
    };
    let body = fhir::outcome(&[issue]);
    let extra = if retry { &[RETRY_AFTER][..] } else { &[] };
    reply.with(status, FHIR_JSON, extra, &[body.as_bytes()]);
}

/// An error of `status` saying `message` (at most four parts, which need no JSON
/// escaping: fixed text, digits or validated identifiers), in `dialect`.
fn error(
    reply: &mut Reply<'_>,
    dialect: Dialect,
    status: Status,
    message: &[&[u8]],
    extra: Option<Header<'_>>,
) {
    debug_assert!(
        message.len() <= 4,
        "an error message has at most four parts"
    );
    let mut body: [&[u8]; 8] = [b""; 8];
    let n = message.len().min(4);
    match dialect {
        Dialect::Fhir => {
            body[0] = b"{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\",\"code\":\"";
            body[1] = issue_type(status).as_bytes();
            body[2] = b"\",\"diagnostics\":\"";
            body[3..3 + n].copy_from_slice(&message[..n]);
            body[3 + n] = b"\"}]}";
            reply.with(status, FHIR_JSON, extra.as_slice(), &body[..4 + n]);
        }
        Dialect::V1 => {
            body[0] = b"{\"error\":\"";
            body[1..1 + n].copy_from_slice(&message[..n]);
            body[1 + n] = b"\"}";
            reply.with(status, JSON, extra.as_slice(), &body[..2 + n]);
        }
    }
}

/// The FHIR R4 `IssueType` of an error with this status, for an `OperationOutcome`.
fn issue_type(status: Status) -> &'static str {
    match status {
        Status::Unauthorized => "login",
        Status::Forbidden => "forbidden",
        Status::NotFound => "not-found",
        Status::MethodNotAllowed | Status::UnsupportedMediaType => "not-supported",
        Status::NotAcceptable => "not-supported",
        Status::NotImplemented | Status::VersionNotSupported => "not-supported",
        Status::RequestTimeout => "timeout",
        Status::PayloadTooLarge | Status::UriTooLong => "too-long",
        Status::HeaderFieldsTooLarge => "too-long",
        Status::UnprocessableContent => "processing",
        Status::TooManyRequests => "throttled",
        Status::ServiceUnavailable => "transient",
        Status::InternalServerError => "exception",
        _ => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::date;
    use crate::http::response::ConnHeader;

    /// The body `refusal` is written with in `dialect`, and its status line.
    fn written(dialect: Dialect, refusal: Refusal) -> (String, String) {
        let mut out = Vec::new();
        let mut reply = Reply::new(&mut out, [b'D'; date::LEN], ConnHeader::None);
        refuse(&mut reply, dialect, refusal);
        let text = String::from_utf8(out).expect("UTF-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        let line = head.lines().next().unwrap_or_default().to_string();
        (line, body.to_string())
    }

    #[test]
    fn the_dialect_follows_the_path() {
        for fhir in ["/fhir", "/fhir/metadata", "/fhir?x=1"] {
            assert_eq!(Dialect::of(fhir), Dialect::Fhir, "{fhir}");
        }
        for v1 in ["/", "/fhirx", "/epro/submit", "/api/v1/fhir"] {
            assert_eq!(Dialect::of(v1), Dialect::V1, "{v1}");
        }
    }

    #[test]
    fn a_refusal_is_an_error_body_in_v1_and_an_operation_outcome_under_fhir() {
        let refusal = Refusal::Fixed(Why::NoSuchUser);
        let (line, body) = written(Dialect::V1, refusal);
        assert_eq!(line, "HTTP/1.1 404 Not Found");
        assert_eq!(body, r#"{"error":"no such user"}"#);
        let (_, body) = written(Dialect::Fhir, refusal);
        assert_eq!(
            body,
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"no such user"}]}"#
        );
        let (line, body) = written(Dialect::V1, Refusal::KeyConflict { key_in_body: true });
        assert_eq!(line, "HTTP/1.1 422 Unprocessable Content");
        assert_eq!(
            body,
            r#"{"error":"submissionId reused with a different body"}"#
        );
    }

    #[test]
    fn a_refusal_about_the_resource_names_its_element_in_any_dialect() {
        for dialect in [Dialect::V1, Dialect::Fhir] {
            let (line, body) = written(dialect, Refusal::Resource(Resource::Forbidden));
            assert_eq!(line, "HTTP/1.1 403 Forbidden");
            let outcome: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let issue = &outcome["issue"][0];
            assert_eq!(issue["code"], "forbidden");
            assert_eq!(issue["expression"][0], "QuestionnaireResponse.meta.tag");
        }
        let read = Refusal::Fixed(Why::NoSuchRecord).about_resource();
        assert_eq!(read, Refusal::Resource(Resource::NotFound));
        let fixed = Refusal::Fixed(Why::NoSuchUser);
        assert_eq!(fixed.about_resource(), fixed);
    }

    #[test]
    fn a_refusal_says_when_to_retry_only_where_retrying_helps() {
        let retry = |refusal| {
            let mut out = Vec::new();
            let mut reply = Reply::new(&mut out, [b'D'; date::LEN], ConnHeader::None);
            refuse(&mut reply, Dialect::V1, refusal);
            String::from_utf8_lossy(&out).contains("Retry-After: 1")
        };
        assert!(retry(Refusal::Storage(LogError::Behind)));
        assert!(!retry(Refusal::Storage(LogError::Unencodable)));
        assert!(retry(Refusal::Resource(Resource::NotStored(
            LogError::Closed
        ))));
        assert!(!retry(Refusal::Resource(Resource::NotStored(
            LogError::Unencodable
        ))));
        assert!(retry(Refusal::Reject(Reject::Shed)));
        assert!(!retry(Refusal::Reject(Reject::BodyTooLarge)));
        assert!(retry(Refusal::Fixed(Why::Recovering)));
        assert!(!retry(Refusal::Fixed(Why::Internal)));
    }
}
