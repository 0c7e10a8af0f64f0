//! Bounded randomized framing test: generated, mutated and random byte streams fed to
//! the same `RequestParser` the connection loop uses, in random splits. Asserts that
//! framing never panics, that valid streams come out exactly as generated, and that
//! the outcome never depends on how the bytes were split across reads (a framing layer
//! that accepts something it then mis-frames shows up as a split-dependent result).

mod common;

use common::Rng;
use epro_ingest::http::parse::Limits;
use epro_ingest::http::reject::Reject;
use epro_ingest::http::request::{RequestParser, Step};

const LIMITS: Limits = Limits {
    max_head: 2048,
    max_headers: 16,
    max_body: 4096,
};

#[derive(Debug, PartialEq, Eq)]
struct Framed {
    method: String,
    path: String,
    body: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    requests: Vec<Framed>,
    end: Option<Reject>,
    /// The stream ended inside an incomplete head.
    awaiting_head: bool,
}

/// Head errors are found when the line holding them completes (the parser only looks
/// at a pending head once a line ending arrives), so a split stream may still be
/// waiting where the whole stream was already refused. Anything else must match.
fn assert_same(split: &Outcome, whole: &Outcome, context: &str) {
    assert_eq!(split.requests, whole.requests, "{context}");
    match (split.end, whole.end) {
        (a, b) if a == b => {}
        (None, Some(_)) => assert!(split.awaiting_head, "{context}: split run not in a head"),
        (Some(_), None) => assert!(whole.awaiting_head, "{context}: whole run not in a head"),
        (a, b) => panic!("{context}: split run ended {a:?}, whole run {b:?}"),
    }
}

/// Feeds `stream` cut at `cuts` (sorted offsets) the way `conn.rs` does.
fn drive(stream: &[u8], cuts: &[usize]) -> Outcome {
    let mut parser = RequestParser::new(LIMITS);
    let mut buf = Vec::new();
    let mut body = Vec::new();
    let mut start = 0;
    let mut requests = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        buf.extend_from_slice(&stream[last..cut]);
        last = cut;
        while start < buf.len() {
            match parser.next(&buf[start..], &mut body) {
                Ok(Step::NeedMore { .. }) => break,
                Ok(Step::Request(r)) => {
                    assert!(r.consumed > 0 && start + r.consumed <= buf.len());
                    requests.push(Framed {
                        method: r.head.method.as_str().to_string(),
                        path: r.head.path.to_string(),
                        body: r.body.to_vec(),
                    });
                    start += r.consumed;
                    if !r.head.keep_alive {
                        return Outcome {
                            requests,
                            end: None,
                            awaiting_head: false,
                        };
                    }
                }
                Err(reject) => {
                    return Outcome {
                        requests,
                        end: Some(reject),
                        awaiting_head: false,
                    }
                }
            }
        }
    }
    let awaiting_head = start < buf.len() && !parser.in_body();
    Outcome {
        requests,
        end: None,
        awaiting_head,
    }
}

fn random_cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..rng.below(12)).map(|_| rng.below(len + 1)).collect();
    if rng.below(4) == 0 {
        cuts = (1..len).collect(); // byte by byte
    }
    cuts.sort_unstable();
    cuts
}

/// A valid request with a random body framing; returns its bytes and what it frames to.
fn valid_request(rng: &mut Rng) -> (Vec<u8>, Framed) {
    let path = format!("/p{}/{}", rng.below(100), rng.below(10));
    let body: Vec<u8> = (0..rng.below(300))
        .map(|_| b"abcxyz{}\":,0189 \r\n"[rng.below(18)])
        .collect();
    let mut out = Vec::new();
    match rng.below(3) {
        0 => {
            out.extend_from_slice(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: h\r\nX-N: {}\r\n\r\n",
                    rng.below(9)
                )
                .as_bytes(),
            );
            return (
                out,
                Framed {
                    method: "GET".into(),
                    path,
                    body: Vec::new(),
                },
            );
        }
        1 => {
            out.extend_from_slice(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(&body);
        }
        _ => {
            out.extend_from_slice(
                format!("POST {path} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .as_bytes(),
            );
            let mut rest = &body[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                let ext = if rng.below(3) == 0 { ";k=v" } else { "" };
                out.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
                out.extend_from_slice(&rest[..n]);
                out.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            out.extend_from_slice(b"0\r\n");
            if rng.below(2) == 0 {
                out.extend_from_slice(b"T: 1\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    (
        out,
        Framed {
            method: "POST".into(),
            path,
            body,
        },
    )
}

fn valid_stream(rng: &mut Rng) -> (Vec<u8>, Vec<Framed>) {
    let mut bytes = Vec::new();
    let mut framed = Vec::new();
    for _ in 0..1 + rng.below(5) {
        let (b, f) = valid_request(rng);
        bytes.extend_from_slice(&b);
        framed.push(f);
    }
    (bytes, framed)
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            return;
        }
        let at = rng.below(bytes.len());
        match rng.below(5) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes.insert(at, b"\r\n:; \t0aF\x00\x7f"[rng.below(11)]),
            2 => {
                bytes.remove(at);
            }
            3 => bytes[at] = rng.next() as u8,
            _ => {
                let end = (at + rng.below(16)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.below(bytes.len());
                bytes.splice(to..to, copy);
            }
        }
    }
}

#[test]
fn valid_streams_frame_exactly_in_any_split() {
    for seed in 1..=400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (bytes, expected) = valid_stream(&mut rng);
        for _ in 0..4 {
            let cuts = random_cuts(&mut rng, bytes.len());
            let outcome = drive(&bytes, &cuts);
            assert_eq!(outcome.end, None, "seed {seed}");
            assert_eq!(outcome.requests, expected, "seed {seed}, cuts {cuts:?}");
        }
    }
}

#[test]
fn mutated_streams_frame_the_same_in_any_split() {
    for seed in 1..=3000u64 {
        let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
        let (mut bytes, _) = valid_stream(&mut rng);
        mutate(&mut rng, &mut bytes);
        let whole = drive(&bytes, &[]);
        for _ in 0..3 {
            let cuts = random_cuts(&mut rng, bytes.len());
            assert_same(
                &drive(&bytes, &cuts),
                &whole,
                &format!("seed {seed}, cuts {cuts:?}"),
            );
        }
    }
}

#[test]
fn random_bytes_never_panic_and_frame_the_same_in_any_split() {
    for seed in 1..=2000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x94D0_49BB_1331_11EB) | 1);
        let len = rng.below(600);
        let prefix: &[u8] = match rng.below(3) {
            0 => b"",
            1 => b"GET / HTTP/1.1\r\n",
            _ => b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        };
        let mut bytes = prefix.to_vec();
        bytes.extend((0..len).map(|_| rng.next() as u8));
        let whole = drive(&bytes, &[]);
        let cuts = random_cuts(&mut rng, bytes.len());
        assert_same(&drive(&bytes, &cuts), &whole, &format!("seed {seed}"));
    }
}
