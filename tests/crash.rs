//! kill -9 under load, a few times over the same data directory: every acknowledged
//! record id must be exported exactly once afterwards, and verify must be clean.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{export, read_response, report, temp_dir, verify, Server};

use common::{DEVICE_CONFIG as CONFIG, DEVICE_TOKEN as TOKEN};

/// Submits until the server dies or `stop` is set, `depth` requests pipelined at a
/// time; records the ids of the 200 responses.
fn client(
    addr: std::net::SocketAddr,
    depth: usize,
    tag: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        for _ in 0..depth {
            let body = report(&format!("{tag}-{n}"));
            n += 1;
            batch.extend_from_slice(
                format!(
                    "POST /epro/submit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
        if stream.write_all(&batch).is_err() {
            return;
        }
        for _ in 0..depth {
            // A killed server ends the stream inside or before a response: stop there.
            let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                read_response(&mut stream)
            }));
            match response {
                Ok(Some(r)) if r.status == 200 => acked
                    .lock()
                    .unwrap()
                    .push(r.json()["id"].as_str().unwrap().to_string()),
                Ok(Some(r)) => panic!("unexpected status {}: {}", r.status, r.text()),
                _ => return,
            }
        }
    }
}

#[test]
fn acknowledged_reports_survive_kill_9() {
    let mut dir = temp_dir();
    let acked = Arc::new(Mutex::new(Vec::new()));
    for cycle in 0..3 {
        let server = Server::start_in(dir, CONFIG, &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..6)
            .map(|c| {
                let (addr, stop, acked) = (server.addr, Arc::clone(&stop), Arc::clone(&acked));
                let depth = if c % 2 == 0 { 1 } else { 4 };
                std::thread::spawn(move || {
                    client(addr, depth, format!("P-{cycle}-{c}"), stop, acked)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(800));
        dir = server.kill();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
    }
    // One more start cuts any torn tail the last kill left; then stop cleanly.
    let server = Server::start_in(dir, CONFIG, &[]);
    let (status, dir) = server.terminate();
    assert!(status.success());

    let data = dir.path().join("data");
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 100,
        "only {} reports acknowledged: the test did not load the server",
        acked.len()
    );
    let mut counts: HashMap<String, usize> = HashMap::new();
    for record in export(&data) {
        *counts
            .entry(record["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for id in acked.iter() {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "acknowledged {id} exported {:?} times",
            counts.get(id)
        );
    }
    assert!(counts.values().all(|&n| n == 1), "an id was exported twice");
    let (ok, out) = verify(&data);
    assert!(ok && !out.contains("incomplete tail"), "{out}");
}
