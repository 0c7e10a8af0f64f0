//! The live log under faults around it, on the fault-injecting filesystem and the real
//! binary: a clean stop with acknowledged `async` records and a full disk waits for
//! space instead of dropping them.

mod common;
#[path = "common/faultfs.rs"]
mod faultfs;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{post, project_report, temp_dir, wait_until, Server};
use faultfs::{Disk, Mount};

use common::{DEVICE_ADMIN_CONFIG as CONFIG, DEVICE_TOKEN as DEVICE};

/// A 1-shard server under `config` whose data directory is on a fresh fault-injecting
/// filesystem. Fields drop in order: the server before the mount.
struct OnFaultFs {
    server: Server,
    disk: Arc<Mutex<Disk>>,
    _mount: Mount,
}

fn on_faultfs(config: &str) -> OnFaultFs {
    let dir = temp_dir();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let disk = Disk::new();
    let mount = Mount::new(&disk, &mnt).expect("mount the fault-injecting filesystem");
    std::fs::create_dir(mnt.join("data")).unwrap();
    std::os::unix::fs::symlink(mnt.join("data"), dir.path().join("data")).unwrap();
    let server = Server::start_in(dir, config, &["--shards", "1"]);
    OnFaultFs {
        server,
        disk,
        _mount: mount,
    }
}

fn sigterm(server: &Server) {
    let pid = nix::unistd::Pid::from_raw(server.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

#[test]
fn a_clean_stop_on_a_full_disk_waits_to_write_every_acknowledged_async_record() {
    let config = format!("durability = \"async\"\n{CONFIG}");
    let mut fs = on_faultfs(&config);
    fs.disk.lock().unwrap().full = true;
    // Async acknowledges at once; the 64 KiB segment fills, the next cannot be created,
    // and what was acknowledged meanwhile waits in memory while writes are refused.
    let mut stream = fs.server.connect();
    let mut acked = Vec::new();
    for i in 0..5000 {
        let patient = format!("P-{i}");
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE,
            &project_report(&patient),
        );
        match r.status {
            200 => acked.push((r.json()["id"].as_str().unwrap().to_string(), patient)),
            503 => break,
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert!(
        wait_until(Duration::from_secs(10), || fs
            .server
            .log()
            .contains("cannot create a segment")),
        "{}",
        fs.server.log()
    );
    assert!(acked.len() > 100, "only {} acknowledged", acked.len());
    drop(stream);

    sigterm(&fs.server);
    assert_eq!(
        fs.server.wait_exit(Duration::from_secs(3)),
        None,
        "stopped with acknowledged records unwritten: {}",
        fs.server.log()
    );
    let log = fs.server.log();
    let said = log
        .lines()
        .find(|l| l.contains("stopping, waiting for space"))
        .unwrap_or_else(|| panic!("the wait is not logged: {log}"));
    assert!(said.contains("acknowledged records (s0-"), "{said}");
    // Said once, not once per retry.
    assert_eq!(
        log.matches("stopping, waiting for space").count(),
        1,
        "{log}"
    );

    fs.disk.lock().unwrap().full = false;
    let status = fs.server.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        fs.server.log()
    );
    let exported: std::collections::HashMap<String, String> = common::export(&fs.server.data_dir())
        .into_iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap().to_string();
            (id, r["body"]["patientId"].as_str().unwrap().to_string())
        })
        .collect();
    for (id, patient) in &acked {
        assert_eq!(exported.get(id), Some(patient), "acknowledged {id} lost");
    }
    let (clean, out) = common::verify(&fs.server.data_dir());
    assert!(clean, "{out}");
}
