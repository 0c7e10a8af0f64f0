//! Graceful shutdown on SIGTERM: idle connections are closed, acknowledged records are
//! durable, the log ends cleanly, the exit code is 0. SIGHUP without a config file
//! changes nothing (tests/reload.rs reloads one).

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{export, post, report, verify, Server, DEVICE_TOKEN as DEVICE};

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let server = Server::start("", &[]);
    let token = server.admin_token();
    let mut idle = server.connect();
    let mut busy = server.connect();
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = post(
            &mut busy,
            "/epro/submit",
            &token,
            &report(&format!("P-{i}")),
        );
        assert_eq!(r.status, 200);
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let began = Instant::now();
    let (status, dir) = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        began.elapsed()
    );
    // Both connections were closed by the server.
    let mut buf = [0u8; 8];
    assert_eq!(idle.read(&mut buf).unwrap_or(0), 0);
    assert_eq!(busy.read(&mut buf).unwrap_or(0), 0);

    let data = dir.path().join("data");
    let exported: Vec<String> = export(&data)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    for id in &ids {
        assert!(exported.contains(id), "{id} missing after shutdown");
    }
    let (ok, out) = verify(&data);
    assert!(ok && !out.contains("incomplete tail"), "{out}");
}

#[test]
fn sighup_without_a_config_file_keeps_serving() {
    let server = Server::start("", &[]);
    let pid = nix::unistd::Pid::from_raw(server.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let logged = common::wait_until(Duration::from_secs(5), || {
        server.log().contains("SIGHUP: no config file to reload")
    });
    assert!(logged, "{}", server.log());
    let mut stream = server.connect();
    let r = post(
        &mut stream,
        "/epro/submit",
        &server.admin_token(),
        &report("P-1"),
    );
    assert_eq!(r.status, 200, "the server stopped serving after SIGHUP");
    let (status, _) = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// A panic outside the onion (here in a task a handler spawned) kills its shard; the
/// process must not limp on with the other shards: it exits non-zero, naming the shard,
/// so that a supervisor restarts it.
#[cfg(feature = "test-seams")]
#[test]
fn a_panic_that_escapes_a_shard_task_ends_the_process_loudly() {
    use std::io::Write;
    let config = format!(
        "[test_seams]\nescape_patient = \"ESCAPE\"\n\n{}",
        "[[principals]]\nid = \"d\"\ntoken = \"device-token-0123456789\"\nrole = \"device\"\nprojects = [\"*\"]\n"
    );
    let mut server = Server::start(&config, &[]);
    let mut stream = server.connect();
    stream
        .write_all(&common::submit_request(&report("ESCAPE")))
        .unwrap();
    let status = server
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "the process kept running with a dead shard:\n{}",
                server.log()
            )
        });
    // The log reaches the test through a pipe and a reader thread.
    common::wait_until(Duration::from_secs(5), || {
        server.log().contains("a panic escaped")
    });
    let log = server.log();
    // 75 (EX_TEMPFAIL): a restart may help, and systemd's Restart=on-failure does it.
    assert_eq!(status.code(), Some(75), "{log}");
    assert!(
        log.contains("ERROR") && log.contains("shard-") && log.contains("a panic escaped"),
        "{log}"
    );
}

