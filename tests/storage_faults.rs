//! Disk faults injected through the fault-injecting filesystem: a full disk (no room
//! for a new segment) is waited out, not fatal, and makes the whole process not ready;
//! a failed fdatasync ends the process without acknowledging the write; a slow disk
//! makes the server shed new writes (503 + Retry-After) instead of queueing without end.

mod common;
#[path = "common/faultfs.rs"]
mod faultfs;

use std::io::Write;
use std::time::Duration;

use common::{get, post, project_report, read_response, submit_request, wait_until, Server};
use faultfs::{serve_on_faultfs, Disk, OnFaultFs};

use common::{ADMIN_TOKEN as ADMIN, DEVICE_ADMIN_CONFIG as CONFIG, DEVICE_TOKEN as DEVICE};

/// A 1-shard server on a fresh fault-injecting disk (see [`serve_on_faultfs`]).
fn on_faultfs(prepare: impl FnOnce(&mut Disk), ready: bool) -> OnFaultFs {
    on_faultfs_with(prepare, ready, "1")
}

fn on_faultfs_with(prepare: impl FnOnce(&mut Disk), ready: bool, shards: &str) -> OnFaultFs {
    serve_on_faultfs(prepare, ready, shards, CONFIG)
}

fn readyz(server: &Server) -> u16 {
    common::probe_readyz(server.addr).0
}

