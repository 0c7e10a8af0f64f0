//! The live log under faults around it, with the real binary: a clean stop with
//! acknowledged `async` records and a full disk waits for space instead of dropping
//! them; a filesystem without `fallocate` fails the start; a live segment deleted,
//! replaced or made read-only under load stops the shard's writes and loses nothing
//! acknowledged.

mod common;
#[path = "common/faultfs.rs"]
mod faultfs;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::io::Write;

use common::{
    get, post, project_report, read_response, submit_request, temp_dir, wait_until, Server,
};
use faultfs::{data_on_faultfs, serve_on_faultfs, Disk, Mount};

use common::{DEVICE_ADMIN_CONFIG as CONFIG, DEVICE_TOKEN as DEVICE};

/// A temp dir whose `data` is on a fresh fault-injecting filesystem.
fn faultfs_dir() -> (tempfile::TempDir, Arc<Mutex<Disk>>, Mount) {
    let dir = temp_dir();
    let (disk, mount) = data_on_faultfs(dir.path());
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
    // 71: the system lacks what the server needs; a restart cannot help.
    assert_eq!(status.code(), Some(71), "{log}");
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
    // 71: the system lacks what the server needs; a restart cannot help.
    assert_eq!(status.code(), Some(71), "{log}");
    says_fallocate_unsupported(&log);
}

fn sigterm(server: &Server) {
    let pid = nix::unistd::Pid::from_raw(server.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

#[test]
fn a_clean_stop_on_a_full_disk_waits_to_write_every_acknowledged_async_record() {
    let config = format!("durability = \"async\"\n{CONFIG}");
    let mut fs = serve_on_faultfs(|_| {}, true, "1", &config);
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
    common::assert_exported(&fs.server.data_dir(), &acked);
    let (clean, out) = common::verify(&fs.server.data_dir());
    assert!(clean, "{out}");
}

/// [`CONFIG`] with segments big enough that none rotates during a test (the live one
/// stays the live one), and `extra` keys.
fn big_segments(extra: &str) -> String {
    format!(
        "{extra}\n{}",
        CONFIG.replace("segment_bytes = 65536", "segment_bytes = 4194304")
    )
}

/// What a client saw: acknowledged (id, patient) pairs, and 503 messages.
#[derive(Default)]
struct Seen {
    acked: Vec<(String, String)>,
    refused: Vec<String>,
}

/// Four clients submitting until `stop`, each on its own connection (reopened after
/// a 503 closes one). A client whose server is gone (a failed test dropped it) ends
/// quietly, so the test's own message is the one that stands.
fn load(
    server: &Server,
    stop: &Arc<AtomicBool>,
    seen: &Arc<Mutex<Seen>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..4)
        .map(|c| {
            let (addr, stop, seen) = (server.addr, Arc::clone(stop), Arc::clone(seen));
            std::thread::spawn(move || {
                let mut stream = None;
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let Some(s) = connected(&mut stream, addr) else {
                        return;
                    };
                    let patient = format!("P-{c}-{i}");
                    i += 1;
                    // Refused or reset: connecting again tells whether the server is gone.
                    if s.write_all(&submit_request(&project_report(&patient)))
                        .is_err()
                    {
                        stream = None;
                        continue;
                    }
                    // A write waiting for the group that found the fault is not
                    // acknowledged: its connection closes unanswered.
                    let Some(r) = read_response(s) else {
                        stream = None;
                        continue;
                    };
                    let mut seen = seen.lock().unwrap();
                    match r.status {
                        200 => seen
                            .acked
                            .push((r.json()["id"].as_str().unwrap().to_string(), patient)),
                        503 => {
                            seen.refused.push(r.error());
                            stream = None;
                        }
                        other => panic!("unexpected {other}: {}", r.text()),
                    }
                }
            })
        })
        .collect()
}

