//! The manifest's reservation of ids on a full disk. A renewal that finds no room for
//! the manifest is not fatal: the shard gives out the ids still reserved, then refuses
//! writes (503, not ready) until a renewal gets through, and no id is given twice,
//! before or after a crash.
//! Ids are reserved 64 at a time here (`[test_seams] reserve_block`), so a renewal
//! comes after about 32 records, well inside the first, preallocated, segment.

mod common;
#[path = "common/faultfs.rs"]
mod faultfs;

use std::collections::HashSet;
use std::time::Duration;

use common::{assert_stored_once, get, post, project_report, wait_until, Server};
use common::{DEVICE_ADMIN_CONFIG, DEVICE_TOKEN as DEVICE};
use faultfs::{serve_on_faultfs, OnFaultFs};

fn readyz(server: &Server) -> u16 {
    common::probe_readyz(server.addr).0
}

/// The shard's `epro_log_no_space` gauge.
fn no_space(server: &Server) -> String {
    let metrics = get(&mut server.connect(), "/metrics", "").text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("epro_log_no_space{shard=\"0\"} "))
        .unwrap_or_else(|| panic!("no epro_log_no_space in:\n{metrics}"));
    line.rsplit(' ').next().unwrap().to_string()
}

#[test]
fn a_full_disk_at_a_renewal_refuses_writes_once_the_reserved_ids_are_given() {
    let config = format!("{DEVICE_ADMIN_CONFIG}\n[test_seams]\nreserve_block = 64\n");
    let OnFaultFs {
        server,
        disk,
        _mount,
        ..
    } = serve_on_faultfs(|_| {}, true, "1", &config);
    {
        let mut disk = disk.lock().unwrap();
        disk.full = true;
        disk.full_writes = true;
    }
    let mut stream = server.connect();
    let mut acked = Vec::new();
    let mut statuses = Vec::new();
    for i in 0..120 {
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE,
            &project_report(&format!("P-{i}")),
        );
        if r.status == 200 {
            acked.push(r.json()["id"].as_str().unwrap().to_string());
        } else {
            assert_eq!(r.status, 503, "{}", r.text());
            assert!(r.error().contains("no space"), "{}", r.error());
        }
        statuses.push(r.status);
    }
    // Every reserved id was given (past the failed renewal, at 33), then none: with
    // durability sync each write is durable before the next is sent.
    let given = statuses.iter().take_while(|&&s| s == 200).count();
    assert_eq!(given, 64, "{statuses:?}\n{}", server.log());
    assert!(statuses[given..].iter().all(|&s| s == 503), "{statuses:?}");
    assert_eq!(readyz(&server), 503);
    assert_eq!(no_space(&server), "1");
    assert!(
        wait_until(Duration::from_secs(5), || server
            .log()
            .contains("cannot reserve more ids")),
        "{}",
        server.log()
    );

    // Room again: a renewal gets through while the shard is idle, and writes resume.
    disk.lock().unwrap().full = false;
    assert!(
        wait_until(Duration::from_secs(10), || readyz(&server) == 200),
        "{}",
        server.log()
    );
    for i in 0..80 {
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE,
            &project_report(&format!("Q-{i}")),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        acked.push(r.json()["id"].as_str().unwrap().to_string());
    }
    assert_eq!(no_space(&server), "0");
    assert!(
        wait_until(Duration::from_secs(5), || server
            .log()
            .contains("ids reserved again")),
        "{}",
        server.log()
    );

    // A crash, then a start: the ids go on past every one given.
    let server = Server::start_in(server.kill(), &config, &["--shards", "1"]);
    let r = post(
        &mut server.connect(),
        "/epro/submit",
        DEVICE,
        &project_report("R-1"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let after = r.json()["id"].as_str().unwrap().to_string();
    let seq = |id: &str| id.rsplit('-').next().unwrap().parse::<u64>().unwrap();
    assert!(acked.iter().all(|id| seq(id) < seq(&after)), "{after}");
    acked.push(after);

    let (status, dir) = server.terminate();
    assert!(status.success(), "{status:?}");
    assert_eq!(acked.iter().collect::<HashSet<_>>().len(), acked.len());
    let stored = assert_stored_once(&dir.path().join("data"), &acked);
    assert_eq!(stored.len(), acked.len(), "a refused write was stored");
}
