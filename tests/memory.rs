//! Memory on the request path stays bounded whatever clients do: bodies held open by
//! many connections cost at most the shard's memory budget (the rest get 503 before
//! they send their body), a client that pipelines without reading holds one batch of
//! responses, and buffers that grew for an oversized request shrink back. Measured as
//! the server process's resident memory (VmRSS), the figure an OOM killer looks at.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{read_response, wait_until, Server};

const MIB: usize = 1 << 20;
const BUDGET: usize = 8 * MIB;
const PRINCIPAL: &str =
    "[[principals]]\nid = \"d\"\ntoken = \"device-token-0123456789\"\nrole = \"device\"\n";

/// The server's resident memory in bytes.
fn rss(server: &Server) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn budget_server() -> Server {
    let config = format!("[limits]\nmemory_budget_bytes = {BUDGET}\n\n{PRINCIPAL}");
    Server::start(&config, &["--shards", "1"])
}

/// Whether a response (or the close after one) is waiting on `stream` now.
fn answered(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    let ready =
        !matches!(stream.peek(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    ready
}

#[test]
fn bodies_held_open_by_many_connections_cost_at_most_the_memory_budget() {
    const CONNECTIONS: usize = 200;
    const BODY: usize = MIB;
    let server = budget_server();
    let before = rss(&server);
    // Each announces a 1 MiB body; the server pays for it before reading it, or says no.
    let mut streams: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut stream = server.connect();
            let head = format!(
                "POST /epro/submit HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \
                 device-token-0123456789\r\nContent-Type: application/json\r\n\
                 Content-Length: {BODY}\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (mut refused, mut held) = (Vec::new(), Vec::new());
    for stream in streams.drain(..) {
        let mut stream = stream;
        if answered(&mut stream) {
            refused.push(stream);
        } else {
            held.push(stream);
        }
    }
    assert!(
        refused.len() >= CONNECTIONS - BUDGET / BODY,
        "only {} of {CONNECTIONS} connections were refused with an {} MiB budget",
        refused.len(),
        BUDGET / MIB
    );
    for stream in &mut refused {
        let r = read_response(stream).expect("a response");
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.error().contains("memory budget"), "{}", r.error());
    }
    // The held ones send all but the last byte of their body, and wait.
    let almost = vec![b' '; BODY - 1];
    for stream in &mut held {
        stream.write_all(&almost).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let grown = rss(&server).saturating_sub(before);
    eprintln!(
        "{} bodies held, {} refused: resident memory grew by {} KiB",
        held.len(),
        refused.len(),
        grown / 1024
    );
    // The documented base: a connection's two 16 KiB buffers, and allocator slack.
    let base = CONNECTIONS * 32 * 1024 + 8 * MIB;
    assert!(
        grown <= BUDGET + base,
        "resident memory grew by {} MiB holding bodies, over the {} MiB budget plus {} MiB",
        grown / MIB,
        BUDGET / MIB,
        base / MIB
    );
    // The budget is not a leak: the held bodies complete, and once they are done and
    // gone, a new body is taken again.
    for stream in &mut held {
        stream.write_all(b"}").unwrap();
        let r = read_response(stream).expect("a response to a held body");
        assert_eq!(r.status, 400, "{}", r.text());
    }
    drop(held);
    drop(refused);
    let mut stream = server.connect();
    assert!(wait_until(Duration::from_secs(5), || {
        let body = format!(
            "{{\"patientId\":\"p\",\"reportData\":\"{}\"}}",
            "x".repeat(BODY / 2)
        );
        common::post(
            &mut stream,
            "/epro/submit",
            "device-token-0123456789",
            &body,
        )
        .status
            == 200
    }));
}

#[test]
fn a_client_that_pipelines_without_reading_holds_one_batch_of_responses() {
    const CONNECTIONS: usize = 4;
    // A fixed request id keeps every response the same length.
    const GET: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Request-Id: r\r\n\r\n";
    const GETS: usize = MIB / GET.len();
    let server = budget_server();
    let mut streams: Vec<TcpStream> = (0..CONNECTIONS).map(|_| server.connect()).collect();
    // Warm up each connection's buffers, and learn the length of one response.
    let mut ok_len = 0;
    for stream in &mut streams {
        stream.write_all(GET).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut raw = [0u8; 512];
        ok_len = stream.read(&mut raw).unwrap();
        assert!(raw[..ok_len].ends_with(b"\r\n\r\nok"));
    }
    let before = rss(&server);
    // A large request grows the read buffer; behind it, 1 MiB of tiny GETs in one go
    // (about 6 MiB of responses), none of which the client reads.
    let big = format!(
        "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{}",
        MIB,
        " ".repeat(MIB)
    );
    let gets = GET.repeat(GETS);
    for stream in &mut streams {
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut burst = big.clone().into_bytes();
        burst.extend_from_slice(&gets);
        // The server stops reading once the kernel's buffers fill: send what it takes.
        let sender = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut sender = sender;
            let _ = sender.write_all(&burst);
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    let grown = rss(&server).saturating_sub(before);
    eprintln!(
        "{CONNECTIONS} clients not reading: resident memory grew by {} KiB",
        grown / 1024
    );
    assert!(
        grown <= 3 * MIB * CONNECTIONS / 2,
        "resident memory grew by {} KiB for {CONNECTIONS} clients that do not read",
        grown / 1024
    );
    // Everything is still answered, in order, once the clients read. Every response
    // to the GET has the same length (the Date header is fixed-width).
    for stream in &mut streams {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let first = read_response(stream).unwrap();
        assert_eq!(first.status, 405, "{}", first.text());
        let mut rest = vec![0u8; GETS * ok_len];
        stream.read_exact(&mut rest).unwrap();
        for response in rest.chunks(ok_len) {
            assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
            assert!(response.ends_with(b"\r\n\r\nok"));
        }
    }
    let mut probe = [0u8; 1];
    streams[0].set_nonblocking(true).unwrap();
    assert!(
        streams[0].read(&mut probe).is_err(),
        "more responses than requests"
    );
}