/// The client's connection, opened if it has none; `None` once nothing listens.
fn connected(stream: &mut Option<TcpStream>, addr: SocketAddr) -> Option<&mut TcpStream> {
    if stream.is_none() {
        let s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        *stream = Some(s);
    }
    stream.as_mut()
}

fn live_segment(server: &Server) -> PathBuf {
    epro_ingest::log::files::list_segments(&server.data_dir().join("shard-0"))
        .unwrap()
        .pop()
        .expect("a segment")
        .path
}

/// Under load, does `fault` to the live segment, then checks that writes stop (503,
/// `/readyz`, the metric, one log line naming `says`), and returns what the clients
/// saw, with the stopped server's directory.
fn fault_under_load(config: &str, says: &str, fault: impl FnOnce(&Path)) -> (Seen, Server) {
    let server = Server::start(config, &["--shards", "1"]);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let clients = load(&server, &stop, &seen);
    assert!(wait_until(Duration::from_secs(20), || seen
        .lock()
        .unwrap()
        .acked
        .len()
        > 300));
    let segment = live_segment(&server);
    fault(&segment);
    let refused = format!("writes to this shard are stopped: {says}");
    assert!(
        wait_until(Duration::from_secs(10), || seen
            .lock()
            .unwrap()
            .refused
            .contains(&refused)),
        "no 503 {refused:?}: {}",
        server.log()
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    for e in &seen.refused {
        assert_eq!(*e, refused, "another refusal");
    }
    let mut stream = server.connect();
    let r = get(&mut stream, "/readyz", "");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(
        r.error(),
        format!("not ready: shard 0 cannot take writes: {says}")
    );
    let metrics = get(&mut stream, "/metrics", "").text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "epro_log_writes_stopped{shard=\"0\"} 1"),
        "{metrics}"
    );
    // Written once the records are saved, and buffered a moment like every line.
    let stopped = |log: &str| log.contains("writes to this shard are stopped until a restart");
    assert!(wait_until(Duration::from_secs(5), || stopped(
        &server.log()
    )));
    let log = server.log();
    let lines: Vec<_> = log.lines().filter(|l| stopped(l)).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains(&format!("shard 0: {says} ({})", segment.display())),
        "{log}"
    );
    (seen, server)
}

/// After a restart over `dir`, every acknowledged report is exported under its id,
/// and `verify` is clean.
fn every_acknowledged_report_is_kept(
    dir: tempfile::TempDir,
    config: &str,
    acked: &[(String, String)],
) {
    let server = Server::start_in(dir, config, &["--shards", "1"]);
    let (status, dir) = server.terminate();
    assert!(status.success());
    let data = dir.path().join("data");
    common::assert_exported(&data, acked);
    let (clean, out) = common::verify(&data);
    assert!(clean, "{out}");
}

fn a_deleted_live_segment_stops_writes_and_is_written_back(durability: &str) {
    let config = big_segments(&format!("durability = \"{durability}\""));
    let (seen, server) = fault_under_load(
        &config,
        "its live segment was deleted or moved away",
        |segment| std::fs::remove_file(segment).unwrap(),
    );
    assert!(
        server.log().contains("its records are saved in") || durability == "async",
        "{}",
        server.log()
    );
    let (status, dir) = server.terminate();
    assert!(status.success());
    every_acknowledged_report_is_kept(dir, &config, &seen.acked);
}

#[test]
fn a_deleted_live_segment_stops_writes_and_loses_no_acknowledged_record() {
    a_deleted_live_segment_stops_writes_and_is_written_back("sync");
}

#[test]
fn a_deleted_live_segment_loses_no_acknowledged_async_record_either() {
    a_deleted_live_segment_stops_writes_and_is_written_back("async");
}