#[test]
fn a_full_disk_at_start_up_keeps_the_server_not_ready_until_there_is_room() {
    let fs = on_faultfs(|disk| disk.full = true, false);
    let server = &fs.server;
    // Listening, recovered, but no room for a segment: not ready, writes refused.
    assert!(wait_until(Duration::from_secs(10), || server
        .log()
        .contains("cannot create a segment")));
    assert_eq!(readyz(server), 503);
    let mut stream = server.connect();
    let r = post(
        &mut stream,
        "/epro/submit",
        DEVICE,
        &project_report("P-early"),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(!server.log().contains("ready:"), "{}", server.log());

    fs.disk.lock().unwrap().full = false;
    assert!(
        wait_until(Duration::from_secs(5), || readyz(server) == 200),
        "{}",
        server.log()
    );
    let r = post(
        &mut stream,
        "/epro/submit",
        DEVICE,
        &project_report("P-after"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_disk_that_fills_up_is_waited_out_and_writes_resume_by_themselves() {
    let fs = on_faultfs(|_| {}, true);
    let server = &fs.server;
    fs.disk.lock().unwrap().full = true;
    // One writer fills the first 64 KiB segment; the write that needs the next one
    // waits while no segment can be created.
    let addr = server.addr;
    let writer = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        (0..1000)
            .map(|i| {
                post(
                    &mut stream,
                    "/epro/submit",
                    DEVICE,
                    &project_report(&format!("P-{i}")),
                )
                .status
            })
            .collect::<Vec<u16>>()
    });
    assert!(
        wait_until(Duration::from_secs(20), || readyz(server) == 503),
        "never not-ready while full"
    );
    let metrics = get(&mut server.connect(), "/metrics", "").text();
    assert!(
        metrics.contains("\nepro_log_no_space{shard=\"0\"} 1\n"),
        "{metrics}"
    );
    let mut stream = server.connect();
    let r = post(
        &mut stream,
        "/epro/submit",
        DEVICE,
        &project_report("P-refused"),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.error().contains("no space"), "{}", r.error());
    let leftovers: Vec<_> = std::fs::read_dir(&fs.shard_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "partial segment left behind: {leftovers:?}"
    );

    fs.disk.lock().unwrap().full = false;
    let statuses = writer.join().unwrap();
    assert!(
        statuses.iter().all(|&s| s == 200),
        "the waiting writer was refused"
    );
    assert!(wait_until(Duration::from_secs(5), || readyz(server) == 200));
    let summary = get(&mut stream, "/api/v1/projects/P001/reports/summary", ADMIN);
    assert_eq!(summary.json()["reports"], 1000);
    assert!(
        server.log().contains("cannot create a segment"),
        "{}",
        server.log()
    );
}

#[test]
fn a_failed_fdatasync_ends_the_process_without_acknowledging_the_write() {
    let mut fs = on_faultfs(|_| {}, true);
    let mut stream = fs.server.connect();
    for i in 0..3 {
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE,
            &project_report(&format!("P-{i}")),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    fs.disk.lock().unwrap().failing_sync = true;
    stream
        .write_all(&submit_request(&project_report("P-lost")))
        .unwrap();
    assert!(
        read_response(&mut stream).is_none(),
        "a write whose sync failed was answered"
    );
    // Half-serving (reads on, writes refused for good) is not an option: the process
    // ends, loudly, for a supervisor to restart it.
    let status = fs.server.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(75),
        "the server did not exit with status 75 (restart may help) after a failed fdatasync: {}",
        fs.server.log()
    );
    // The last lines reach the test through a pipe and a reader thread.
    let logged = wait_until(Duration::from_secs(5), || {
        fs.server.log().contains("shard 0: log write failed")
    });
    assert!(logged, "{}", fs.server.log());
}

#[test]
fn a_shard_that_cannot_open_its_log_for_writing_fails_the_start() {
    let fs = on_faultfs(|_| {}, true);
    let OnFaultFs {
        server,
        disk,
        shard_dir,
        _mount,
    } = fs;
    let mut stream = server.connect();
    let r = post(&mut stream, "/epro/submit", DEVICE, &project_report("P-1"));
    assert_eq!(r.status, 200, "{}", r.text());
    let (status, dir) = server.terminate();
    assert!(status.success());
    // The segment the next run would continue cannot be opened for writing.
    let segment = std::fs::read_dir(&shard_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .expect("a segment");
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&segment).unwrap());
    disk.lock().unwrap().read_only.insert(ino);
    let err = match Server::try_start_in(dir, CONFIG, &["--shards", "1"]) {
        Ok(server) => panic!("started half-able to write:\n{}", server.log()),
        Err(err) => err,
    };
    assert!(
        err.contains("shard 0: cannot open its log for writing"),
        "{err}"
    );
    assert!(!err.contains("] ready: "), "{err}");
}

/// Connections until there is one on each of `shards` shards (the kernel picks the
/// listener), found by the shard in the id of a stored report.
fn one_connection_per_shard(server: &Server, shards: usize) -> Vec<std::net::TcpStream> {
    let mut found: Vec<Option<std::net::TcpStream>> = (0..shards).map(|_| None).collect();
    for i in 0..200 {
        if found.iter().all(Option::is_some) {
            break;
        }
        let mut stream = server.connect();
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE,
            &project_report(&format!("P-probe-{i}")),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_string();
        let shard: usize = id[1..id.find('-').unwrap()].parse().unwrap();
        found[shard].get_or_insert(stream);
    }
    found
        .into_iter()
        .map(|s| s.expect("a connection on every shard"))
        .collect()
}

#[test]
fn readyz_answers_for_every_shard_not_only_the_one_that_takes_the_probe() {
    let fs = on_faultfs_with(|_| {}, true, "2");
    let server = &fs.server;
    let mut streams = one_connection_per_shard(server, 2);
    let mut healthy = streams.pop().unwrap();
    let mut filling = streams.pop().unwrap();
    assert_eq!(get(&mut healthy, "/readyz", ADMIN).status, 200);
    fs.disk.lock().unwrap().full = true;
    // Shard 0 fills its 64 KiB segment; its write that needs the next one waits.
    filling
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let writer = std::thread::spawn(move || {
        (0..1000)
            .map(|i| {
                let body = project_report(&format!("P-{i}"));
                post(&mut filling, "/epro/submit", DEVICE, &body).status
            })
            .collect::<Vec<u16>>()
    });
    // Shard 1 can still write, but the process as a whole cannot take every write.
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let r = get(&mut healthy, "/readyz", ADMIN);
            let not_ready = r.status == 503;
            last = Some(r);
            not_ready
        }),
        "readyz on shard 1 stayed 200 while shard 0 could not write: {}",
        server.log()
    );
    let r = last.unwrap();
    assert_eq!(r.error(), "not ready: shard 0 cannot take writes");
    assert_eq!(r.header("retry-after"), Some("1"));

    fs.disk.lock().unwrap().full = false;
    let statuses = writer.join().unwrap();
    assert!(
        statuses.iter().all(|&s| s == 200),
        "a waiting write was refused"
    );
    assert!(wait_until(Duration::from_secs(5), || get(
        &mut healthy,
        "/readyz",
        ADMIN
    )
    .status
        == 200));
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    statm.split(' ').nth(1).unwrap().parse::<u64>().unwrap() * 4096
}

