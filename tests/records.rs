//! `GET /api/v1/records/{id}`: a record read back by the id its submit was given, on
//! whichever shard it lives, byte for byte, with who sent it and when; authorized by
//! the record's project (a record the caller may not read is 404, like one that is not
//! there); found again after a restart (the locations are rebuilt from
//! the log) and right after an asynchronous acknowledgement.

mod common;

use std::net::TcpStream;

use common::{get, post, Response, Server, ADMIN_TOKEN as ADMIN, DEVICE_TOKEN as DEVICE};

const STAFF_P1: &str = "staff-p1-token-0123456789";
const STAFF_P2: &str = "staff-p2-token-0123456789";

fn config() -> String {
    format!(
        r#"{}
[[principals]]
id = "staff-p1"
token = "{STAFF_P1}"
role = "staff"
projects = ["P001"]

[[principals]]
id = "staff-p2"
token = "{STAFF_P2}"
role = "staff"
projects = ["P002"]
"#,
        common::DEVICE_ADMIN_CONFIG
    )
}

/// Submits `body` on a new connection: (id, receivedAt).
fn submit(server: &Server, body: &str) -> (String, String) {
    let mut stream = server.connect();
    let r = post(&mut stream, "/epro/submit", DEVICE, body);
    assert_eq!(r.status, 200, "{}", r.text());
    let json = r.json();
    (
        json["id"].as_str().unwrap().to_string(),
        json["receivedAt"].as_str().unwrap().to_string(),
    )
}

fn read(stream: &mut TcpStream, id: &str, token: &str) -> Response {
    get(stream, &format!("/api/v1/records/{id}"), token)
}

#[test]
fn a_record_reads_back_exactly_from_any_shard_for_its_projects_staff() {
    let server = Server::start(&config(), &[]);
    // Odd spacing and field order: the body comes back exactly as sent.
    let bodies: Vec<String> = (0..12)
        .map(|i| {
            format!(
                r#"{{ "reportData" : {{"q":[{i}, 2]}}, "patientId":"P-{i}", "projectId":"P001","siteId":"S01" }}"#
            )
        })
        .collect();
    let stored: Vec<(String, String)> = bodies.iter().map(|b| submit(&server, b)).collect();
    assert!(stored.iter().any(|(id, _)| id.starts_with("s0-")));
    assert!(stored.iter().any(|(id, _)| id.starts_with("s1-")));
    let mut stream = server.connect();
    for (body, (id, received)) in bodies.iter().zip(&stored) {
        for token in [STAFF_P1, ADMIN] {
            let r = read(&mut stream, id, token);
            assert_eq!(r.status, 200, "{id}: {}", r.text());
            assert_eq!(r.body, body.as_bytes(), "{id}");
            assert_eq!(r.header("x-record-principal"), Some("site-app-001"));
            assert_eq!(r.header("x-received-at"), Some(received.as_str()));
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
        // Another project's record is no record to this caller: the same 404 as an id
        // that names none, so its existence does not leak.
        let r = read(&mut stream, id, STAFF_P2);
        let none = read(&mut stream, "s0-999999", STAFF_P2);
        assert_eq!((r.status, none.status), (404, 404), "{id}");
        assert_eq!(r.body, none.body, "{id}");
    }
    // The id is a path parameter like any: percent-decoded (`%2D` is `-`).
    let (id, _) = &stored[0];
    let escaped = id.replace('-', "%2D");
    let r = read(&mut stream, &escaped, ADMIN);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, bodies[0].as_bytes()),
        "{escaped}"
    );
    let r = read(&mut stream, "s0%2", ADMIN);
    assert_eq!(r.status, 400);
    assert!(
        r.error().contains("malformed percent-escape"),
        "{}",
        r.error()
    );
    // A report without a project counts under `-`: admins read it, P001's staff not.
    let (id, _) = submit(&server, &common::report("P-none"));
    assert_eq!(read(&mut stream, &id, ADMIN).status, 200);
    assert_eq!(read(&mut stream, &id, STAFF_P1).status, 404);
    // Devices do not read records back.
    assert_eq!(read(&mut stream, &stored[0].0, DEVICE).status, 403);
}