#[test]
fn a_deleted_shard_directory_is_made_again_with_its_live_records() {
    let config = big_segments("");
    let (seen, server) = fault_under_load(
        &config,
        "its live segment was deleted or moved away",
        |segment| std::fs::remove_dir_all(segment.parent().unwrap()).unwrap(),
    );
    let (status, dir) = server.terminate();
    assert!(status.success());
    // Segment and manifest both: a shard directory without its manifest is damage.
    let shard = dir.path().join("data/shard-0");
    assert!(shard.join("MANIFEST").exists(), "no MANIFEST written again");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&shard).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);
    every_acknowledged_report_is_kept(dir, &config, &seen.acked);
}

#[test]
fn a_replaced_live_segment_is_kept_beside_its_replacement() {
    let config = big_segments("");
    let (seen, server) = fault_under_load(
        &config,
        "its live segment was replaced by another file",
        |segment| {
            // An older copy of itself, renamed over it: what a careless restore does.
            let older = segment.with_extension("older");
            std::fs::copy(segment, &older).unwrap();
            std::fs::rename(&older, segment).unwrap();
        },
    );
    let (status, dir) = server.terminate();
    assert!(status.success());
    // The replacement is left as found; the live records are beside it. Put back,
    // they are the whole log.
    let segment = std::fs::read_dir(dir.path().join("data/shard-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".seg.live-copy"))
        .expect("a live copy");
    std::fs::rename(&segment, segment.with_extension("")).unwrap();
    every_acknowledged_report_is_kept(dir, &config, &seen.acked);
}

#[test]
fn a_live_segment_made_read_only_stops_writes() {
    use std::os::unix::fs::PermissionsExt;
    let config = big_segments("");
    let made_read_only = Mutex::new(None);
    let (seen, server) =
        fault_under_load(&config, "its live segment was made read-only", |segment| {
            std::fs::set_permissions(segment, std::fs::Permissions::from_mode(0o400)).unwrap();
            *made_read_only.lock().unwrap() = Some(segment.to_path_buf());
        });
    let (status, dir) = server.terminate();
    assert!(status.success());
    let segment = made_read_only.into_inner().unwrap().unwrap();
    std::fs::set_permissions(&segment, std::fs::Permissions::from_mode(0o600)).unwrap();
    every_acknowledged_report_is_kept(dir, &config, &seen.acked);
}

/// Twenty reports on one connection, each acknowledged: (id, patient) pairs.
fn twenty_reports(server: &Server) -> Vec<(String, String)> {
    let mut stream = server.connect();
    (0..20)
        .map(|i| {
            let patient = format!("P-{i}");
            let r = post(
                &mut stream,
                "/epro/submit",
                DEVICE,
                &project_report(&patient),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            (r.json()["id"].as_str().unwrap().to_string(), patient)
        })
        .collect()
}

#[test]
fn a_live_segment_deleted_while_idle_is_found_within_seconds_and_survives_kill_9() {
    let server = Server::start(CONFIG, &["--shards", "1"]);
    let acked = twenty_reports(&server);
    std::fs::remove_file(live_segment(&server)).unwrap();
    // No write comes; the idle shard looks by itself.
    let says = "not ready: shard 0 cannot take writes: its live segment was deleted or moved away";
    let mut stream = server.connect();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let r = get(&mut stream, "/readyz", "");
            r.status == 503 && r.error() == says
        }),
        "{}",
        server.log()
    );
    assert!(wait_until(Duration::from_secs(5), || server
        .log()
        .contains(
            "writes to this shard are stopped until a restart; its records are saved in"
        )));
    // Saved already: not even kill -9 loses them now.
    let dir = server.kill();
    every_acknowledged_report_is_kept(dir, CONFIG, &acked);
}

#[test]
fn a_live_segment_deleted_while_idle_is_written_back_at_the_stop() {
    let server = Server::start(CONFIG, &["--shards", "1"]);
    let acked = twenty_reports(&server);
    std::fs::remove_file(live_segment(&server)).unwrap();
    // No write finds it; the stop looks before it closes the file.
    let (status, dir) = server.terminate();
    assert!(status.success());
    every_acknowledged_report_is_kept(dir, CONFIG, &acked);
}
