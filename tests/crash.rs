//! kill -9 under load, a few times over the same data directory: every acknowledged
//! record id must be exported exactly once afterwards, and verify must be clean.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{export, submit_until_gone, temp_dir, verify, Server};

use common::DEVICE_CONFIG as CONFIG;

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
                    submit_until_gone(addr, depth, &format!("P-{cycle}-{c}"), &stop, |id, _| {
                        acked.lock().unwrap().push(id)
                    })
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
