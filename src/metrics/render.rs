//! The text exposition (format 0.0.4) of every shard's counters and the process's.

use std::fmt::Write;

use super::{HttpMetrics, ShardMetrics, METHODS, STATUSES};
use crate::base::histogram::Histogram;
use crate::http::parse::Method;
use crate::http::reject::Reject;
use crate::http::response::Status;
use crate::log::LogMetrics;
use crate::route::TABLE;

/// The exposition of every shard's metrics (in shard order) and the process's.
pub fn render(shards: &[ShardMetrics]) -> String {
    let mut out = String::with_capacity(64 << 10);
    let mut total = HttpMetrics::default();
    for s in shards {
        total.merge(&s.http);
    }
    requests(&mut out, shards);
    durations(&mut out, &total);
    refusals(&mut out, shards);
    gauge_per_shard(
        &mut out,
        "epro_connections",
        "Open client connections.",
        shards,
        |s| s.http.connections,
    );
    gauge_per_shard(
        &mut out,
        "epro_ready",
        "1 while the shard can take writes.",
        shards,
        |s| u64::from(s.ready),
    );
    log_metrics(&mut out, shards);
    process(&mut out);
    out
}

/// The refusals' counters: by framing, limits or timeouts; by rate limit; shed; and
/// the access lines folded.
fn refusals(out: &mut String, shards: &[ShardMetrics]) {
    header(
        out,
        "epro_rejections_total",
        "counter",
        "Requests refused by framing, limits or timeouts, which close the connection.",
    );
    for s in shards {
        let counted = Reject::ALL.iter().zip(&s.http.rejections);
        for (reject, n) in counted.filter(|(r, _)| **r != Reject::Shed) {
            let _ = writeln!(
                out,
                "epro_rejections_total{{shard=\"{}\",reason=\"{}\"}} {n}",
                s.shard,
                reject.name()
            );
        }
    }
    header(
        out,
        "epro_ratelimited_total",
        "counter",
        "Requests refused with 429: their principal was over its rate limit.",
    );
    for s in shards {
        let _ = writeln!(
            out,
            "epro_ratelimited_total{{shard=\"{}\"}} {}",
            s.shard, s.http.ratelimited
        );
    }
    header(
        out,
        "epro_access_lines_folded_total",
        "counter",
        "Refusals past a second's access lines for their status, folded into one line a second.",
    );
    for s in shards {
        for (status, n) in Status::ALL.iter().zip(&s.http.folded) {
            if *n > 0 {
                let _ = writeln!(
                    out,
                    "epro_access_lines_folded_total{{shard=\"{}\",code=\"{}\"}} {n}",
                    s.shard,
                    status.code()
                );
            }
        }
    }
    header(
        out,
        "epro_shed_total",
        "counter",
        "Writes refused with 503 before their body was read: too much waited for the disk.",
    );
    for s in shards {
        let shed = s.http.rejections[Reject::Shed as usize];
        let _ = writeln!(out, "epro_shed_total{{shard=\"{}\"}} {shed}", s.shard);
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn route_label(r: usize) -> &'static str {
    TABLE.get(r).map_or("unmatched", |(_, path, _)| path)
}

fn method_label(m: usize) -> &'static str {
    Method::ALL.get(m).map_or("OTHER", |method| method.as_str())
}

fn requests(out: &mut String, shards: &[ShardMetrics]) {
    header(
        out,
        "epro_http_requests_total",
        "counter",
        "Requests answered, by route template, method and status code.",
    );
    for s in shards {
        for (i, &n) in s.http.requests.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let (r, m, st) = (
                i / (METHODS * STATUSES),
                i / STATUSES % METHODS,
                i % STATUSES,
            );
            let _ = writeln!(
                out,
                "epro_http_requests_total{{shard=\"{}\",route=\"{}\",method=\"{}\",code=\"{}\"}} {n}",
                s.shard,
                route_label(r),
                method_label(m),
                Status::ALL[st].code()
            );
        }
    }
}

fn durations(out: &mut String, total: &HttpMetrics) {
    header(
        out,
        "epro_http_request_duration_seconds",
        "histogram",
        "From a request's parsed head to its response queued, by route (all shards).",
    );
    for (r, h) in total.durations.iter().enumerate() {
        histogram(
            out,
            "epro_http_request_duration_seconds",
            &format!("route=\"{}\"", route_label(r)),
            h,
            1e6,
        );
    }
}

fn log_metrics(out: &mut String, shards: &[ShardMetrics]) {
    let logs: Vec<(usize, &LogMetrics)> = shards
        .iter()
        .filter_map(|s| s.log.as_ref().map(|log| (s.shard, log)))
        .collect();
    header(
        out,
        "epro_log_records_total",
        "counter",
        "Records written and synced, by kind.",
    );
    for (shard, log) in &logs {
        for (kind, n) in &log.records {
            let _ = writeln!(
                out,
                "epro_log_records_total{{shard=\"{shard}\",kind=\"{kind}\"}} {n}"
            );
        }
    }
    header(
        out,
        "epro_log_bytes_total",
        "counter",
        "Bytes of records written and synced.",
    );
    for (shard, log) in &logs {
        let _ = writeln!(
            out,
            "epro_log_bytes_total{{shard=\"{shard}\"}} {}",
            log.bytes
        );
    }
    let sync = ("epro_log_sync_duration_seconds", 1e6);
    let help = "Write plus fdatasync of one write group.";
    histogram_per_log(out, sync, help, &logs, |log| &log.sync);
    let group = ("epro_log_group_records", 1.0);
    let help = "Records per write group (one fdatasync each).";
    histogram_per_log(out, group, help, &logs, |log| &log.group_records);
    gauge_per_shard(
        out,
        "epro_log_pending_bytes",
        "Bytes of records waiting for the disk.",
        shards,
        |s| s.pending_bytes,
    );
    gauge_per_shard(
        out,
        "epro_log_writes_stopped",
        "1 once the live segment was deleted, replaced or made read-only: writes stopped.",
        shards,
        |s| u64::from(s.log.as_ref().is_some_and(|log| log.writes_stopped)),
    );
    gauge_per_shard(
        out,
        "epro_log_no_space",
        "1 while the disk has no room for a new segment or for more ids: writes refused.",
        shards,
        |s| u64::from(s.log.as_ref().is_some_and(|log| log.no_space)),
    );
}

