//! The API contract over real sockets: every status path of every endpoint, exact
//! cross-shard reads (also after a restart), and nothing stored for a rejection.

mod common;

use std::io::Write;

use common::{get, post, read_response, Server};
use epro_ingest::log::recover::scan_shard;

const DEVICE: &str = "device-token-0123456789";
const STAFF: &str = "staff-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

const CONFIG: &str = r#"
[limits]
max_body_bytes = 4096

[[principals]]
id = "device-1"
token = "device-token-0123456789"
role = "device"
projects = ["P001"]

[[principals]]
id = "staff-1"
token = "staff-token-0123456789"
role = "staff"
projects = ["P001"]

[[principals]]
id = "admin-1"
token = "admin-token-0123456789"
role = "admin"
projects = ["*"]
"#;

/// The original Gin clients' exact request body.
const GIN_BODY: &str = r#"{"patientId":"P-000123","reportData":"{\"q1\":3,\"painScore\":6}","timestamp":"2026-11-26T08:15:30Z"}"#;

/// Every stored body, read back from the log files themselves.
fn stored_bodies(server: &Server) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    for shard in 0..2u16 {
        let dir = server.data_dir().join(format!("shard-{shard}"));
        scan_shard(&dir, shard, |r| bodies.push(r.body.to_vec()), |_| {}).unwrap();
    }
    bodies
}

#[test]
fn submit_accepts_the_gin_body_and_stores_it_byte_for_byte() {
    let server = Server::start(CONFIG, &[]);
    let mut s = server.connect();
    let r = post(&mut s, "/epro/submit", DEVICE, GIN_BODY);
    assert_eq!(r.status, 200, "{}", r.text());
    let json = r.json();
    assert_eq!(json["status"], "success");
    assert_eq!(json["message"], "report received");
    assert!(json["id"].as_str().unwrap().starts_with('s'));
    let received = json["receivedAt"].as_str().unwrap();
    assert!(
        epro_ingest::base::clock::is_rfc3339(received) && received.ends_with('Z'),
        "{received}"
    );

    // Unknown fields, an object reportData, odd spacing and escapes (a surrogate pair
    // among them) are kept exactly.
    let odd = "{ \"patientId\" : \"P-9\\ud83d\\ude00\", \"reportData\": {\"q\": [1, 2]}, \"deviceModel\": \"Pixel\\u00e9\", \"projectId\":\"P001\" }";
    assert_eq!(post(&mut s, "/epro/submit", DEVICE, odd).status, 200);
    let bodies = stored_bodies(&server);
    assert!(bodies.contains(&GIN_BODY.as_bytes().to_vec()));
    assert!(bodies.contains(&odd.as_bytes().to_vec()));

    // The access log line: shard, method, path, status, bytes, microseconds, principal,
    // peer, request id (buffered per shard, flushed within 100 ms).
    let logged = common::wait_until(std::time::Duration::from_secs(3), || {
        server.log().lines().any(|l| {
            l.contains(" access] shard=")
                && l.contains("POST /epro/submit 200 ")
                && l.contains("us principal=device-1 peer=127.0.0.1:")
                && l.contains(" id=")
        })
    });
    assert!(logged, "no access log line:\n{}", server.log());
}

