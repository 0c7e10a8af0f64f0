//! The server's log as an operator's pipeline reads it: with `log_format = "json"`
//! every line is a JSON object (timestamp to the microsecond, level, target, shard),
//! the access log has its fields as keys, each request carries an `X-Request-Id`
//! (the caller's, or one made up) that the response echoes, and no line ever holds a
//! token or a request body.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{read_response, wait_until, Response, Server, DEVICE_TOKEN as DEVICE};

const SECRET_BODY: &str = "SECRET-BODY-MARKER-7f3a";

fn config(format: &str) -> String {
    format!("log_format = \"{format}\"\n{}", common::DEVICE_ADMIN_CONFIG)
}

/// A submit whose body holds a marker, with an `X-Request-Id` when `id` is given.
fn submit(server: &Server, id: Option<&str>) -> Response {
    let body =
        format!(r#"{{"patientId":"P-log","projectId":"P001","reportData":"{SECRET_BODY}"}}"#);
    let id = id.map_or(String::new(), |id| format!("X-Request-Id: {id}\r\n"));
    let request = format!(
        "POST /epro/submit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {DEVICE}\r\n\
         Content-Type: application/json\r\n{id}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = server.connect();
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream).expect("a response")
}

/// Waits for an access line with `needle` and returns the whole log.
fn log_with(server: &Server, needle: &str) -> String {
    let found = wait_until(Duration::from_secs(5), || server.log().contains(needle));
    assert!(found, "no {needle:?} in the log:\n{}", server.log());
    server.log()
}

fn no_secrets(log: &str) {
    assert!(!log.contains(DEVICE), "a token in the log:\n{log}");
    assert!(!log.contains(SECRET_BODY), "a body in the log:\n{log}");
}

#[test]
fn json_lines_carry_every_access_field_and_the_request_id() {
    let server = Server::start(&config("json"), &[]);
    let r = submit(&server, Some("trace-abc-123"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("trace-abc-123"));
    // Without one (or with one that cannot be echoed safely), the server makes one up.
    let made_up = submit(&server, None);
    let id = made_up
        .header("x-request-id")
        .expect("a request id")
        .to_string();
    assert!(id.len() > 4 && id.contains('-'), "{id}");
    let unsafe_id = submit(&server, Some("has\"quote"));
    assert_ne!(unsafe_id.header("x-request-id"), Some("has\"quote"));

    // Each shard flushes its own lines, and the submits may have gone to either: wait
    // for both lines this test reads.
    log_with(&server, "\"request_id\":\"trace-abc-123\"");
    let log = log_with(&server, &format!("\"request_id\":\"{id}\""));
    let mut access = None;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let ts = v["ts"].as_str().unwrap();
        // 2026-11-27T08:15:30.123456Z: microseconds.
        assert_eq!(ts.len(), 27, "{ts}");
        assert!(epro_ingest::base::clock::is_rfc3339(ts), "{ts}");
        assert!(v["level"].is_string() && v["target"].is_string(), "{line}");
        assert!(v["msg"].is_string() || v["target"] == "access", "{line}");
        if v["request_id"] == "trace-abc-123" {
            access = Some(v);
        }
    }
    let a = access.expect("the access line of the first submit");
    assert_eq!(a["target"], "access");
    assert_eq!(a["level"], "INFO");
    assert_eq!(a["method"], "POST");
    assert_eq!(a["route"], "/epro/submit");
    assert_eq!(a["status"], 200);
    assert_eq!(a["principal"], "site-app-001");
    assert!(a["shard"].as_u64().unwrap() < 2);
    assert!(a["bytes"].as_u64().unwrap() > 0);
    assert!(a["us"].is_u64());
    assert!(a["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    no_secrets(&log);
}

#[test]
fn text_lines_hold_no_token_and_no_body_either() {
    let server = Server::start(&config("text"), &[]);
    assert_eq!(submit(&server, Some("trace-text-1")).status, 200);
    // A refused request too: its body is named in no line.
    let mut stream = server.connect();
    let bad = common::post(
        &mut stream,
        "/epro/submit",
        DEVICE,
        &format!(r#"{{"patientId":"","reportData":"{SECRET_BODY}"}}"#),
    );
    assert_eq!(bad.status, 400);
    let log = log_with(&server, "id=trace-text-1");
    assert!(log.lines().any(|l| l.contains(" access] shard=")
        && l.contains("POST /epro/submit 200 ")
        && l.ends_with(" id=trace-text-1")));
    no_secrets(&log);
}
