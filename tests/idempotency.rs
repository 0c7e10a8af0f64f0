//! Idempotent submits and tags: a `submissionId` in the body or an `Idempotency-Key`
//! header is stored at most once per (principal, key), whichever shard's connection
//! it arrives on, across kill -9 and a change in the number of shards. A retry gets the
//! first answer again; a reuse with another body gets 422.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{
    export, get, read_response, wait_until, Response, Server, ADMIN_TOKEN as ADMIN,
    DEVICE_ADMIN_CONFIG as CONFIG, DEVICE_TOKEN as DEVICE,
};

fn send(stream: &mut TcpStream, path: &str, body: &str, key: Option<&str>) -> Response {
    let token = if path == "/epro/submit" {
        DEVICE
    } else {
        ADMIN
    };
    let key = key.map_or(String::new(), |k| format!("Idempotency-Key: {k}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\n{key}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_response(stream).expect("a response")
}

fn submit(addr: SocketAddr, body: &str, key: Option<&str>) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    send(&mut stream, "/epro/submit", body, key)
}

fn keyed_report(patient: &str, submission: &str) -> String {
    format!(
        r#"{{"patientId":"{patient}","projectId":"P001","siteId":"S01","reportData":"fine","submissionId":"{submission}"}}"#
    )
}

fn plain_report(patient: &str) -> String {
    common::project_report(patient)
}

fn reports(server: &Server) -> u64 {
    let mut stream = server.connect();
    let r = get(&mut stream, "/api/v1/projects/P001/reports/summary", ADMIN);
    r.json()["reports"].as_u64().unwrap()
}

fn replayed(r: &Response) -> bool {
    r.header("idempotent-replayed") == Some("true")
}

#[test]
fn a_retry_gets_the_first_answer_and_stores_nothing() {
    let server = Server::start(CONFIG, &[]);
    let body = keyed_report("P-1", "sub-1");
    let first = submit(server.addr, &body, None);
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(!replayed(&first));
    let again = submit(server.addr, &body, None);
    assert_eq!(again.status, 200, "{}", again.text());
    assert!(replayed(&again));
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(again.json()["receivedAt"], first.json()["receivedAt"]);
    // The header may repeat the body's key; it may not contradict it.
    let same = submit(server.addr, &body, Some("sub-1"));
    assert!(replayed(&same) && same.json()["id"] == first.json()["id"]);
    let differ = submit(server.addr, &body, Some("sub-2"));
    assert_eq!(differ.status, 400);
    assert_eq!(differ.error(), "submissionId and Idempotency-Key differ");
    // Same key, other bytes: refused, nothing stored.
    let other = submit(server.addr, &keyed_report("P-2", "sub-1"), None);
    assert_eq!(other.status, 422, "{}", other.text());
    assert_eq!(other.error(), "submissionId reused with a different body");
    assert_eq!(reports(&server), 1);

    // A key sent only as a header.
    let body = plain_report("P-3");
    let first = submit(server.addr, &body, Some("hdr-1"));
    let again = submit(server.addr, &body, Some("hdr-1"));
    assert!(!replayed(&first) && replayed(&again));
    assert_eq!(again.json()["id"], first.json()["id"]);
    let other = submit(server.addr, &plain_report("P-4"), Some("hdr-1"));
    assert_eq!(other.status, 422);
    assert_eq!(
        other.error(),
        "Idempotency-Key reused with a different body"
    );
    let bad = submit(server.addr, &body, Some(&"k".repeat(127)));
    assert_eq!(bad.status, 400);
    assert!(
        bad.error().contains("Idempotency-Key must be"),
        "{}",
        bad.error()
    );
    assert_eq!(reports(&server), 2);

    // Tags take the header with the same rules.
    let tag = r#"{"projectId":"P001","patientId":"P-3","tagName":"high-risk"}"#;
    let mut stream = server.connect();
    let first = send(&mut stream, "/api/v1/tags/add", tag, Some("tag-1"));
    let again = send(&mut stream, "/api/v1/tags/add", tag, Some("tag-1"));
    assert_eq!((first.status, again.status), (200, 200));
    assert!(!replayed(&first) && replayed(&again));
    let tags: Vec<_> = export(&server.data_dir())
        .into_iter()
        .filter(|r| r["kind"] == "tag")
        .collect();
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert_eq!(tags[0]["idempotencyKey"], "tag-1");
}

#[test]
fn concurrent_retries_over_both_shards_store_one_record_that_survives_kill_9() {
    const RETRIES: usize = 50;
    let server = Server::start(CONFIG, &[]);
    let body = keyed_report("P-9", "retry-storm");
    let addr = server.addr;
    let answers: Vec<Response> = (0..RETRIES)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || submit(addr, &body, None))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(answers.iter().all(|r| r.status == 200));
    let ids: BTreeSet<String> = answers
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let firsts = answers.iter().filter(|r| !replayed(r)).count();
    assert_eq!(firsts, 1, "exactly one answer is the first");
    // The copies arrived on both shards' connections (shards flush their log lines
    // every 100 ms).
    for shard in 0..2 {
        let line = format!("shard={shard} POST /epro/submit 200");
        assert!(
            wait_until(Duration::from_secs(3), || server.log().contains(&line)),
            "no copy arrived on shard {shard}"
        );
    }
    let stored = export(&server.data_dir());
    assert_eq!(stored.len(), 1, "{stored:?}");

    // A header-only key, then kill -9: the log alone is the keys' truth.
    let plain = plain_report("P-10");
    let header_first = submit(addr, &plain, Some("hdr-kill"));
    let dir = server.kill();
    let server = Server::start_in(dir, CONFIG, &[]);
    for (body, key, first) in [
        (&body, None, &answers[0]),
        (&plain, Some("hdr-kill"), &header_first),
    ] {
        let again = submit(server.addr, body, key);
        assert_eq!(again.status, 200, "{}", again.text());
        assert!(replayed(&again));
        assert_eq!(again.json()["id"], first.json()["id"]);
        assert_eq!(again.json()["receivedAt"], first.json()["receivedAt"]);
    }
    assert_eq!(export(&server.data_dir()).len(), 2);
}