#[test]
fn every_rejection_names_the_problem_and_stores_nothing() {
    let server = Server::start(CONFIG, &[]);
    let mut s = server.connect();
    let cases: &[(&str, &str)] = &[
        (r#"{"reportData":"x"}"#, "patientId is required"),
        (
            r#"{"patientId":"","reportData":"x"}"#,
            "patientId must not be empty",
        ),
        (
            r#"{"patientId":7,"reportData":"x"}"#,
            "patientId must be a string",
        ),
        (r#"{"patientId":"P-1"}"#, "reportData is required"),
        (
            r#"{"patientId":"P-1","reportData":""}"#,
            "reportData must be a non-empty string or object",
        ),
        (
            r#"{"patientId":"P-1","reportData":{}}"#,
            "reportData must be a non-empty string or object",
        ),
        (
            r#"{"patientId":"P-1","reportData":42}"#,
            "reportData must be a non-empty string or object",
        ),
        (
            r#"{"patientId":"P-1","reportData":"x","timestamp":"yesterday"}"#,
            "timestamp must be an RFC 3339 date-time",
        ),
        (
            r#"{"patientId":"P-1","reportData":"x","timestamp":1700000000}"#,
            "timestamp must be a string",
        ),
        (
            r#"{"patientId":"P-1","reportData":"x","projectId":""}"#,
            "projectId must not be empty",
        ),
        (
            r#"{"patientId":"P-1","reportData":"x","siteId":3}"#,
            "siteId must be a string",
        ),
        (
            r#"{"patientId":"P-1","reportData":"x","submissionId":[]}"#,
            "submissionId must be a string",
        ),
        (
            r#"{"patientId":"P-1","patientId":"P-2","reportData":"x"}"#,
            "patientId is given more than once",
        ),
        // Every surrogate escape is half of a high-low pair, in any string. simd-json
        // reads a lone high one as U+0000 and pairs a high one with any \u after it:
        // taken, "\ud801" and "\ud802" (or "\ud800\ue000" and "\ud801\udc00") would
        // be two patients stored and counted as one.
        (
            r#"{"patientId":"\ud801","reportData":"x"}"#,
            "malformed JSON at byte 14: an unpaired surrogate escape",
        ),
        (
            r#"{"patientId":"P\ud800\ue000","reportData":"x"}"#,
            "malformed JSON at byte 15: an unpaired surrogate escape",
        ),
        (
            r#"{"patientId":"P-1","reportData":{"a":"S\ud800A"}}"#,
            "malformed JSON at byte 39: an unpaired surrogate escape",
        ),
        (
            r#"{"patientId":"P-1","reportData":"a\udc00"}"#,
            "malformed JSON at byte 34: an unpaired surrogate escape",
        ),
        // Identifiers hold no control character, escaped or not.
        (
            r#"{"patientId":"P\u0000","reportData":"x"}"#,
            "patientId must not contain control characters",
        ),
        (
            r#"{"patientId":"P-1","reportData":"x","siteId":"S\u001f1"}"#,
            "siteId must not contain control characters",
        ),
        (
            r#"{"patientId":"P-1","reportData":"x","submissionId":"a\u0085b"}"#,
            "submissionId must not contain control characters",
        ),
        (
            r#"{"patientId":"P-1","reportData":"x""#,
            "malformed JSON at byte",
        ),
        (r#"["P-1"]"#, "body must be a JSON object"),
        ("", "malformed JSON at byte"),
        // Where and what, also inside strings (where the parser itself says byte 0).
        (
            r#"{"patientId":"P-1","reportData":{"n":1e999}}"#,
            "malformed JSON at byte 37: a number that is malformed or out of range (past 1.8e308)",
        ),
        (
            "{\"patientId\":\"P-1\",\"reportData\":\"a\tb\"}",
            "malformed JSON at byte 34: a control character inside a string must be escaped",
        ),
        (
            r#"{"patientId":"P-1","reportData":"a\qb"}"#,
            "malformed JSON at byte 34: an escape that JSON does not define",
        ),
        // The first fault is named, not a later one inside a string.
        (
            r#"{"patientId":x,"reportData":"a\qb"}"#,
            "malformed JSON at byte 13",
        ),
        (
            r#"{"patientId":x,"reportData":"\ud800"}"#,
            "malformed JSON at byte 13",
        ),
        (
            r#"{"patientId":"P-1","reportData":"x"} trailing"#,
            "malformed JSON at byte",
        ),
    ];
    for (body, message) in cases {
        let r = post(&mut s, "/epro/submit", DEVICE, body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(
            r.error().contains(message),
            "{body}: {:?} lacks {message:?}",
            r.error()
        );
    }
    let long_id = format!(r#"{{"patientId":"{}","reportData":"x"}}"#, "p".repeat(129));
    assert!(post(&mut s, "/epro/submit", DEVICE, &long_id)
        .error()
        .contains("longer than 128 bytes"));

    // 415: no or another content type.
    let raw = format!(
        "POST /epro/submit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {DEVICE}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{GIN_BODY}",
        GIN_BODY.len()
    );
    s.write_all(raw.as_bytes()).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 415);
    assert!(r.error().contains("application/json"));
    // A charset parameter is fine only when it is UTF-8: the body is read as UTF-8.
    for (content_type, status) in [
        ("application/json; charset=utf-16", 415),
        ("application/json;charset=latin1", 415),
        ("Application/JSON; charset=\"UTF-8\"", 200),
        ("application/json; foo=bar; charset=utf8", 200),
    ] {
        let raw = format!(
            "POST /epro/submit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {DEVICE}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{GIN_BODY}",
            GIN_BODY.len()
        );
        s.write_all(raw.as_bytes()).unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, status, "{content_type}: {}", r.text());
    }

    // 401: none, unknown, wrong scheme; each says how to authenticate (RFC 9110
    // 15.5.2), and that the token was refused when a bearer token came (RFC 6750 3).
    let realm = r#"Bearer realm="epro-ingest""#;
    let refused = r#"Bearer realm="epro-ingest", error="invalid_token""#;
    for (auth, challenge) in [
        ("", realm),
        ("Authorization: Bearer nope-nope-nope-nope\r\n", refused),
        (&format!("Authorization: Basic {DEVICE}\r\n"), realm),
    ] {
        let raw = format!(
            "POST /epro/submit HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{GIN_BODY}",
            GIN_BODY.len()
        );
        s.write_all(raw.as_bytes()).unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 401, "{auth:?}");
        assert!(r.error().contains("bearer token"));
        assert_eq!(r.header("www-authenticate"), Some(challenge), "{auth:?}");
    }

    // 403: a device writing to a project outside its scope.
    let other = r#"{"patientId":"P-1","reportData":"x","projectId":"P999"}"#;
    let r = post(&mut s, "/epro/submit", DEVICE, other);
    assert_eq!(r.status, 403);
    assert!(r.error().contains("projectId"));

    // The connection survived all of that.
    assert_eq!(post(&mut s, "/epro/submit", DEVICE, GIN_BODY).status, 200);
    // 413: over max_body_bytes, which closes the connection.
    let big = format!(
        r#"{{"patientId":"P-1","reportData":"{}"}}"#,
        "x".repeat(5000)
    );
    let r = post(&mut s, "/epro/submit", DEVICE, &big);
    assert_eq!(r.status, 413);

    // The two UTF-8 charsets and the survival check above: three, all the same body.
    assert_eq!(
        stored_bodies(&server),
        vec![GIN_BODY.as_bytes().to_vec(); 3],
        "a rejected body was stored"
    );
}

/// [`CONFIG`] with the panic seams (builds with the `test-seams` feature only).
#[cfg(feature = "test-seams")]
fn with_seams() -> String {
    format!("{CONFIG}\n[test_seams]\npanic_patient = \"PANIC\"\npanic_project = \"PANIC\"\n")
}

#[cfg(feature = "test-seams")]
#[test]
fn a_panicking_handler_is_a_500_and_the_shard_lives_on() {
    let server = Server::start(&with_seams(), &[]);
    for _ in 0..4 {
        let mut s = server.connect();
        let r = post(&mut s, "/epro/submit", DEVICE, &common::report("PANIC"));
        assert_eq!(r.status, 500);
        assert_eq!(r.error(), "internal error");
        assert_eq!(r.header("connection"), Some("close"));
    }
    // Every shard still serves (connections spread over both).
    for i in 0..16 {
        let mut s = server.connect();
        assert_eq!(
            post(
                &mut s,
                "/epro/submit",
                DEVICE,
                &common::report(&format!("P-{i}"))
            )
            .status,
            200
        );
    }
    // The log reaches the test through a pipe and a reader thread.
    assert!(common::wait_until(
        std::time::Duration::from_secs(5),
        || server.log().contains("handler panicked")
    ));
}

/// A panic while a cross-shard read is answered (after the onion's synchronous part)
/// is recovered the same way.
#[cfg(feature = "test-seams")]
#[test]
fn a_panic_while_answering_a_read_is_a_500_and_the_shard_lives_on() {
    let server = Server::start(&with_seams(), &[]);
    for _ in 0..4 {
        let mut s = server.connect();
        let r = get(&mut s, "/api/v1/projects/PANIC/reports/summary", ADMIN);
        assert_eq!(r.status, 500, "{}", r.text());
        assert_eq!(r.header("connection"), Some("close"));
    }
    for _ in 0..8 {
        let mut s = server.connect();
        let r = get(&mut s, "/api/v1/projects/P001/reports/summary", ADMIN);
        assert_eq!(r.status, 200);
    }
}

/// Reports without a projectId (the Gin clients' body) are counted under project `-`,
/// which admins and unscoped principals read; nobody may name `-` as a project.
#[test]
fn reports_without_a_project_are_counted_under_a_reserved_bucket() {
    let server = Server::start(CONFIG, &[]);
    let mut s = server.connect();
    assert_eq!(post(&mut s, "/epro/submit", DEVICE, GIN_BODY).status, 200);
    let r = get(&mut s, "/api/v1/projects/-/reports/summary", ADMIN);
    assert_eq!(
        (r.status, r.json()["reports"].clone()),
        (200, serde_json::json!(1))
    );
    assert_eq!(
        get(&mut s, "/api/v1/projects/-/reports/summary", STAFF).status,
        403
    );
    let named = r#"{"patientId":"P-1","reportData":"x","projectId":"-"}"#;
    let r = post(&mut s, "/epro/submit", ADMIN, named);
    assert_eq!(r.status, 400);
    assert!(
        r.error().starts_with("projectId must not be -"),
        "{}",
        r.error()
    );
    let tag = r#"{"patientId":"P-1","tagName":"t","projectId":"-"}"#;
    assert_eq!(post(&mut s, "/api/v1/tags/add", ADMIN, tag).status, 400);
}

#[test]
fn tags_and_roles() {
    let server = Server::start(CONFIG, &[]);
    let mut s = server.connect();
    let tag = r#"{"patientId":"P-1","tagName":"high-risk","projectId":"P001"}"#;
    let r = post(&mut s, "/api/v1/tags/add", STAFF, tag);
    assert_eq!(
        (r.status, r.json()),
        (200, serde_json::json!({"success": true}))
    );
    let r = post(
        &mut s,
        "/api/v1/tags/add",
        STAFF,
        r#"{"patientId":"P-1","projectId":"P001"}"#,
    );
    assert_eq!(
        (r.status, r.error()),
        (400, "tagName is required".to_string())
    );
    // A tag belongs to a project, and is authorized like a submit to it.
    let r = post(
        &mut s,
        "/api/v1/tags/add",
        STAFF,
        r#"{"patientId":"P-1","tagName":"x"}"#,
    );
    assert_eq!(
        (r.status, r.error()),
        (400, "projectId is required".to_string())
    );
    let other = r#"{"patientId":"P-1","tagName":"stolen","projectId":"P002"}"#;
    let r = post(&mut s, "/api/v1/tags/add", STAFF, other);
    assert_eq!(
        (r.status, r.error()),
        (
            403,
            "this principal may not write to the tag's projectId".to_string()
        )
    );
    let r = post(&mut s, "/api/v1/tags/add", DEVICE, tag);
    assert_eq!(r.status, 403);
    let r = get(&mut s, "/api/v1/projects/P001/reports/summary", DEVICE);
    assert_eq!(r.status, 403);
    let r = get(&mut s, "/api/v1/projects/P999/reports/summary", STAFF);
    assert_eq!(r.status, 403);
    assert_eq!(
        get(&mut s, "/api/v1/projects/P999/reports/summary", ADMIN).status,
        200
    );
    let r = get(
        &mut s,
        "/api/v1/projects/P001/reports/summary",
        "wrong-token-0000000",
    );
    assert_eq!(r.status, 401);
}

#[test]
fn permissions_self_or_admin() {
    let server = Server::start(CONFIG, &[]);
    let mut s = server.connect();
    let r = get(&mut s, "/api/v1/users/staff-1/permissions", STAFF);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::json!({"userId": "staff-1", "role": "staff", "projects": ["P001"]})
    );
    assert_eq!(
        get(&mut s, "/api/v1/users/device-1/permissions", STAFF).status,
        403
    );
    let r = get(&mut s, "/api/v1/users/device-1/permissions", ADMIN);
    assert_eq!(r.json()["role"], "device");
    let r = get(&mut s, "/api/v1/users/nobody/permissions", ADMIN);
    assert_eq!((r.status, r.error()), (404, "no such user".to_string()));
    assert_eq!(
        get(&mut s, "/api/v1/users/staff-1/permissions", DEVICE).status,
        403
    );
    // One's own permissions, whatever the role.
    let r = get(&mut s, "/api/v1/users/device-1/permissions", DEVICE);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["userId"], "device-1");
}

