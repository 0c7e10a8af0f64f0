//! Running under systemd: the unit in `deploy/` passes `systemd-analyze verify` without
//! a single complaint, and the server speaks the notify protocol (`READY=1` only once
//! every shard has recovered, `STOPPING=1` when the drain begins, `WATCHDOG=1` only
//! while every shard runs).

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use epro_ingest::base::exit::Exit;

const UNIT: &str = include_str!("../deploy/epro-ingest.service");

#[test]
fn the_unit_file_verifies_cleanly_and_keeps_io_uring_usable() {
    let dir = common::temp_dir();
    // verify checks that ExecStart's binary exists: point it at this build, quoted, as
    // the checkout's path may hold a space.
    let unit = UNIT.replace(
        "/usr/local/bin/epro-ingest",
        &format!("\"{}\"", env!("CARGO_BIN_EXE_epro-ingest")),
    );
    let path = dir.path().join("epro-ingest.service");
    std::fs::write(&path, &unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/test.sh installs systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on an unknown key or a bad value ("ignoring"): any word is a fault.
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    assert!(has("Type=notify"));
    assert!(has("LimitMEMLOCK=infinity"));
    assert!(has("Restart=on-failure"));
    assert!(has("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(has("WatchdogSec=30s"));
    assert!(has("LogRateLimitIntervalSec=30s") && has("LogRateLimitBurst=200000"));
    // Exactly the statuses the server uses for what a restart cannot mend.
    let permanent: Vec<String> = Exit::PERMANENT
        .iter()
        .map(|e| e.code().to_string())
        .collect();
    assert!(
        has(&format!("RestartPreventExitStatus={}", permanent.join(" "))),
        "{permanent:?}"
    );
    assert!(has("ReadWritePaths=/var/lib/epro-ingest"));
    assert!(unit.contains("--data-dir /var/lib/epro-ingest"));
    // A system call filter would have to list io_uring_* by hand; there is none.
    assert!(!unit.lines().any(|l| l.starts_with("SystemCallFilter")));
}

#[test]
fn the_server_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let dir = common::temp_dir();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_epro-ingest"));
    cmd.args([
        "serve",
        "--init",
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
    ])
    .arg("--data-dir")
    .arg(dir.path().join("data"))
    .env("NOTIFY_SOCKET", &socket_path);
    let (mut child, _addr, log) = common::spawn_and_wait(cmd).unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("READY=1 from the server");
    let said = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(said.lines().any(|l| l == "READY=1"), "{said}");
    // Sent after every shard recovered: the log says so (its line is written first,
    // but it reaches this test through a pipe and a reader thread, so allow it a moment).
    assert!(common::wait_until(Duration::from_secs(5), || log
        .lock()
        .unwrap()
        .contains("ready: 2 shards recovered")));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let n = socket.recv(&mut buf).expect("STOPPING=1 from the server");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    assert!(child.wait().unwrap().success());
}

/// The watchdog is fed while every shard runs, and starved while one is wedged (a
/// submit that blocks its shard's thread for 3 s, through a test seam).
#[test]
fn the_watchdog_is_fed_only_while_every_shard_runs() {
    let dir = common::temp_dir();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let config = dir.path().join("config.toml");
    let seam = "[test_seams]\nwedge_patient = \"P-WEDGE\"\n";
    std::fs::write(&config, format!("{}\n{seam}", common::DEVICE_CONFIG)).unwrap();
    // WATCHDOG_PID must be the server's own: the shell execs it, keeping its pid.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_epro-ingest"))
        .args([
            "serve",
            "--init",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000");
    let (child, addr, log) = common::spawn_and_wait(cmd).unwrap();
    let _server = Killed(child);
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a message from the server");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    while !next().lines().any(|l| l == "READY=1") {}
    // Fed every half period while all is well.
    let began = Instant::now();
    let mut pings = 0;
    while began.elapsed() < Duration::from_secs(2) {
        pings += usize::from(next().trim() == "WATCHDOG=1");
    }
    assert!(pings >= 3, "{pings} pings in 2 s");
    // Wedge the shard that takes this connection.
    let wedge = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        common::post(
            &mut s,
            "/epro/submit",
            common::DEVICE_TOKEN,
            &common::report("P-WEDGE"),
        )
    });
    let wedged = Instant::now();
    let mut at = Vec::new();
    while wedged.elapsed() < Duration::from_millis(4500) {
        if next().trim() == "WATCHDOG=1" {
            at.push(wedged.elapsed());
        }
    }
    assert_eq!(wedge.join().unwrap().status, 200);
    // No ping from shortly after the wedge began until shortly before it ended; pings
    // again once the shard runs.
    let starved = Duration::from_millis(1100)..Duration::from_millis(2900);
    assert!(!at.iter().any(|t| starved.contains(t)), "pings at {at:?}");
    assert!(
        at.iter().any(|t| *t > Duration::from_millis(3200)),
        "no ping after the shard recovered: {at:?}"
    );
    assert!(common::wait_until(Duration::from_secs(5), || log
        .lock()
        .unwrap()
        .contains("have not run for over")));
}

/// Kills the server when the test ends, passed or failed.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const EXAMPLE: &str = include_str!("../deploy/epro-ingest.toml");

fn check_config(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_epro-ingest"))
        .arg("check-config")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap()
}

/// `check-config` accepts the example config in `deploy/`, and the example serves.
#[test]
fn check_config_accepts_the_example_and_names_a_fault_with_status_78() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/epro-ingest.toml");
    let out = check_config(std::path::Path::new(example));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.starts_with("ok: ") && said.contains("3 principals (1 with a rate limit)"),
        "{said}"
    );
    let dir = common::temp_dir();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, EXAMPLE.replace("max_connections", "max_conections")).unwrap();
    let out = check_config(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("max_conections"), "{err}");
    // The example starts as it is (address and data directory overridden for a test).
    let server = common::Server::start(EXAMPLE, &[]);
    let mut s = server.connect();
    let r = common::post(
        &mut s,
        "/epro/submit",
        "REPLACE-with-a-random-token-1",
        r#"{"patientId":"P-1","reportData":"x","projectId":"P001"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A command whose stdout's reader has gone (`epro-ingest openapi | head -1`) ends
/// quietly with status 141, as a tool stopped by SIGPIPE does: no panic, no message.
#[test]
fn a_command_whose_stdout_reader_left_ends_quietly() {
    for args in [&["openapi"][..], &["check-config"]] {
        // A socket whose peer is closed: every write to it fails with EPIPE.
        let (stdout, reader) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_epro-ingest"))
            .args(args)
            .stdout(std::os::fd::OwnedFd::from(stdout))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}