/// One histogram `name` per shard's log; its values are divided by `per`.
fn histogram_per_log(
    out: &mut String,
    (name, per): (&str, f64),
    help: &str,
    logs: &[(usize, &LogMetrics)],
    pick: impl Fn(&LogMetrics) -> &Histogram,
) {
    header(out, name, "histogram", help);
    for (shard, log) in logs {
        histogram(out, name, &format!("shard=\"{shard}\""), pick(log), per);
    }
}

fn gauge_per_shard(
    out: &mut String,
    name: &str,
    help: &str,
    shards: &[ShardMetrics],
    value: impl Fn(&ShardMetrics) -> u64,
) {
    header(out, name, "gauge", help);
    for s in shards {
        let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, value(s));
    }
}

/// A histogram's cumulative buckets, sum and count; its values are divided by `per`
/// (1e6: microseconds into seconds).
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram, per: f64) {
    let mut cumulative = 0;
    for (i, bound) in h.bounds.iter().enumerate() {
        cumulative += h.buckets[i];
        let le = *bound as f64 / per;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum as f64 / per);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

/// The standard `process_*` metrics, from `/proc/self` (omitted where it cannot be read).
fn process(out: &mut String) {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    // Fields after the command name, which may hold spaces: utime is field 14.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(Vec::new(), |(_, rest)| rest.split(' ').collect());
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    if let (Some(user), Some(system)) = (field(14), field(15)) {
        let help = "Total user and system CPU time spent in seconds.";
        let seconds = (user + system) as f64 / ticks;
        one(out, ("process_cpu_seconds_total", "counter"), help, seconds);
    }
    if let Some(rss) = field(24) {
        let help = "Resident memory size in bytes.";
        one(
            out,
            ("process_resident_memory_bytes", "gauge"),
            help,
            rss * page,
        );
    }
    if let Some(vsize) = field(23) {
        let help = "Virtual memory size in bytes.";
        one(out, ("process_virtual_memory_bytes", "gauge"), help, vsize);
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines().find_map(|l| {
            l.strip_prefix("btime ")
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
    });
    if let (Some(boot), Some(start)) = (boot, field(22)) {
        let help = "Start time of the process since unix epoch in seconds.";
        let at = boot as f64 + start as f64 / ticks;
        one(out, ("process_start_time_seconds", "gauge"), help, at);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let help = "Number of open file descriptors.";
        one(out, ("process_open_fds", "gauge"), help, fds.count());
    }
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE);
    if let Ok((soft, _)) = nofile {
        let help = "Maximum number of open file descriptors.";
        one(out, ("process_max_fds", "gauge"), help, soft);
    }
}

/// A metric of one value, without labels: its header and its line.
fn one(out: &mut String, (name, kind): (&str, &str), help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Route;
    use std::time::Duration;

    #[test]
    fn histograms_count_each_value_in_the_first_bucket_that_holds_it() {
        let mut h = Histogram::new(&[1, 10, 100]);
        for v in [0, 1, 2, 10, 11, 100, 1000] {
            h.observe(v);
        }
        assert_eq!(&h.buckets[..4], &[2, 2, 2, 1]);
        assert_eq!((h.count, h.sum), (7, 1124));
        let mut out = String::new();
        histogram(&mut out, "x", "a=\"b\"", &h, 1.0);
        assert!(out.contains("x_bucket{a=\"b\",le=\"10\"} 4\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 7\n"), "{out}");
    }

    #[test]
    fn requests_are_counted_by_route_method_and_status() {
        let mut m = HttpMetrics::default();
        let took = Duration::from_micros(300);
        m.request(Some(Route::Submit), Method::Post, Status::Ok, took);
        m.request(Some(Route::Submit), Method::Post, Status::Ok, took);
        m.request(None, Method::Other, Status::NotFound, took);
        let shards = [ShardMetrics {
            shard: 3,
            http: m,
            log: None,
            pending_bytes: 0,
            ready: true,
        }];
        let out = render(&shards);
        assert!(out.contains(
            "epro_http_requests_total{shard=\"3\",route=\"/epro/submit\",method=\"POST\",code=\"200\"} 2\n"
        ));
        assert!(out.contains(
            "epro_http_requests_total{shard=\"3\",route=\"unmatched\",method=\"OTHER\",code=\"404\"} 1\n"
        ));
        assert!(out.contains(
            "epro_http_request_duration_seconds_bucket{route=\"/epro/submit\",le=\"0.0005\"} 2\n"
        ));
    }
}