#[test]
fn keys_move_to_their_new_owners_when_the_number_of_shards_changes() {
    let server = Server::start(CONFIG, &["--shards", "1"]);
    let firsts: Vec<(String, Response)> = (0..20)
        .map(|i| {
            let body = keyed_report(&format!("P-{i}"), &format!("move-{i}"));
            let r = submit(server.addr, &body, None);
            assert_eq!(r.status, 200);
            (body, r)
        })
        .collect();
    let (status, dir) = server.terminate();
    assert!(status.success());
    let server = Server::start_in(dir, CONFIG, &["--shards", "2"]);
    assert!(
        wait_until(Duration::from_secs(3), || server
            .log()
            .contains("shard 0: handing ")),
        "{}",
        server.log()
    );
    for (body, first) in &firsts {
        let again = submit(server.addr, body, None);
        assert!(replayed(&again), "{}", again.text());
        assert_eq!(again.json()["id"], first.json()["id"]);
    }
    assert_eq!(reports(&server), 20);
}

/// `retire-shard` moves a damaged log aside; its records are no longer served, but
/// their keys still hold: a retry of one gets its first answer (the old id) and a
/// different body under it a 422, never a second record, also when the server comes
/// back with more shards (the keys go to their new owners). Before, all the retired
/// shard's keys were forgotten and every retry stored again.
#[test]
fn keys_of_a_retired_log_still_hold() {
    let server = Server::start(CONFIG, &["--shards", "1"]);
    let firsts: Vec<(String, Response)> = (0..16)
        .map(|i| {
            let body = keyed_report(&format!("P-ret-{i}"), &format!("ret-{i}"));
            let r = submit(server.addr, &body, None);
            assert_eq!(r.status, 200, "{}", r.text());
            (body, r)
        })
        .collect();
    let (status, dir) = server.terminate();
    assert!(status.success());
    let data = dir.path().join("data");
    let out = common::run_cli(&["retire-shard", "--shard", "0"], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = Server::start_in(dir, CONFIG, &["--shards", "2"]);
    for (body, first) in &firsts {
        let again = submit(server.addr, body, None);
        assert!(replayed(&again), "{}", again.text());
        assert_eq!(again.json()["id"], first.json()["id"]);
        assert_eq!(again.json()["receivedAt"], first.json()["receivedAt"]);
    }
    let other = keyed_report("P-someone-else", "ret-0");
    assert_eq!(submit(server.addr, &other, None).status, 422);
    // The live logs hold nothing: no retry was stored again.
    let exported = export(&server.data_dir());
    assert!(exported.is_empty(), "{exported:?}");
    assert!(
        wait_until(Duration::from_secs(5), || server
            .log()
            .contains("idempotency keys of retired logs")),
        "{}",
        server.log()
    );
}