/// Reports from many connections (so both shards store some), then exact reads. Half
/// the threads send a `submissionId`: those reports are stored by their key's owner
/// shard, often not the one that received them, and must count just the same.
#[test]
fn summary_and_subjects_are_exact_across_shards_and_restarts() {
    let server = Server::start(CONFIG, &[]);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                for i in 0..25 {
                    // 8 x 25 = 200 reports: patients P-0..P-9, sites S1 (even i) and S2 (odd i).
                    let key = if t % 2 == 1 {
                        format!(r#""submissionId":"sub-{t}-{i}","#)
                    } else {
                        String::new()
                    };
                    let body = format!(
                        r#"{{{key}"patientId":"P-{}","projectId":"P001","siteId":"S{}","reportData":"x"}}"#,
                        (t * 25 + i) % 10,
                        1 + i % 2
                    );
                    assert_eq!(post(&mut s, "/epro/submit", DEVICE, &body).status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut s = server.connect();
    assert_eq!(
        post(
            &mut s,
            "/api/v1/tags/add",
            STAFF,
            r#"{"patientId":"P-3","tagName":"high-risk","projectId":"P001"}"#
        )
        .status,
        200
    );
    // The same patient id tagged in another project: never shown in P001.
    let elsewhere = r#"{"patientId":"P-3","tagName":"elsewhere","projectId":"P009"}"#;
    assert_eq!(
        post(&mut s, "/api/v1/tags/add", ADMIN, elsewhere).status,
        200
    );
    let per_shard: Vec<usize> = (0..2u16)
        .map(|shard| {
            let mut n = 0;
            scan_shard(
                &server.data_dir().join(format!("shard-{shard}")),
                shard,
                |_| n += 1,
                |_| {},
            )
            .unwrap();
            n
        })
        .collect();
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "one shard stored nothing: {per_shard:?}"
    );

    let check = |server: &Server| {
        let mut s = server.connect();
        let summary = get(&mut s, "/api/v1/projects/P001/reports/summary", STAFF).json();
        assert_eq!(summary["projectId"], "P001");
        assert_eq!(summary["reports"], 200);
        assert_eq!(summary["subjects"], 10);
        // Site S1 takes the even i of each thread (13 of 25), S2 the odd ones.
        let s1 = summary["sites"]["S1"]["reports"].as_u64().unwrap();
        let s2 = summary["sites"]["S2"]["reports"].as_u64().unwrap();
        assert_eq!((s1, s2), (8 * 13, 8 * 12));
        assert_eq!(summary["sites"]["S1"]["subjects"], 10);
        assert!(summary["lastReceivedAt"].as_str().is_some());

        let subjects = get(&mut s, "/api/v1/projects/P001/sites/S1/subjects", STAFF).json();
        let rows = subjects["subjects"].as_array().unwrap();
        assert_eq!(rows.len(), 10);
        let total: u64 = rows.iter().map(|r| r["reports"].as_u64().unwrap()).sum();
        assert_eq!(total, s1);
        let p3 = rows.iter().find(|r| r["patientId"] == "P-3").unwrap();
        assert_eq!(p3["tags"], serde_json::json!(["high-risk"]));
        let empty = get(&mut s, "/api/v1/projects/P001/sites/S9/subjects", STAFF).json();
        assert_eq!(empty["subjects"], serde_json::json!([]));
    };
    check(&server);
    let dir = server.kill();
    let server = Server::start_in(dir, CONFIG, &[]);
    check(&server);
}

/// Identifiers may hold spaces, `/` and non-ASCII: a client reads them back by
/// percent-encoding them in the path; a malformed escape is a 400.
#[test]
fn identifiers_that_need_escaping_are_read_back_percent_encoded() {
    let server = Server::start(CONFIG, &[]);
    let mut s = server.connect();
    let body = r#"{"patientId":"P-x","projectId":"P 1/x","siteId":"S é","reportData":"fine"}"#;
    let r = post(&mut s, "/epro/submit", ADMIN, body);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(
        &mut s,
        "/api/v1/projects/P%201%2Fx/sites/S%20%C3%A9/subjects",
        ADMIN,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["projectId"], "P 1/x");
    assert_eq!(r.json()["siteId"], "S é");
    assert_eq!(r.json()["subjects"][0]["patientId"], "P-x");
    let r = get(&mut s, "/api/v1/projects/P%201%2fx/reports/summary", ADMIN);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["reports"], 1);
    for bad in ["P%zz", "P%2", "P%C3"] {
        let r = get(
            &mut s,
            &format!("/api/v1/projects/{bad}/reports/summary"),
            ADMIN,
        );
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.error().contains("percent-escape"), "{}", r.error());
    }
}