#[test]
fn unknown_and_malformed_ids_are_told_apart() {
    let server = Server::start(&config(), &[]);
    let mut stream = server.connect();
    for id in ["s0-999999", "s1-999999", "s7-1", "s0-0"] {
        let r = read(&mut stream, id, ADMIN);
        assert_eq!(r.status, 404, "{id}");
        assert_eq!(r.error(), "no such record");
    }
    for id in ["x0-1", "s01-1", "s0-01", "s0-", "s-1", "s0-1x", "s0--1"] {
        let r = read(&mut stream, id, ADMIN);
        assert_eq!(r.status, 400, "{id}");
        assert_eq!(r.error(), "a record id is s<shard>-<sequence number>");
    }
}

#[test]
fn records_are_found_again_after_a_restart() {
    let server = Server::start(&config(), &[]);
    let bodies: Vec<String> = (0..8)
        .map(|i| common::project_report(&format!("P-r{i}")))
        .collect();
    let ids: Vec<String> = bodies.iter().map(|b| submit(&server, b).0).collect();
    let (status, dir) = server.terminate();
    assert!(status.success());
    let server = Server::start_in(dir, &config(), &[]);
    let mut stream = server.connect();
    for (body, id) in bodies.iter().zip(&ids) {
        let r = read(&mut stream, id, ADMIN);
        assert_eq!(r.status, 200, "{id}: {}", r.text());
        assert_eq!(r.body, body.as_bytes());
    }
    // And the records written after the restart, in the new segment.
    let (id, _) = submit(&server, &common::project_report("P-after"));
    assert_eq!(read(&mut stream, &id, ADMIN).status, 200);
}

#[test]
fn an_asynchronously_acknowledged_record_is_readable_at_once() {
    let server = Server::start(&config(), &["--durability", "async"]);
    let mut stream = server.connect();
    for i in 0..50 {
        let body = common::project_report(&format!("P-a{i}"));
        let r = post(&mut stream, "/epro/submit", DEVICE, &body);
        let id = r.json()["id"].as_str().unwrap().to_string();
        let back = read(&mut stream, &id, ADMIN);
        assert_eq!(back.status, 200, "{id}: {}", back.text());
        assert_eq!(back.body, body.as_bytes());
    }
}

/// A read pipelined behind a write, in one send, counts that write: the batch ends
/// before the read and answers it once the write is durable (reads count durable
/// records only). 20 rounds: before, the summary missed the report 20 times in 20.
#[test]
fn a_read_pipelined_behind_a_write_counts_it() {
    use std::io::Write;
    let server = Server::start(&config(), &[]);
    let mut stream = server.connect();
    for round in 1..=20 {
        let body = format!(
            r#"{{"patientId":"P-pipe-{round}","reportData":"x","projectId":"P001","siteId":"S-pipe"}}"#
        );
        let both = format!(
            "POST /epro/submit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {DEVICE}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}\
             GET /api/v1/projects/P001/sites/S-pipe/subjects HTTP/1.1\r\nHost: t\r\n\
             Authorization: Bearer {ADMIN}\r\n\r\n",
            body.len()
        );
        stream.write_all(both.as_bytes()).unwrap();
        let stored = common::read_response(&mut stream).expect("the submit's answer");
        assert_eq!(stored.status, 200, "{}", stored.text());
        let subjects = common::read_response(&mut stream).expect("the read's answer");
        assert_eq!(subjects.status, 200, "{}", subjects.text());
        let count = subjects.json()["subjects"].as_array().map_or(0, Vec::len);
        assert_eq!(count, round, "round {round}: {}", subjects.text());
    }
}