#[test]
fn a_slow_disk_sheds_new_writes_and_loses_no_acknowledged_one() {
    // Every fdatasync takes 20 ms; more than 16 records waiting for it sheds writes.
    let config = format!("{CONFIG}\n[limits]\nshed_inflight = 16\n");
    let fs = serve_on_faultfs(
        |disk| disk.sync_delay = Duration::from_millis(20),
        true,
        "1",
        &config,
    );
    let server = &fs.server;
    let rss_before = rss(server.pid());
    let addr = server.addr;
    let until = std::time::Instant::now() + Duration::from_secs(3);
    // 48 clients, one request in flight each, reconnecting after a 503 (which closes).
    let clients: Vec<_> = (0..48)
        .map(|c| {
            std::thread::spawn(move || {
                let (mut acked, mut shed, mut took) = (Vec::new(), 0u32, Vec::new());
                let mut stream: Option<std::net::TcpStream> = None;
                let mut i = 0;
                while std::time::Instant::now() < until {
                    let s = stream.get_or_insert_with(|| {
                        let s = std::net::TcpStream::connect(addr).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                        s
                    });
                    let patient = format!("P-{c}-{i}");
                    i += 1;
                    let began = std::time::Instant::now();
                    let r = post(s, "/epro/submit", DEVICE, &project_report(&patient));
                    match r.status {
                        200 => {
                            took.push(began.elapsed());
                            acked.push((r.json()["id"].as_str().unwrap().to_string(), patient));
                        }
                        503 => {
                            assert_eq!(r.error(), "overloaded, retry later");
                            assert_eq!(r.header("retry-after"), Some("1"));
                            assert_eq!(r.header("connection"), Some("close"));
                            assert!(r.header("x-request-id").is_some(), "no request id");
                            shed += 1;
                            stream = None;
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        other => panic!("unexpected {other}: {}", r.text()),
                    }
                }
                (acked, shed, took)
            })
        })
        .collect();
    // Reads and probes are served while writes are shed.
    let reader = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let mut reads = 0;
        while std::time::Instant::now() < until {
            let r = get(&mut stream, "/api/v1/projects/P001/reports/summary", ADMIN);
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(get(&mut stream, "/healthz", "").status, 200);
            reads += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        reads
    });
    let (mut acked, mut shed, mut took) = (Vec::new(), 0, Vec::new());
    for client in clients {
        let (a, s, t) = client.join().unwrap();
        acked.extend(a);
        shed += s;
        took.extend(t);
    }
    assert!(reader.join().unwrap() > 10);
    assert!(shed > 0, "nothing was shed ({} acknowledged)", acked.len());
    assert!(!acked.is_empty(), "nothing was acknowledged ({shed} shed)");
    // Accepted writes waited for a bounded backlog, not for an ever-growing queue.
    took.sort();
    let p99 = took[took.len() * 99 / 100];
    assert!(p99 < Duration::from_secs(5), "p99 {p99:?}");
    let grown = rss(server.pid()).saturating_sub(rss_before);
    assert!(grown < 64 << 20, "memory grew by {grown} bytes");
    // The server counted each shed write, and still serves.
    let mut stream = server.connect();
    let metrics = get(&mut stream, "/metrics", "").text();
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("epro_shed_total{shard=\"0\"} "))
        .expect("epro_shed_total");
    assert_eq!(counted, shed.to_string());
    // Every acknowledged report is in the log under its id.
    fs.disk.lock().unwrap().sync_delay = Duration::ZERO;
    common::assert_exported(&fs.server.data_dir(), &acked);
}

#[test]
fn a_write_not_durable_within_request_timeout_gets_503_and_its_retry_the_first_answer() {
    // Every fdatasync takes 1.5 s; an answer is due within 300 ms of the request.
    let config = format!("{CONFIG}\n[limits]\nrequest_timeout_ms = 300\n");
    let fs = serve_on_faultfs(
        |disk| disk.sync_delay = Duration::from_millis(1500),
        true,
        "1",
        &config,
    );
    let server = &fs.server;
    let body = project_report("P-late");
    let request = format!(
        "POST /epro/submit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {DEVICE}\r\n\
         Content-Type: application/json\r\nIdempotency-Key: late-1\r\nX-Request-Id: late-req\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let began = std::time::Instant::now();
    stream.write_all(request.as_bytes()).unwrap();
    let r = read_response(&mut stream).expect("an answer");
    let waited = began.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.error().starts_with("no answer within request_timeout_ms"),
        "{}",
        r.error()
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("x-request-id"), Some("late-req"));
    assert!(
        waited < Duration::from_millis(1400),
        "answered after {waited:?}"
    );
    // The record was stored all the same, and becomes durable: the retry with the same
    // key gets the first answer, not a second record.
    fs.disk.lock().unwrap().sync_delay = Duration::ZERO;
    std::thread::sleep(Duration::from_millis(1600));
    let mut retry = server.connect();
    retry.write_all(request.as_bytes()).unwrap();
    let again = read_response(&mut retry).expect("an answer to the retry");
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let stored = common::export(&server.data_dir());
    assert_eq!(stored.len(), 1, "{stored:?}");
}
