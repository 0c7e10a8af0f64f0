//! `GET /metrics`: every shard's counters merged over the mesh, exact, and in a text
//! format that the Prometheus project's own parser (the `prometheus_client` Python
//! package; `scripts/test.sh` installs it) reads without complaint.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;

use common::{exchange, get, post, project_report, Server, DEVICE_TOKEN as DEVICE};
use std::time::Duration;

const CONFIG: &str = common::DEVICE_ADMIN_CONFIG;

/// The scrape's body, from a new connection (any shard may answer).
fn scrape(server: &Server) -> String {
    let mut stream = server.connect();
    let r = get(&mut stream, "/metrics", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

/// Sample lines `name{labels} value` whose name is `name` and whose labels include
/// every `(label, value)` of `with`, by their `shard` label.
fn samples(text: &str, name: &str, with: &[(&str, &str)]) -> BTreeMap<String, f64> {
    let mut found = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, labels) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            continue;
        }
        let labels: BTreeMap<&str, &str> = labels
            .trim_end_matches('}')
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if with.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            let shard = labels.get("shard").unwrap_or(&"-").to_string();
            *found.entry(shard).or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    found
}

fn total(text: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    samples(text, name, with).values().sum()
}

const SUBMIT_200: &[(&str, &str)] = &[
    ("route", "/epro/submit"),
    ("method", "POST"),
    ("code", "200"),
];

#[test]
fn submits_spread_over_every_shard_are_counted_exactly() {
    let server = Server::start(CONFIG, &[]);
    let before = scrape(&server);
    let base_ok = total(&before, "epro_http_requests_total", SUBMIT_200);
    let base_bad = total(
        &before,
        "epro_http_requests_total",
        &[("route", "/epro/submit"), ("code", "400")],
    );
    let base_records = total(&before, "epro_log_records_total", &[("kind", "report")]);
    // 20 connections: the kernel spreads them over both shards.
    let (connections, per_connection, bad) = (20, 12, 5);
    let mut stored = 0;
    for c in 0..connections {
        let mut stream = server.connect();
        for i in 0..per_connection {
            let r = post(
                &mut stream,
                "/epro/submit",
                DEVICE,
                &project_report(&format!("P-{c}-{i}")),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            stored += 1;
        }
    }
    let mut stream = server.connect();
    for _ in 0..bad {
        let r = post(&mut stream, "/epro/submit", DEVICE, r#"{"patientId":""}"#);
        assert_eq!(r.status, 400);
    }
    let after = scrape(&server);
    let ok = samples(&after, "epro_http_requests_total", SUBMIT_200);
    assert_eq!(
        ok.values().sum::<f64>() - base_ok,
        f64::from(stored),
        "{ok:?}"
    );
    assert_eq!(ok.len(), 2, "both shards served submits: {ok:?}");
    let bad_now = total(
        &after,
        "epro_http_requests_total",
        &[("route", "/epro/submit"), ("code", "400")],
    );
    assert_eq!(bad_now - base_bad, f64::from(bad));
    // Every acknowledged report was written and synced, and counted as such.
    let records = total(&after, "epro_log_records_total", &[("kind", "report")]);
    assert_eq!(records - base_records, f64::from(stored));
    let durations = total(
        &after,
        "epro_http_request_duration_seconds_count",
        &[("route", "/epro/submit")],
    );
    assert!(durations >= f64::from(stored + bad), "{durations}");
    // The scrape that measured this counted itself on one shard only afterwards.
    let scrapes = total(&after, "epro_http_requests_total", &[("route", "/metrics")]);
    assert_eq!(
        scrapes, 1.0,
        "the first scrape, counted once it was answered"
    );
}

#[test]
fn framing_rejections_and_connections_are_counted() {
    let server = Server::start(CONFIG, &[]);
    let count = |text: &str| total(text, "epro_rejections_total", &[("reason", "bare_lf")]);
    let before = count(&scrape(&server));
    // A bare LF in the head: 400 and close.
    let (responses, _) = exchange(
        server.addr,
        b"GET /healthz HTTP/1.1\nHost: t\r\n\r\n",
        Duration::from_millis(200),
    );
    assert_eq!(responses[0].status, 400);
    let after = scrape(&server);
    assert_eq!(count(&after) - before, 1.0);
    // Three idle connections held open, plus the scrape's own.
    let held: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    assert!(common::wait_until(Duration::from_secs(5), || {
        total(&scrape(&server), "epro_connections", &[]) == 4.0
    }));
    drop(held);
    assert!(common::wait_until(Duration::from_secs(5), || {
        total(&scrape(&server), "epro_connections", &[]) == 1.0
    }));
}

/// Parses `text` with the Prometheus Python client's parser and returns each family's
/// name and type, one `name type samples` per line.
fn parse_with_prometheus_client(text: &str) -> String {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print(family.name, family.type, len(family.samples))
"#;
    let out = common::python(script, text.as_bytes());
    assert!(
        out.status.success(),
        "the Prometheus parser refused the exposition:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_whole_exposition_parses_with_the_prometheus_parser() {
    let server = Server::start(CONFIG, &[]);
    let mut stream = server.connect();
    let r = post(&mut stream, "/epro/submit", DEVICE, &project_report("P-1"));
    assert_eq!(r.status, 200);
    let text = scrape(&server);
    let families = parse_with_prometheus_client(&text);
    // The client's parser names counters without their `_total` suffix.
    for (name, kind) in [
        ("epro_http_requests", "counter"),
        ("epro_http_request_duration_seconds", "histogram"),
        ("epro_rejections", "counter"),
        ("epro_connections", "gauge"),
        ("epro_ready", "gauge"),
        ("epro_log_records", "counter"),
        ("epro_log_bytes", "counter"),
        ("epro_log_sync_duration_seconds", "histogram"),
        ("epro_log_group_records", "histogram"),
        ("epro_log_pending_bytes", "gauge"),
        ("epro_log_writes_stopped", "gauge"),
        ("epro_log_no_space", "gauge"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        let line = families
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("no family {name} in:\n{families}"));
        assert_eq!(line.split(' ').nth(1), Some(kind), "{line}");
    }
    // Durations are in seconds: one submit took well under one.
    let took = total(
        &text,
        "epro_http_request_duration_seconds_sum",
        &[("route", "/epro/submit")],
    );
    assert!(took > 0.0 && took < 1.0, "{took}");
    // Plausible process values, and both shards ready.
    assert!(total(&text, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(total(&text, "process_open_fds", &[]) >= 4.0);
    assert_eq!(
        samples(&text, "epro_ready", &[])
            .values()
            .collect::<Vec<_>>(),
        [&1.0, &1.0]
    );
    // No patient data, ids or tokens in it.
    for secret in ["P-1", DEVICE, "s0-", "s1-"] {
        assert!(!text.contains(secret), "{secret} in the exposition");
    }
}
