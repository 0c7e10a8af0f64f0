//! Connection behaviour over real sockets: keep-alive, pipelining, split reads,
//! `Expect: 100-continue`, both timeouts and the per-shard connection limit.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{exchange, read_response, Server};

const GET: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = Server::start("", &[]);
    let mut stream = server.connect();
    for _ in 0..100 {
        stream.write_all(GET).unwrap();
        let r = read_response(&mut stream).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "ok");
        assert!(r
            .header("date")
            .is_some_and(|d| d.ends_with(" GMT") && d.len() == 29));
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start("", &[]);
    let mut batch = Vec::new();
    let paths = ["/healthz", "/nope", "/livez", "/readyz", "/epro/submit"];
    for path in paths {
        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    }
    let mut stream = server.connect();
    stream.write_all(&batch).unwrap();
    let statuses: Vec<u16> = (0..paths.len())
        .map(|_| read_response(&mut stream).unwrap().status)
        .collect();
    assert_eq!(statuses, [200, 404, 200, 200, 405]);
}

#[test]
fn requests_split_at_every_byte_boundary() {
    let server = Server::start("", &[]);
    let request = b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\nGET /livez HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut stream = server.connect();
    for split in 1..request.len() {
        stream.write_all(&request[..split]).unwrap();
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_micros(300));
        stream.write_all(&request[split..]).unwrap();
        assert_eq!(
            read_response(&mut stream).unwrap().status,
            405,
            "split at {split}"
        );
        assert_eq!(
            read_response(&mut stream).unwrap().status,
            200,
            "split at {split}"
        );
    }
}

#[test]
fn byte_by_byte_body_is_framed() {
    let server = Server::start("", &[]);
    let body = "x".repeat(3000);
    let request = format!(
        "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = server.connect();
    for chunk in request.as_bytes().chunks(7) {
        stream.write_all(chunk).unwrap();
    }
    stream.write_all(GET).unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 405);
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
}