/// A request half received when SIGTERM comes gets a 503 saying so (nothing of it was
/// stored, retry it), not a silent close; nothing of it is stored.
#[test]
fn sigterm_answers_a_half_received_request_with_503() {
    use std::io::Write;
    let server = Server::start("", &[]);
    let token = server.admin_token();
    let body = report("P-half");
    let head = format!(
        "POST /epro/submit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nX-Request-Id: half-1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = server.connect();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body.as_bytes()[..10]).unwrap();
    // Empty lines after an answered request are no request in progress: that
    // connection closes quietly.
    let mut between = server.connect();
    between
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\r\n\r\n")
        .unwrap();
    assert_eq!(common::read_response(&mut between).unwrap().status, 200);
    // The server has read what was sent before it is told to stop.
    std::thread::sleep(Duration::from_millis(200));
    let (status, dir) = server.terminate();
    let mut rest = Vec::new();
    between.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(status.success(), "exit status {status:?}");
    let r = common::read_response(&mut stream).expect("a response, not a silent close");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.error().starts_with("the server is shutting down"),
        "{}",
        r.error()
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("x-request-id"), Some("half-1"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(export(&dir.path().join("data")).is_empty());
}

/// Answers still being written when SIGTERM comes (here large ones, to a client that
/// reads them only after the signal) are written whole before the process exits 0:
/// shutdown waits for every connection inside the shard's front gate.
#[test]
fn sigterm_waits_for_a_response_still_being_written() {
    use std::io::Write;
    const REQUESTS: usize = 16;
    let server = Server::start("", &[]);
    let mut stream = server.connect();
    let one = common::get(&mut stream, "/openapi.json", "");
    assert_eq!(one.status, 200);
    let len = one.body.len();
    // Megabytes of answers: far more than the kernel buffers between server and
    // client hold, so the server is still writing them when the signal comes.
    let request = b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n".repeat(REQUESTS);
    stream.write_all(&request).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stopping = std::thread::spawn(move || server.terminate());
    // Without the drain the process would be gone by now.
    std::thread::sleep(Duration::from_secs(1));
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    assert!(
        received.len() > REQUESTS * len,
        "only {} of over {} bytes of answers arrived before the connection closed",
        received.len(),
        REQUESTS * len
    );
    let mut rest = &received[..];
    for _ in 0..REQUESTS {
        let r = common::read_response(&mut rest).expect("a response");
        assert_eq!((r.status, r.body.len()), (200, len));
    }
    assert!(rest.is_empty(), "{} bytes after the answers", rest.len());
    let (status, _dir) = stopping.join().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// Keyed writes whose key another shard owns, in flight when SIGTERM comes: the owner
/// keeps answering its peers, its log open, until every shard's connections have
/// drained. Each answered request is stored (a 200 whose id `export` lists) or cleanly
/// refused; none is a 503 for a log its owner already closed.
#[test]
fn sigterm_lets_keyed_writes_in_flight_reach_their_owner() {
    let server = Server::start(common::DEVICE_CONFIG, &[]);
    // Connections on one shard only, keys owned by the other: the owner has nothing to
    // drain of its own and would be the first to close its log.
    let (front, streams) = connections_on_one_shard(&server);
    let owner = 1 - front;
    let loads: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| std::thread::spawn(move || keyed_load(stream, owner, i)))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (status, dir) = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    let answers: Vec<(String, common::Response)> =
        loads.into_iter().flat_map(|l| l.join().unwrap()).collect();
    let exported: std::collections::HashSet<String> = export(&dir.path().join("data"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let mut stored = 0;
    let mut wrong = Vec::new();
    for (key, r) in &answers {
        let clean = r.status == 503 && r.error().starts_with("the server is shutting down");
        if r.status == 200 && exported.contains(r.json()["id"].as_str().unwrap()) {
            stored += 1;
        } else if !clean {
            wrong.push(format!("{key}: {} {}", r.status, r.text()));
        }
    }
    assert!(stored > 0, "no keyed write was answered");
    assert!(
        wrong.is_empty(),
        "{} of {} answers neither stored nor a clean refusal, first: {:?}",
        wrong.len(),
        answers.len(),
        &wrong[..wrong.len().min(3)]
    );
}

/// Connections that all landed on one shard (the kernel spreads them; an unkeyed
/// submit's id names the shard that took it): that shard, and up to four of them.
fn connections_on_one_shard(server: &Server) -> (usize, Vec<std::net::TcpStream>) {
    let mut by_shard: [Vec<std::net::TcpStream>; 2] = Default::default();
    for i in 0..64 {
        let mut stream = server.connect();
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE,
            &report(&format!("P-{i}")),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let shard = if r.json()["id"].as_str().unwrap().starts_with("s0-") {
            0
        } else {
            1
        };
        by_shard[shard].push(stream);
        if by_shard[shard].len() == 4 {
            break;
        }
    }
    let front = usize::from(by_shard[1].len() > by_shard[0].len());
    (front, std::mem::take(&mut by_shard[front]))
}

/// Sends keyed submits (keys that shard `owner` owns), 64 pipelined at a time, until
/// the server closes the connection: every (key, answer) it got.
fn keyed_load(
    mut stream: std::net::TcpStream,
    owner: usize,
    tag: usize,
) -> Vec<(String, common::Response)> {
    use std::io::Write;
    let mut keys = (0..)
        .map(|n| format!("k{tag}-{n}"))
        .filter(|key| epro_ingest::domain::keys::owner("site-app-001", key, 2) == owner);
    let mut answers = Vec::new();
    loop {
        let batch: Vec<String> = keys.by_ref().take(64).collect();
        let mut bytes = Vec::new();
        for key in &batch {
            let body = report(key);
            bytes.extend_from_slice(
                format!(
                    "POST /epro/submit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {DEVICE}\r\n\
                     Content-Type: application/json\r\nIdempotency-Key: {key}\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
        if stream.write_all(&bytes).is_err() {
            return answers;
        }
        for key in batch {
            // The server ends the stream after its last answer (or inside a response
            // when it is gone): stop there.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                common::read_response(&mut stream)
            }));
            match read {
                Ok(Some(r)) => answers.push((key, r)),
                _ => return answers,
            }
        }
    }
}
