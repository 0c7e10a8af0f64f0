//! The Grafana dashboard and the Prometheus alert rules in `deploy/` name only metrics
//! a live server exports: every `epro_*` and `process_*` name they use is in a scrape
//! of `/metrics` (histograms with their `_bucket`, `_sum` and `_count` series).

mod common;

use std::collections::BTreeSet;

use common::{get, Server};

const DASHBOARD: &str = include_str!("../deploy/grafana/epro-ingest.json");
const ALERTS: &str = include_str!("../deploy/prometheus/alerts.yml");

/// Every metric name of the project's families (`epro_*`, `process_*`) in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["epro_", "process_"] {
        for (at, _) in text.match_indices(prefix) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// The names of every series in a scrape.
fn exported(server: &Server) -> BTreeSet<String> {
    let r = get(&mut server.connect(), "/metrics", "");
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// Every PromQL expression of the dashboard's panels.
fn panel_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    panels
        .iter()
        .flat_map(|p| {
            let targets = p["targets"].as_array().expect("every panel has targets");
            assert!(!targets.is_empty(), "{}", p["title"]);
            targets
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn every_metric_a_panel_or_an_alert_names_is_exported() {
    // A write first, so that the per-kind log series exist.
    let server = Server::start(common::DEVICE_CONFIG, &[]);
    let r = common::post(
        &mut server.connect(),
        "/epro/submit",
        common::DEVICE_TOKEN,
        &common::report("P-1"),
    );
    assert_eq!(r.status, 200);
    let live = exported(&server);
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let exprs = panel_exprs(&dashboard);
    let used: BTreeSet<String> = exprs
        .iter()
        .flat_map(|e| metric_names(e))
        .chain(metric_names(ALERTS))
        .collect();
    let missing: Vec<&String> = used.iter().filter(|n| !live.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "not in /metrics: {missing:?}\nlive: {live:?}"
    );
    // The dashboard and the rules cover the signals an operator pages on.
    for needed in [
        "epro_ready",
        "epro_log_sync_duration_seconds_bucket",
        "epro_shed_total",
    ] {
        assert!(used.contains(needed), "{needed} unused");
    }
    // Each rule has a name and an expression (a structural check; promtool does more).
    let rules = ALERTS.matches("- alert: ").count();
    assert!(
        rules >= 5 && ALERTS.matches("expr: ").count() == rules,
        "{ALERTS}"
    );
}

/// The name scan itself finds names and only names.
#[test]
fn metric_names_are_read_whole() {
    let names = metric_names("rate(epro_shed_total{a=\"b\"}[5m]) / x_epro_no + process_open_fds");
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(names, ["epro_shed_total", "process_open_fds"]);
}
