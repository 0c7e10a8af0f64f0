//! /readyz is 503 until every record of the log has been recovered, and writes are
//! refused until then; afterwards both work.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{post, report, spawn_and_wait, temp_dir, BIN};
use epro_ingest::log::record::{encode_header_version, Kind, Record};

/// A server process killed however the test ends, so a failed assertion leaves none
/// behind.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A log big enough that recovery takes a while: 150k records in one segment.
fn big_log() -> tempfile::TempDir {
    log_of(150_000)
}

fn log_of(records: u64) -> tempfile::TempDir {
    let dir = temp_dir();
    let shard_dir = dir.path().join("data/shard-0");
    std::fs::create_dir_all(&shard_dir).unwrap();
    // A log of the format before the hash chain (version 1): still read at start-up.
    let mut bytes = encode_header_version(0, 1, 1).to_vec();
    let body = report("P-1");
    for seq in 1..=records {
        let record = Record {
            kind: Kind::Report,
            shard: 0,
            seq,
            received_ns: 1,
            group_index: 0,
            principal: "admin",
            key: None,
            body: body.as_bytes(),
            prev: None,
        };
        record.encode(&mut bytes).expect("fits the format");
    }
    std::fs::write(shard_dir.join("00000000000000000001.seg"), &bytes).unwrap();
    common::write_manifest(&shard_dir, 0);
    dir
}

fn serve(dir: &tempfile::TempDir) -> Command {
    serve_shards(dir, 1)
}

fn serve_shards(dir: &tempfile::TempDir, shards: usize) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--init",
        "--listen",
        "127.0.0.1:0",
        "--shards",
        &shards.to_string(),
        "--data-dir",
    ])
    .arg(dir.path().join("data"));
    cmd
}

#[test]
fn a_long_recovery_logs_its_progress() {
    let dir = log_of(40_000);
    let config = dir.path().join("epro.toml");
    let principal =
        "[[principals]]\nid = \"d\"\ntoken = \"device-token-0123456789\"\nrole = \"device\"\n";
    std::fs::write(
        &config,
        format!("[test_seams]\nprogress_every_ms = 1\n\n{principal}"),
    )
    .unwrap();
    let mut cmd = serve(&dir);
    cmd.arg("--config").arg(&config);
    let (child, _addr, log) = spawn_and_wait(cmd).expect("server starts");
    let _reap = Reap(child);
    let logged = common::wait_until(Duration::from_secs(30), || {
        log.lock().unwrap().contains("recovered 40000 records")
    });
    let log = log.lock().unwrap().clone();
    assert!(logged, "{log}");
    let progress: Vec<&str> = log.lines().filter(|l| l.contains("recovering: ")).collect();
    assert!(progress.len() >= 2, "{log}");
    assert!(
        progress
            .iter()
            .any(|l| l.contains("shard 0: recovering: 0/1 segments, 8192 records, ")),
        "{log}"
    );
    let last = progress.last().unwrap();
    assert!(
        last.contains("1/1 segments, 40000 records, 5 of 5 MB at "),
        "{last}"
    );
    assert!(last.ends_with("about 0 s left"), "{last}");
}

#[test]
fn readyz_is_503_until_recovery_is_done() {
    let dir = big_log();
    let (child, addr, log) = spawn_and_wait(serve(&dir)).expect("server starts");
    let _reap = Reap(child);
    let token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();

    let mut statuses = Vec::new();
    let mut write_refused = false;
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(60) {
        let (status, mut stream) = common::probe_readyz(addr);
        if status == 503 && !write_refused {
            let r = post(&mut stream, "/epro/submit", &token, &report("P-2"));
            write_refused = r.status == 503
                && r.error() == "not ready: recovering the log"
                && r.header("retry-after") == Some("1");
        }
        if statuses.last() != Some(&status) {
            statuses.push(status);
        }
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(statuses, [503, 200], "{}", log.lock().unwrap());
    assert!(write_refused, "a write during recovery was not refused");
    // Shard log lines are flushed within 100 ms.
    let logged = common::wait_until(Duration::from_secs(3), || {
        log.lock().unwrap().contains("recovered 150000 records")
    });
    assert!(logged, "{}", log.lock().unwrap());

    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let r = post(&mut stream, "/epro/submit", &token, &report("P-3"));
    assert_eq!(r.json()["id"], "s0-150001");
}

#[test]
fn sigterm_during_recovery_stops_at_once() {
    let dir = big_log();
    let (mut child, _, log) = spawn_and_wait(serve(&dir)).expect("server starts");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let log = log.lock().unwrap().clone();
    assert!(status.success(), "{status:?}\n{log}");
    // It stopped while recovering: it never became ready, nor finished the scan.
    assert!(log.contains("stopped during recovery"), "{log}");
    assert!(
        !log.contains("ready:") && !log.contains("recovered 150000"),
        "{log}"
    );
}

/// Readiness belongs to the process: while shard 0 recovers a big log, shard 1 (which
/// has nothing to recover) must not say ready, nor answer reads, nor take writes.
#[test]
fn no_shard_serves_until_every_shard_has_recovered() {
    let dir = big_log();
    let (child, addr, log) = spawn_and_wait(serve_shards(&dir, 2)).expect("server starts");
    let _reap = Reap(child);
    let token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let summary = "/api/v1/projects/P001/reports/summary";
    let mut statuses = Vec::new();
    let mut probes = 0;
    let mut after_ready = 0;
    let mut reads_refused = 0;
    let began = Instant::now();
    // New connections land on either shard: hundreds of probes reach both.
    while began.elapsed() < Duration::from_secs(60) {
        let (status, mut stream) = common::probe_readyz(addr);
        probes += 1;
        if status == 503 {
            // Refused, unless every shard finished recovering in between.
            let r = common::get(&mut stream, summary, &token);
            if r.status == 503 {
                assert_eq!(r.error(), "not ready: recovering the log");
                assert_eq!(r.header("retry-after"), Some("1"));
                reads_refused += 1;
            } else {
                assert_eq!(r.status, 200, "{}", r.text());
            }
        }
        if statuses.last() != Some(&status) {
            statuses.push(status);
        }
        // After the first 200, fifty more probes must all say 200 too.
        if status == 200 {
            after_ready += 1;
            if after_ready == 50 {
                break;
            }
        }
    }
    // Never 200 then 503 again: no shard said ready while another was recovering.
    assert_eq!(
        statuses,
        [503, 200],
        "{probes} probes\n{}",
        log.lock().unwrap()
    );
    assert!(reads_refused > 0, "no read was refused during recovery");
}