/// Every field that breaks a rule is reported (as Gin's binding does), the first as
/// `error` so the v1 shape holds; nothing is stored.
#[test]
fn validation_reports_every_failing_field() {
    let server = Server::start(CONFIG, &[]);
    let mut s = server.connect();
    let body =
        r#"{"patientId":"","reportData":7,"timestamp":"yesterday","siteId":"","projectId":"P001"}"#;
    let r = post(&mut s, "/epro/submit", DEVICE, body);
    assert_eq!(r.status, 400);
    let json = r.json();
    assert_eq!(json["error"], "patientId must not be empty");
    assert_eq!(
        json["errors"],
        serde_json::json!([
            "patientId must not be empty",
            "reportData must be a non-empty string or object",
            "timestamp must be an RFC 3339 date-time",
            "siteId must not be empty"
        ])
    );
    let r = post(&mut s, "/api/v1/tags/add", ADMIN, r#"{"tagName":""}"#);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["errors"],
        serde_json::json!([
            "patientId is required",
            "tagName must not be empty",
            "projectId is required"
        ])
    );
    // A body that is not an object has that one problem.
    let r = post(&mut s, "/epro/submit", DEVICE, "[1]");
    assert_eq!(
        r.json()["errors"],
        serde_json::json!(["body must be a JSON object"])
    );
    let summary = get(&mut s, "/api/v1/projects/P001/reports/summary", ADMIN);
    assert_eq!(summary.json()["reports"], 0);
}

/// JSON allows integers of any size: one past 64 bits is stored, not refused as
/// malformed, and the body is kept exactly.
#[test]
fn integers_past_64_bits_are_valid_json() {
    let server = Server::start(CONFIG, &[]);
    let mut s = server.connect();
    let body = r#"{"patientId":"P-big","projectId":"P001","reportData":{"n":34506910149765885952,"m":-1.7976931348623155e+308}}"#;
    let r = post(&mut s, "/epro/submit", DEVICE, body);
    assert_eq!(r.status, 200, "{}", r.text());
}
