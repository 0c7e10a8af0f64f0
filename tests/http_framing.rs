//! Framing vectors over a real socket, one line per case: the raw request, the statuses
//! expected in order, and whether the server then closes. Every case is followed by a
//! valid `GET /healthz`: a case that keeps the connection must answer it (proving the
//! body was framed exactly), a case that closes must not (no byte after a framing error
//! is ever parsed as a request).

mod common;

use std::io::{Read, Write};

use common::{read_response, Server};

const TAIL: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";

/// (name, raw request, statuses before the tail's answer, closes)
const CASES: &[(&str, &str, &[u16], bool)] = &[
    // Accepted framing.
    ("plain GET", "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &[200], false),
    ("leading empty line", "\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &[200], false),
    ("Content-Length body", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", &[405], false),
    ("Content-Length zero", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &[405], false),
    ("identical duplicate Content-Length", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", &[405], false),
    ("chunked body", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", &[405], false),
    ("chunked, mixed case coding", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", &[405], false),
    ("chunked, upper-case hex", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", &[405], false),
    ("chunked, extensions", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c\r\nhello\r\n0;last\r\n\r\n", &[405], false),
    ("chunked, quoted extension", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b c\"\r\nhello\r\n0\r\n\r\n", &[405], false),
    ("chunked, trailers", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n", &[405], false),
    ("HTTP/1.0 without Host closes", "GET /healthz HTTP/1.0\r\n\r\n", &[200], true),
    ("HTTP/1.0 keep-alive", "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &[200], false),
    ("Connection: close", "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &[200], true),
    ("unknown route", "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n", &[404], false),
    ("unknown method on known route", "BREW /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &[405], false),
    ("query string ignored by routing", "GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", &[200], false),
    // Request line and head.
    // Absolute-form (RFC 9112 3.2.2): a server must accept it; its path routes.
    ("absolute-form target", "GET http://a/healthz HTTP/1.1\r\nHost: a\r\n\r\n", &[200], false),
    ("absolute-form, https, port, query", "GET HTTPS://a.example:8443/healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", &[200], false),
    ("absolute-form, empty path is /", "GET http://a HTTP/1.1\r\nHost: a\r\n\r\n", &[404], false),
    ("absolute-form still needs Host in HTTP/1.1", "GET http://a/healthz HTTP/1.1\r\n\r\n", &[400], true),
    ("absolute-form, no authority", "GET http:///healthz HTTP/1.1\r\nHost: a\r\n\r\n", &[400], true),
    ("absolute-form, userinfo", "GET http://u@a/healthz HTTP/1.1\r\nHost: a\r\n\r\n", &[400], true),
    ("absolute-form, other scheme", "GET ftp://a/healthz HTTP/1.1\r\nHost: a\r\n\r\n", &[400], true),
    ("authority-form target", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", &[400], true),
    ("relative target", "GET healthz HTTP/1.1\r\nHost: a\r\n\r\n", &[400], true),
    ("fragment in the target", "GET /healthz#top HTTP/1.1\r\nHost: a\r\n\r\n", &[400], true),
    ("fragment after a query", "GET /healthz?x=1#top HTTP/1.1\r\nHost: a\r\n\r\n", &[400], true),
    ("asterisk-form target", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &[400], true),
    ("bad method token", "G(T /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &[400], true),
    ("double space in request line", "GET  /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &[400], true),
    ("HTTP/2.0 version", "GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n", &[505], true),
    ("missing Host", "GET /healthz HTTP/1.1\r\n\r\n", &[400], true),
    ("two Host headers", "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &[400], true),
    ("two Host headers in HTTP/1.0", "GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", &[400], true),
    ("Host with a space", "GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n", &[400], true),
    ("Host with a path", "GET /healthz HTTP/1.1\r\nHost: a/b\r\n\r\n", &[400], true),
    ("Host with userinfo", "GET /healthz HTTP/1.1\r\nHost: u@a\r\n\r\n", &[400], true),
    ("invalid Host in HTTP/1.0", "GET /healthz HTTP/1.0\r\nHost: a b\r\n\r\n", &[400], true),
    ("Host with two colons", "GET /healthz HTTP/1.1\r\nHost: a:b:c\r\n\r\n", &[400], true),
    ("Host with a port that is not a number", "GET /healthz HTTP/1.1\r\nHost: a:abc\r\n\r\n", &[400], true),
    ("Host with a port past 65535", "GET /healthz HTTP/1.1\r\nHost: a:65536\r\n\r\n", &[400], true),
    ("Host that is only a port", "GET /healthz HTTP/1.1\r\nHost: :80\r\n\r\n", &[400], true),
    ("Host with a stray bracket", "GET /healthz HTTP/1.1\r\nHost: a]b\r\n\r\n", &[400], true),
    ("Host with an unclosed IPv6 literal", "GET /healthz HTTP/1.1\r\nHost: [::1\r\n\r\n", &[400], true),
    ("Host with a bracketed non-address", "GET /healthz HTTP/1.1\r\nHost: [a.b]\r\n\r\n", &[400], true),
    ("Host with a bad escape", "GET /healthz HTTP/1.1\r\nHost: %zz\r\n\r\n", &[400], true),
    ("empty Host", "GET /healthz HTTP/1.1\r\nHost: \r\n\r\n", &[200], false),
    ("Host with IPv6 literal and port", "GET /healthz HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", &[200], false),
    ("Host with IPv4 address and port", "GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:65535\r\n\r\n", &[200], false),
    ("Host with an escape and an empty port", "GET /healthz HTTP/1.1\r\nHost: a%2Db.example:\r\n\r\n", &[200], false),
    ("bare LF line endings", "GET /healthz HTTP/1.1\nHost: a\n\n", &[400], true),
    ("bare LF in one header line", "GET /healthz HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", &[400], true),
    ("bare CR in a value", "GET /healthz HTTP/1.1\r\nHost: a\rb\r\n\r\n", &[400], true),
    ("whitespace before colon", "GET /healthz HTTP/1.1\r\nHost : a\r\n\r\n", &[400], true),
    ("obs-fold", "GET /healthz HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", &[400], true),
    ("control character in value", "GET /healthz HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", &[400], true),
    ("NUL in value", "GET /healthz HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", &[400], true),
    ("duplicate Authorization", "GET /healthz HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", &[400], true),
    ("duplicate Expect", "POST /healthz HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx", &[400], true),
    ("unsupported Expect", "POST /healthz HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", &[417], true),
    // Content-Length.
    ("Content-Length with Transfer-Encoding", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", &[400], true),
    ("differing Content-Length", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", &[400], true),
    ("list-valued Content-Length", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", &[400], true),
    ("signed Content-Length", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", &[400], true),
    ("negative Content-Length", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", &[400], true),
    ("hex Content-Length", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", &[400], true),
    ("empty Content-Length", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", &[400], true),
    ("overflowing Content-Length", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", &[400], true),
    ("Content-Length over the limit", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", &[413], true),
    // Transfer-Encoding.
    ("unknown transfer coding", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", &[501], true),
    ("gzip then chunked", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", &[501], true),
    ("chunked twice", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", &[400], true),
    ("chunked in two fields", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &[400], true),
    ("empty coding in list", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n0\r\n\r\n", &[400], true),
    ("Transfer-Encoding in HTTP/1.0", "POST /healthz HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &[400], true),
    // Chunks.
    ("chunk size with 0x", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", &[400], true),
    ("chunk size with sign", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", &[400], true),
    ("chunk size with leading space", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", &[400], true),
    ("chunk size with trailing junk", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n", &[400], true),
    ("chunk size of 17 digits", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n", &[400], true),
    ("empty chunk size", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", &[400], true),
    ("chunk data longer than declared", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello!!\r\n0\r\n\r\n", &[400], true),
    ("chunk data shorter than declared", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel\r\n0\r\n\r\n", &[400], true),
    ("chunk line ended by bare LF", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", &[400], true),
    ("chunk data ended by bare LF", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", &[400], true),
    ("empty chunk extension", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n0\r\n\r\n", &[400], true),
    ("unterminated quoted extension", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\r\nhello\r\n0\r\n\r\n", &[400], true),
    ("malformed trailer", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnot a field\r\n\r\n", &[400], true),
];

#[test]
fn framing_vectors() {
    let server = Server::start("", &[]);
    run_all(&server, CASES);
}

/// Limits, generated vectors too long for one line each.
#[test]
fn size_limits() {
    let server = Server::start("", &[]);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(17_000));
    let big_field = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "b".repeat(17_000)
    );
    let many_fields = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X: y\r\n".repeat(64)
    );
    let fields_at_limit = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X: y\r\n".repeat(63)
    );
    let long_ext = format!(
        "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;{}\r\nhello\r\n0\r\n\r\n",
        "e".repeat(300)
    );
    let many_trailers = format!(
        "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{}\r\n",
        "T: v\r\n".repeat(17)
    );
    // A head of exactly max_head_bytes (16384) is within the limit; one byte more is not.
    let head_of = |len: usize| {
        let fixed = "GET /healthz HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n".len();
        format!(
            "GET /healthz HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "p".repeat(len - fixed)
        )
    };
    let (head_at_limit, head_over_limit) = (head_of(16384), head_of(16385));
    // A 100 KiB body in one-byte chunks (600 KiB on the wire) is within the limits; a
    // 500 KiB one (3 MiB on the wire) is refused for its chunk lines, and says so.
    let tiny_chunks = |n: usize| {
        format!(
            "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
            "1\r\nz\r\n".repeat(n)
        )
    };
    let (small_tiny, large_tiny) = (tiny_chunks(100 << 10), tiny_chunks(500 << 10));
    let chunked_over_limit = format!(
        "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        "80000\r\n".to_string() + &"z".repeat(0x80000) + "\r\n80001\r\n"
    );
    let cases: [(&str, &str, &[u16], bool); 11] = [
        (
            "100 KiB body in one-byte chunks",
            &small_tiny,
            &[405],
            false,
        ),
        ("500 KiB body in one-byte chunks", &large_tiny, &[413], true),
        (
            "head of exactly max_head_bytes",
            &head_at_limit,
            &[200],
            false,
        ),
        (
            "head one byte over max_head_bytes",
            &head_over_limit,
            &[431],
            true,
        ),
        (
            "request line over max_head_bytes",
            &long_target,
            &[414],
            true,
        ),
        ("header field over max_head_bytes", &big_field, &[431], true),
        ("65 header fields (Host + 64)", &many_fields, &[431], true),
        ("64 header fields", &fields_at_limit, &[200], false),
        ("oversized chunk extension", &long_ext, &[400], true),
        ("17 trailer fields", &many_trailers, &[431], true),
        (
            "chunked body over max_body_bytes",
            &chunked_over_limit,
            &[413],
            true,
        ),
    ];
    run_all(&server, &cases);
    // The 413 for tiny chunks names the framing, not the body's size.
    let mut stream = server.connect();
    let _ = stream.write_all(large_tiny.as_bytes());
    let r = read_response(&mut stream).expect("a 413");
    assert_eq!(r.status, 413);
    assert!(r.error().contains("chunks too small"), "{}", r.error());
}

/// Every rejection carries a JSON body with a specific message.
#[test]
fn rejections_name_the_problem() {
    let server = Server::start("", &[]);
    let cases = [
        ("POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding"),
        ("GET /healthz HTTP/1.1\nHost: a\n\n", "bare LF"),
        ("GET /healthz HTTP/1.1\r\n\r\n", "without Host"),
        ("POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported transfer coding"),
        ("GET /nope HTTP/1.1\r\nHost: a\r\n\r\n", "no such route"),
    ];
    for (raw, needle) in cases {
        let mut stream = server.connect();
        stream.write_all(raw.as_bytes()).unwrap();
        let response = read_response(&mut stream).expect("a response");
        assert_eq!(response.header("content-type"), Some("application/json"));
        let message = response.error();
        assert!(
            message.contains(needle),
            "{raw:?}: message {message:?} lacks {needle:?}"
        );
    }
}

/// Runs every case on its own connection and reports all failures at once.
fn run_all(server: &Server, cases: &[(&str, &str, &[u16], bool)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&(name, raw, statuses, closes)| {
            run_case(server, raw.as_bytes(), statuses, closes)
                .err()
                .map(|why| format!("{name}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
}

fn run_case(server: &Server, raw: &[u8], statuses: &[u16], closes: bool) -> Result<(), String> {
    let mut stream = server.connect();
    let mut bytes = raw.to_vec();
    bytes.extend_from_slice(TAIL);
    // The server may close before reading everything; a failed write is then expected.
    let _ = stream.write_all(&bytes);
    let mut got = Vec::new();
    for _ in 0..statuses.len() + usize::from(!closes) {
        match read_response(&mut stream) {
            Some(r) => got.push(r.status),
            None => break,
        }
    }
    let mut want = statuses.to_vec();
    if !closes {
        want.push(200);
    }
    if got != want {
        return Err(format!("statuses {got:?}, want {want:?}"));
    }
    if closes {
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(n) => {
                return Err(format!(
                    "more bytes after the closing response: {:?}",
                    String::from_utf8_lossy(&buf[..n])
                ))
            }
            Err(e) => return Err(format!("connection not closed: {e}")),
        }
    } else {
        stream.write_all(TAIL).map_err(|e| e.to_string())?;
        match read_response(&mut stream) {
            Some(r) if r.status == 200 => {}
            other => return Err(format!("connection unusable afterwards: {other:?}")),
        }
    }
    Ok(())
}
