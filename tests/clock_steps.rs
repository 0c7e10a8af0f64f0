//! The wall clock stepping, with the real binary (its clock set off through the
//! `clock_offset_s` test seam) and real files: a restart with the clock corrected, in
//! either direction, does not store a `submissionId` twice within the idempotency
//! window, and `receivedAt` never goes backwards along a shard's chain.

mod common;

use common::{post, temp_dir, Server, DEVICE_TOKEN as DEVICE};

/// A 1 h idempotency window, and the server's clock `offset_s` off the real time.
fn config(offset_s: i64) -> String {
    format!(
        "idempotency_window_hours = 1\n{}\n[test_seams]\nclock_offset_s = {offset_s}\n",
        common::DEVICE_CONFIG
    )
}

fn keyed_report(patient: &str, submission: &str) -> String {
    format!(
        r#"{{"patientId":"{patient}","projectId":"P001","reportData":"fine","submissionId":"{submission}"}}"#
    )
}

/// Stores `sub-1` under a clock `before_s` off, restarts under one `after_s` off, and
/// sends it again: its answers, then every record's (submissionId, receivedAt) in log
/// order, and the second run's log.
fn resent_after_a_clock_step(
    before_s: i64,
    after_s: i64,
) -> (
    common::Response,
    common::Response,
    Vec<(String, String)>,
    String,
) {
    let body = keyed_report("P-1", "sub-1");
    let server = Server::start_in(temp_dir(), &config(before_s), &["--shards", "1"]);
    let mut stream = server.connect();
    let first = post(&mut stream, "/epro/submit", DEVICE, &body);
    assert_eq!(first.status, 200, "{}", first.text());
    let (status, dir) = server.terminate();
    assert!(status.success());

    let server = Server::start_in(dir, &config(after_s), &["--shards", "1"]);
    let mut stream = server.connect();
    let again = post(&mut stream, "/epro/submit", DEVICE, &body);
    let other = keyed_report("P-2", "sub-2");
    let r = post(&mut stream, "/epro/submit", DEVICE, &other);
    assert_eq!(r.status, 200, "{}", r.text());
    let log = server.log();
    let (status, dir) = server.terminate();
    assert!(status.success());
    let records = common::export(&dir.path().join("data"))
        .into_iter()
        .map(|r| {
            let key = r["body"]["submissionId"].as_str().unwrap().to_string();
            (key, r["receivedAt"].as_str().unwrap().to_string())
        })
        .collect();
    let (clean, out) = common::verify(&dir.path().join("data"));
    assert!(clean, "{out}");
    (first, again, records, log)
}

fn stored_once(first: &common::Response, again: &common::Response, records: &[(String, String)]) {
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(again.json()["receivedAt"], first.json()["receivedAt"]);
    let copies = records.iter().filter(|(key, _)| key == "sub-1").count();
    assert_eq!(copies, 1, "{records:?}");
}

#[test]
fn a_clock_two_hours_behind_then_corrected_does_not_store_a_key_twice() {
    let (first, again, records, _) = resent_after_a_clock_step(-7200, 0);
    stored_once(&first, &again, &records);
    // Time moved on with the corrected clock.
    assert!(records[1].1 > records[0].1, "{records:?}");
}

#[test]
fn a_clock_two_hours_ahead_then_corrected_keeps_received_at_from_going_back() {
    let (first, again, records, log) = resent_after_a_clock_step(7200, 0);
    stored_once(&first, &again, &records);
    // RFC 3339 UTC with nanoseconds, all the same width: text order is time order.
    assert!(records[1].1 >= records[0].1, "{records:?}");
    let steps: Vec<_> = log
        .lines()
        .filter(|l| l.contains("the clock reads"))
        .collect();
    assert_eq!(steps.len(), 1, "{log}");
    assert!(
        steps[0].contains("shard 0: the clock reads 7")
            && steps[0].contains(" s before the last receivedAt stored"),
        "{}",
        steps[0]
    );
}
