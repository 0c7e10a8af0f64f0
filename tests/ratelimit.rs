//! Per-principal rate limits: a principal gets its rate (plus its burst) over a 5 s
//! window within ±20%, whether its requests come over one connection (one shard) or
//! over many spread across every shard; over the limit it gets 429 with
//! `Retry-After`, and other principals are not held back.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{get, read_response, Server, ADMIN_TOKEN as ADMIN};

const LIMITED: &str = "limited-token-0123456789";
const SLOW: &str = "slow-token-0123456789";

/// 40 requests a second plus a burst of 10 for `limited`, one in 10 s for `slow`; the
/// admin is unlimited.
const CONFIG: &str = r#"
[[principals]]
id = "limited"
token = "limited-token-0123456789"
role = "staff"
projects = ["P001"]
rate_per_second = 40
burst = 10

[[principals]]
id = "slow"
token = "slow-token-0123456789"
role = "staff"
projects = ["P001"]
rate_per_second = 0.1
burst = 1

[[principals]]
id = "admin-1"
token = "admin-token-0123456789"
role = "admin"
projects = ["*"]
"#;

const WINDOW: Duration = Duration::from_secs(5);
/// What the limit allows over the window: the rate for 5 s plus the burst.
const ALLOWED: f64 = 40.0 * 5.0 + 10.0;

/// Requests on one connection as fast as answers come, until `until`: (200s, 429s).
fn hammer(addr: SocketAddr, until: Instant) -> (u32, u32) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut ok, mut limited) = (0, 0);
    while Instant::now() < until {
        let r = get(&mut stream, "/api/v1/users/limited/permissions", LIMITED);
        match r.status {
            200 => ok += 1,
            429 => {
                assert_eq!(r.error(), "rate limit exceeded for principal limited");
                assert_eq!(r.header("retry-after"), Some("1"));
                limited += 1;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    (ok, limited)
}

fn assert_within_20_percent(admitted: u32) {
    let ratio = f64::from(admitted) / ALLOWED;
    assert!(
        (0.8..=1.2).contains(&ratio),
        "{admitted} admitted in 5 s, {ratio:.2} of the {ALLOWED} allowed"
    );
}

#[test]
fn one_connection_gets_the_rate_and_no_more() {
    let server = Server::start(CONFIG, &[]);
    let (ok, limited) = hammer(server.addr, Instant::now() + WINDOW);
    assert_within_20_percent(ok);
    assert!(limited > 0);
    // Another principal is not held back meanwhile.
    let mut stream = server.connect();
    for _ in 0..100 {
        assert_eq!(get(&mut stream, "/healthz", "").status, 200);
        let r = get(&mut stream, "/api/v1/users/admin-1/permissions", ADMIN);
        assert_eq!(r.status, 200);
    }
}

#[test]
fn connections_spread_over_every_shard_share_one_limit() {
    let server = Server::start(CONFIG, &[]);
    let until = Instant::now() + WINDOW;
    let addr = server.addr;
    let clients: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || hammer(addr, until)))
        .collect();
    let ok: u32 = clients.into_iter().map(|c| c.join().unwrap().0).sum();
    assert_within_20_percent(ok);
    // Both shards admitted some: the limit was shared, not held by one.
    let mut stream = server.connect();
    let metrics = get(&mut stream, "/metrics", "").text();
    let per_shard: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("epro_http_requests_total{")
                && l.contains("route=\"/api/v1/users/{userId}/permissions\"")
                && l.contains("code=\"200\"")
        })
        .collect();
    assert_eq!(per_shard.len(), 2, "{per_shard:?}");
    assert!(metrics.contains("epro_ratelimited_total{shard=\"0\"}"));
}

#[test]
fn a_limited_write_is_refused_before_its_body_is_read() {
    // One shard: the request that spends the limit and the write meet the same bucket.
    let server = Server::start(CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    let r = get(&mut stream, "/api/v1/users/slow/permissions", SLOW);
    assert_eq!(r.status, 200);
    // A head announcing a body that never comes: answered at once, then closed.
    use std::io::Write;
    let mut writer = server.connect();
    writer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let head = format!(
        "POST /api/v1/tags/add HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {SLOW}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).unwrap();
    let r = read_response(&mut writer).expect("a 429 before the body");
    assert_eq!(r.status, 429);
    assert_eq!(r.error(), "rate limit exceeded for principal slow");
    // One request in 10 s: retry in 10 s.
    assert_eq!(r.header("retry-after"), Some("10"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(common::is_closed(&mut writer));
}