#[test]
fn http10_and_connection_close_are_honoured() {
    let server = Server::start("", &[]);
    let (responses, closed) = exchange(
        server.addr,
        b"GET /healthz HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].header("connection"), Some("close"));
    assert!(closed);

    let (responses, closed) = exchange(
        server.addr,
        b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        Duration::from_millis(300),
    );
    assert_eq!(responses[0].header("connection"), Some("keep-alive"));
    assert!(!closed, "HTTP/1.0 keep-alive must keep the connection");

    let (responses, closed) = exchange(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(responses[0].header("connection"), Some("close"));
    assert!(closed);
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = Server::start("", &[]);
    let mut stream = server.connect();
    stream
        .write_all(b"POST /healthz HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    let interim = read_response(&mut stream).unwrap();
    assert_eq!(interim.status, 100);
    stream.write_all(b"hello").unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 405);

    // A body over the limit is refused at once, without 100 Continue.
    let mut stream = server.connect();
    stream
        .write_all(b"POST /healthz HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 413);
}

const PRINCIPAL: &str =
    "[[principals]]\nid = \"d\"\ntoken = \"device-token-0123456789\"\nrole = \"device\"\n";
const SHORT_TIMEOUTS: &str = "[limits]\nheader_timeout_ms = 400\nidle_timeout_ms = 600\n\n[[principals]]\nid = \"d\"\ntoken = \"device-token-0123456789\"\nrole = \"device\"\n";

#[test]
fn slow_header_gets_408_and_close() {
    let server = Server::start(SHORT_TIMEOUTS, &[]);
    let mut stream = server.connect();
    let began = Instant::now();
    // A slowloris: a byte every 100 ms never completes the head in time.
    let mut response = None;
    for &b in b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: 1234567890\r\n".iter() {
        if stream.write_all(&[b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        stream.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 1];
        let ready = matches!(stream.peek(&mut probe), Ok(n) if n > 0);
        stream.set_nonblocking(false).unwrap();
        if ready {
            response = read_response(&mut stream);
            break;
        }
    }
    let response = response.expect("a 408 before the head completed");
    assert_eq!(response.status, 408);
    assert!(began.elapsed() < Duration::from_secs(3));
    assert!(common::is_closed(&mut stream));
}

#[test]
fn after_a_408_the_connection_lingers_for_a_client_still_sending() {
    let server = Server::start(SHORT_TIMEOUTS, &[]);
    let mut stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // A head that does not complete in time: the sweeper ends the wait, 408.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    let r = read_response(&mut stream).expect("a 408");
    assert_eq!(r.status, 408);
    // The client is still sending. A closed socket would answer with a reset (which
    // can destroy the 408 before a client reads it, and fails the client's next
    // write); the server drains for a while instead.
    stream.write_all(b"X-Late: 1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stream
        .write_all(b"X-Later: 2\r\n")
        .expect("the server reset the connection right after its 408");
    std::thread::sleep(Duration::from_millis(50));
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        other => panic!("expected an orderly close after the 408, got {other:?}"),
    }
}

#[test]
fn a_pipelining_client_that_pauses_before_reading_gets_every_response() {
    let config = "[limits]\nheader_timeout_ms = 300\nidle_timeout_ms = 1500\n\n[[principals]]\n\
                  id = \"d\"\ntoken = \"device-token-0123456789\"\nrole = \"device\"\n";
    let server = Server::start(config, &[]);
    const REQUESTS: usize = 50_000;
    let mut stream = server.connect();
    // A small receive buffer, so that the server's writes block while nobody reads.
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::RcvBuf, &65536).unwrap();
    let mut sender = stream.try_clone().unwrap();
    let burst = GET.repeat(REQUESTS);
    let writer = std::thread::spawn(move || sender.write_all(&burst).is_ok());
    // Longer than the header timeout: the server, blocked writing responses nobody
    // reads yet, is not the client being late.
    std::thread::sleep(Duration::from_millis(800));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = std::io::BufReader::new(&mut stream);
    for i in 0..REQUESTS {
        let r = read_response(&mut reader).unwrap_or_else(|| panic!("response {i} missing"));
        assert_eq!(r.status, 200, "response {i}: {}", r.text());
    }
    assert!(writer.join().unwrap());
}

#[test]
fn silent_connection_is_closed_after_header_timeout() {
    let server = Server::start(SHORT_TIMEOUTS, &[]);
    let mut stream = server.connect();
    let began = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(
        stream.read(&mut buf).unwrap(),
        0,
        "closed without a response"
    );
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let server = Server::start(SHORT_TIMEOUTS, &[]);
    let mut stream = server.connect();
    stream.write_all(GET).unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    let began = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(stream.read(&mut buf).unwrap(), 0);
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_millis(550) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn connection_limit_answers_503_and_frees_slots() {
    // One connection per shard; the two shards each take one.
    let server = Server::start(
        &format!("[limits]\nmax_connections = 1\n\n{PRINCIPAL}"),
        &[],
    );
    let mut held: Vec<TcpStream> = Vec::new();
    let mut refused = 0;
    // Open connections until the limit shows; with 2 shards at most 2 are accepted.
    for _ in 0..16 {
        let mut stream = server.connect();
        stream.write_all(GET).unwrap();
        let r = read_response(&mut stream).unwrap();
        match r.status {
            200 => held.push(stream),
            503 => {
                assert_eq!(r.header("connection"), Some("close"));
                assert!(r.error().contains("connection limit"));
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        held.len() <= 2,
        "{} connections accepted past a limit of 1 per shard",
        held.len()
    );
    assert!(refused >= 14);
    // Closing them frees the slots.
    held.clear();
    let ok = common::wait_until(Duration::from_secs(5), || {
        let mut stream = server.connect();
        stream.write_all(GET).unwrap();
        read_response(&mut stream).is_some_and(|r| r.status == 200)
    });
    assert!(ok, "slots were not freed");
}

#[test]
fn method_not_allowed_lists_allowed_methods() {
    let server = Server::start("", &[]);
    let mut stream = server.connect();
    stream
        .write_all(b"DELETE /epro/submit HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let r = read_response(&mut stream).unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
}

/// Garbage from many peers (random bytes, and mutations of valid requests) never
/// takes the server down or stops it serving others.
#[test]
fn garbage_from_peers_never_stops_the_server() {
    let server = Server::start(SHORT_TIMEOUTS, &[]);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid = b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    for i in 0..300 {
        let mut bytes: Vec<u8> = if i % 2 == 0 {
            (0..(next() % 2000) as usize)
                .map(|_| next() as u8)
                .collect()
        } else {
            valid.to_vec()
        };
        for _ in 0..(next() % 6) {
            if !bytes.is_empty() {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
        }
        let Ok(mut stream) = TcpStream::connect(server.addr) else {
            panic!("connect failed after {i} garbage connections");
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = stream.write_all(&bytes);
        let mut sink = [0u8; 4096];
        let _ = stream.read(&mut sink);
    }
    for _ in 0..8 {
        let mut stream = server.connect();
        stream.write_all(GET).unwrap();
        assert_eq!(read_response(&mut stream).unwrap().status, 200);
    }
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// A response to HEAD has no body, whatever its status: a keep-alive client reads the
/// next response right after its head, so a body would desync the connection.
#[test]
fn responses_to_head_carry_no_body_and_the_connection_stays_in_step() {
    let server = Server::start("", &[]);
    for (target, status) in [("/healthz", 200), ("/nope", 404), ("/epro/submit", 405)] {
        let mut stream = server.connect();
        let raw = format!(
            "HEAD {target} HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(raw.as_bytes()).unwrap();
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        let (head, rest) = text.split_once("\r\n\r\n").expect("a response head");
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "HEAD {target}: {head}"
        );
        assert!(head.contains("Content-Length: "), "HEAD {target}: {head}");
        assert!(
            rest.starts_with("HTTP/1.1 200 OK") && rest.ends_with("\r\n\r\nok"),
            "HEAD {target} left a body before the next response: {rest:?}"
        );
    }
}

/// A body trickling in (a byte every 100 ms, each in time for idle_timeout_ms) must
/// still be whole within body_timeout_ms: else 408 and close, so slow bodies cannot
/// hold connection slots forever.
#[test]
fn a_body_that_trickles_past_body_timeout_gets_408() {
    let config = format!("[limits]\nbody_timeout_ms = 500\nidle_timeout_ms = 2000\n\n{PRINCIPAL}");
    let server = Server::start(&config, &[]);
    let mut stream = server.connect();
    stream
        .write_all(b"POST /epro/submit HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(3) {
        if stream.write_all(b" ").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = read_response(&mut stream).expect("a 408 before the connection closed");
    assert_eq!(r.status, 408);
    assert!(r.error().contains("body_timeout_ms"), "{}", r.error());
}

#[test]
fn a_request_still_arriving_at_request_timeout_gets_408() {
    let config = format!(
        "{}\n[limits]\nrequest_timeout_ms = 400\n",
        common::DEVICE_ADMIN_CONFIG
    );
    let server = Server::start(&config, &[]);
    let mut stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The head, then a body a byte at a time: each byte within every other timeout.
    stream
        .write_all(b"POST /epro/submit HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    let began = Instant::now();
    let mut sent = 0;
    while sent < 20 && began.elapsed() < Duration::from_secs(3) {
        if stream.write_all(b" ").is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = read_response(&mut stream).expect("a 408");
    assert_eq!(r.status, 408);
    assert_eq!(r.error(), "request not received within request_timeout_ms");
    assert!(began.elapsed() < Duration::from_secs(3));
}

/// Reads one response to a HEAD request: its status line and headers, no body.
fn read_head_response(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// The header lines of a response head, without `Date` and `X-Request-Id` (which
/// differ between two responses).
fn stable_headers(head: &str) -> Vec<String> {
    head.lines()
        .filter(|l| !l.starts_with("Date:") && !l.starts_with("X-Request-Id:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn head_answers_wherever_get_does_with_the_same_headers_and_no_body() {
    let server = Server::start(common::DEVICE_ADMIN_CONFIG, &[]);
    let admin = common::ADMIN_TOKEN;
    for path in [
        "/healthz",
        "/api/v1/projects/P001/reports/summary",
        "/metrics",
    ] {
        let mut stream = server.connect();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let get = common::get(&mut stream, path, admin);
        assert_eq!(get.status, 200, "{path}");
        // HEAD, then GET on the same connection: nothing of a body may sit between.
        let both = format!(
            "HEAD {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {admin}\r\n\r\n\
             GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        stream.write_all(both.as_bytes()).unwrap();
        let head = read_head_response(&mut stream);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {head}");
        let get_head = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n\r\n",
            get.headers
                .iter()
                .map(|(n, v)| format!("{n}: {v}"))
                .collect::<Vec<_>>()
                .join("\r\n")
        );
        if path != "/metrics" {
            // Same headers as GET (Content-Length included); /metrics grows between.
            assert_eq!(stable_headers(&head), stable_headers(&get_head), "{path}");
        }
        let next = read_response(&mut stream).expect("the GET behind the HEAD");
        assert_eq!((next.status, next.text().as_str()), (200, "ok"), "{path}");
    }
}

/// A refusal of a request whose head came in whole names that request: the caller's
/// `X-Request-Id` echoed, or one made up, whether the framing rules, the body or a
/// timeout refused it. Bytes that never made a head get none: no request to name.
#[test]
fn refusals_after_a_whole_head_carry_its_request_id() {
    let config = "[limits]\nheader_timeout_ms = 400\nbody_timeout_ms = 400\nmax_body_bytes = 4096\n\n\
                  [[principals]]\nid = \"d\"\ntoken = \"device-token-0123456789\"\nrole = \"device\"\n";
    let server = Server::start(config, &[]);
    let head = |id: &str, rest: &str| {
        format!("POST /epro/submit HTTP/1.1\r\nHost: a\r\nX-Request-Id: {id}\r\n{rest}")
    };
    let cases = [
        ("r-chunk", "Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (
            "r-clte",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        ("r-big", "Content-Length: 99999\r\n\r\n", 413),
        (
            "r-expect",
            "Expect: later\r\nContent-Length: 1\r\n\r\nx",
            417,
        ),
        ("r-gzip", "Transfer-Encoding: gzip\r\n\r\n", 501),
        // The body stops coming: 408 after body_timeout_ms.
        ("r-slow-body", "Content-Length: 10\r\n\r\nabc", 408),
    ];
    for (id, rest, status) in cases {
        let mut stream = server.connect();
        stream.write_all(head(id, rest).as_bytes()).unwrap();
        let r = read_response(&mut stream).expect("a response");
        assert_eq!(r.status, status, "{id}: {}", r.text());
        assert_eq!(r.header("x-request-id"), Some(id), "{id}");
    }
    // Without the caller's id, one made up.
    let mut stream = server.connect();
    let no_id = "POST /epro/submit HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n";
    stream.write_all(no_id.as_bytes()).unwrap();
    let r = read_response(&mut stream).expect("a response");
    assert_eq!(r.status, 501);
    assert!(r.header("x-request-id").is_some_and(|id| id.contains('-')));
    // A head that never completes: 408, no id.
    let mut stream = server.connect();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Request-Id: r-never\r\n")
        .unwrap();
    let r = read_response(&mut stream).expect("a response");
    assert_eq!(r.status, 408);
    assert_eq!(r.header("x-request-id"), None);
}
