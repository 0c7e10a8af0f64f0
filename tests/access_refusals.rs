//! Refusals in the access log and the metrics: a request refused below the routes
//! (framing, limits, timeouts, shutdown) gets its access line, under the
//! `X-Request-Id` its response carries, and its count in `epro_http_requests_total`,
//! like any answered request; and a flood of refusals is bounded in the log: per
//! shard, status and second, the first lines are written and the rest folded into one
//! line that says how many, counted in `epro_access_lines_folded_total`.

mod common;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::time::Duration;

use common::{read_response, wait_until, Response, Server, DEVICE_TOKEN};

const ADMIN: &str = "admin-token-0123456789";
/// The logger's `LINES_PER_SECOND`.
const LINES_PER_SECOND: usize = 100;

fn config() -> String {
    format!(
        "{}\n[limits]\nmax_body_bytes = 1024\nbody_timeout_ms = 300\n",
        common::DEVICE_ADMIN_CONFIG
    )
}

fn send(server: &Server, bytes: &[u8]) -> Response {
    let mut stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    read_response(&mut stream).expect("a response")
}

fn submit_head(id: &str, extra: &str) -> String {
    format!(
        "POST /epro/submit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {DEVICE_TOKEN}\r\n\
         Content-Type: application/json\r\nX-Request-Id: {id}\r\n{extra}\r\n"
    )
}

/// `epro_http_requests_total` of shard 0 for a route and code.
fn requests_total(server: &Server, route: &str, code: u16) -> u64 {
    metric(
        server,
        &format!("epro_http_requests_total{{shard=\"0\",route=\"{route}\",method=\"POST\",code=\"{code}\"}}"),
    )
}

fn metric(server: &Server, series: &str) -> u64 {
    let mut stream = server.connect();
    let r = common::get(&mut stream, "/metrics", ADMIN);
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The access line of the request with this id, once the shard has flushed it.
fn access_line(log: &dyn Fn() -> String, id: &str) -> String {
    let needle = format!(" id={id}\n");
    let found = wait_until(Duration::from_secs(5), || log().contains(&needle));
    let log = log();
    assert!(found, "no access line for {id}:\n{log}");
    let line = log
        .lines()
        .find(|l| l.ends_with(&needle[..needle.len() - 1]));
    line.unwrap().to_string()
}

#[test]
fn connection_level_refusals_are_logged_under_their_id_and_counted() {
    let server = Server::start(&config(), &["--shards", "1"]);
    // 413: the announced body is over max_body_bytes.
    let r = send(
        &server,
        submit_head("refused-413", "Content-Length: 5000\r\n").as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("refused-413"));
    // 400: ambiguous framing.
    let both = "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n";
    let r = send(&server, submit_head("refused-400", both).as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("refused-400"));
    // 408: the body stalls past body_timeout_ms.
    let mut slow = submit_head("refused-408", "Content-Length: 100\r\n").into_bytes();
    slow.extend_from_slice(b"{\"patientId\"");
    let r = send(&server, &slow);
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("refused-408"));

    let log = || server.log();
    for (id, status) in [
        ("refused-413", 413),
        ("refused-400", 400),
        ("refused-408", 408),
    ] {
        let line = access_line(&log, id);
        assert!(
            line.contains(&format!(" POST /epro/submit {status} ")),
            "{line}"
        );
        assert_eq!(requests_total(&server, "/epro/submit", status), 1, "{id}");
    }
    // Each is logged once, not also by the connection.
    assert_eq!(server.log().matches(" id=refused-4").count(), 3);
}

#[test]
fn a_request_half_in_at_shutdown_is_logged_with_its_503() {
    let server = Server::start(&config(), &["--shards", "1"]);
    let mut stream = server.connect();
    let mut half = submit_head("refused-503", "Content-Length: 100\r\n").into_bytes();
    half.extend_from_slice(b"{\"patientId\"");
    stream.write_all(&half).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let log = server.log_handle();
    let (status, _dir) = server.terminate();
    assert!(status.success(), "{status:?}");
    let r = read_response(&mut stream).expect("a 503");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("refused-503"));
    let line = access_line(&|| log.lock().unwrap().clone(), "refused-503");
    assert!(line.contains(" POST /epro/submit 503 "), "{line}");
}

/// Sends `n` requests with an unknown token on one connection, pipelined from a
/// thread of their own, and reads their `n` answers.
fn flood_of_401(server: &Server, n: usize) {
    let stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut all = Vec::new();
        for i in 0..n {
            all.extend_from_slice(
                format!(
                    "GET /api/v1/users/u/permissions HTTP/1.1\r\nHost: t\r\n\
                     Authorization: Bearer wrong\r\nX-Request-Id: flood-{i}\r\n\r\n"
                )
                .as_bytes(),
            );
        }
        writer.write_all(&all).unwrap();
    });
    let mut reader = BufReader::new(stream);
    for _ in 0..n {
        let r = read_response(&mut reader).expect("an answer");
        assert_eq!(r.status, 401);
    }
    sender.join().unwrap();
}

/// The flood's 401 lines per second of their stamp, and the counts of the folded lines.
fn tally(log: &str) -> (HashMap<String, usize>, u64) {
    let mut lines = HashMap::new();
    let mut folded = 0;
    for line in log.lines().filter(|l| l.contains(" access] ")) {
        if line.contains(" GET /api/v1/users/u/permissions 401 ") && line.contains(" id=flood-") {
            *lines.entry(line[1..20].to_string()).or_default() += 1;
        } else if let Some(rest) = line.split_once("... and ").map(|(_, rest)| rest) {
            let (count, what) = rest.split_once(' ').unwrap();
            if what.starts_with("more 401 in ") {
                folded += count.parse::<u64>().unwrap();
            }
        }
    }
    (lines, folded)
}

#[test]
fn a_flood_of_refusals_writes_a_bounded_number_of_lines_and_folds_the_rest() {
    let server = Server::start(&config(), &["--shards", "1"]);
    let n = 3000;
    flood_of_401(&server, n);
    // Every refusal is a line or part of a folded line, once its second is over.
    let accounted = wait_until(Duration::from_secs(5), || {
        let (lines, folded) = tally(&server.log());
        lines.values().sum::<usize>() as u64 + folded == n as u64
    });
    let log = server.log();
    let (lines, folded) = tally(&log);
    assert!(accounted, "{lines:?} + {folded} folded != {n}");
    for (second, count) in &lines {
        assert!(*count <= LINES_PER_SECOND, "{count} lines in {second}");
    }
    assert!(
        folded >= (n - LINES_PER_SECOND * lines.len()) as u64,
        "{folded}"
    );
    let series = "epro_access_lines_folded_total{shard=\"0\",code=\"401\"}";
    assert_eq!(metric(&server, series), folded);
    let get_401 = "epro_http_requests_total{shard=\"0\",route=\"/api/v1/users/{userId}/permissions\",method=\"GET\",code=\"401\"}";
    assert_eq!(metric(&server, get_401), n as u64);
}
