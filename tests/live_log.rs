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
    let (dir, disk, mount) = faultfs_dir();
    let server = Server::start_in(dir, config, &["--shards", "1"]);
    OnFaultFs {
        server,
        disk,
        _mount: mount,
    }
}

/// A temp dir whose `data` is on a fresh fault-injecting filesystem.
fn faultfs_dir() -> (tempfile::TempDir, Arc<Mutex<Disk>>, Mount) {
    let dir = temp_dir();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let disk = Disk::new();
    let mount = Mount::new(&disk, &mnt).expect("mount the fault-injecting filesystem");
    std::fs::create_dir(mnt.join("data")).unwrap();
    std::os::unix::fs::symlink(mnt.join("data"), dir.path().join("data")).unwrap();
    (dir, disk, mount)
}

/// Starts a 1-shard server in `dir` that is expected to fail its start: its exit
/// status and log. A server that keeps running (retrying) fails the test.
fn failed_start(dir: tempfile::TempDir) -> (std::process::ExitStatus, String) {
    let mut server = Server::start_listening_in(dir, CONFIG, &["--shards", "1"]);
    let status = server.wait_exit(Duration::from_secs(10));
    // The last lines reach the test through a pipe and a reader thread.
    std::thread::sleep(Duration::from_millis(100));
    let log = server.log();
    let status = status.unwrap_or_else(|| panic!("still running after 10 s: {log}"));
    (status, log)
}

/// The one line that names the filesystem's failure, and no retrying as if full.
fn says_fallocate_unsupported(log: &str) {
    let lines: Vec<_> = log
        .lines()
        .filter(|l| l.contains("the filesystem does not support fallocate"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("shard 0: cannot open its log for writing"),
        "{log}"
    );
    assert!(!log.contains("cannot create a segment"), "{log}");
    assert!(!log.contains("] ready: "), "{log}");
}

#[test]
fn a_filesystem_without_fallocate_fails_the_start_instead_of_waiting_for_space() {
    let (dir, disk, _mount) = faultfs_dir();
    disk.lock().unwrap().no_fallocate = true;
    let (status, log) = failed_start(dir);
    assert_eq!(status.code(), Some(1), "{log}");
    says_fallocate_unsupported(&log);
}

#[test]
fn a_log_moved_onto_a_filesystem_without_fallocate_fails_the_start_too() {
    let (dir, disk, _mount) = faultfs_dir();
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    let r = post(&mut stream, "/epro/submit", DEVICE, &project_report("P-1"));
    assert_eq!(r.status, 200, "{}", r.text());
    let (status, dir) = server.terminate();
    assert!(status.success());
    // The log would continue its last segment: the start tries fallocate all the same.
    disk.lock().unwrap().no_fallocate = true;
    let (status, log) = failed_start(dir);
    assert_eq!(status.code(), Some(1), "{log}");
    says_fallocate_unsupported(&log);
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
