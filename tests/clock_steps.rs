//! The wall clock stepping, with the real binary (its clock set off through the
//! `clock_offset_s` and `clock_offset_file` test seams) and real files: a restart with
//! the clock corrected, in either direction, or a step while running, does not store a
//! `submissionId` twice within the idempotency window, and `receivedAt` never goes
//! backwards along a shard's chain.

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

/// Stores `sub-1` under a 1 h window, steps the wall clock 2 h ahead while the server
/// runs (through the `clock_offset_file` seam), lets key expiry pass many times (every
/// 50 ms through `key_expiry_every_ms`), and sends it again: the window is measured on
/// the shard's own clock, which the step does not move, so the key is still known.
#[test]
fn a_wall_clock_step_while_running_does_not_expire_a_key() {
    let dir = temp_dir();
    let offset = dir.path().join("clock-offset");
    std::fs::write(&offset, "0").unwrap();
    let config = format!(
        "idempotency_window_hours = 1\n{}\n[test_seams]\nkey_expiry_every_ms = 50\n\
         clock_offset_file = \"{}\"\n",
        common::DEVICE_CONFIG,
        offset.display()
    );
    let server = Server::start_in(dir, &config, &["--shards", "1"]);
    let mut stream = server.connect();
    let body = keyed_report("P-1", "sub-1");
    let first = post(&mut stream, "/epro/submit", DEVICE, &body);
    assert_eq!(first.status, 200, "{}", first.text());

    std::fs::write(&offset, "7200").unwrap();
    // The step is in force once a record's receivedAt reads over an hour ahead.
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let hour_ahead = epro_ingest::base::clock::format_rfc3339(real_now + 3_600_000_000_000);
    let hour_ahead = String::from_utf8(hour_ahead.to_vec()).unwrap();
    let mut probes = 0;
    let stepped = common::wait_until(std::time::Duration::from_secs(5), || {
        probes += 1;
        let probe = keyed_report("P-2", &format!("probe-{probes}"));
        let r = post(&mut stream, "/epro/submit", DEVICE, &probe);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["receivedAt"].as_str().unwrap() > hour_ahead.as_str()
    });
    assert!(
        stepped,
        "the clock step never took effect:\n{}",
        server.log()
    );
    // Ten expiry periods: passes ran with the wall clock past the window.
    std::thread::sleep(std::time::Duration::from_millis(500));

    let again = post(&mut stream, "/epro/submit", DEVICE, &body);
    let (status, dir) = server.terminate();
    assert!(status.success());
    let records: Vec<(String, String)> = common::export(&dir.path().join("data"))
        .into_iter()
        .map(|r| {
            let key = r["body"]["submissionId"].as_str().unwrap().to_string();
            (key, r["receivedAt"].as_str().unwrap().to_string())
        })
        .collect();
    stored_once(&first, &again, &records);
}
