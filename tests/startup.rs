//! Start-up: every failure is one clear message and a non-zero exit, never a panic or
//! a hang; and a good start logs `listening on ADDR` with the real address.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{read_response, temp_dir, Server, BIN};

/// Exit statuses of failures a restart cannot mend (`RestartPreventExitStatus=`).
const EXIT_CONFIG: i32 = 78;
const EXIT_IN_USE: i32 = 69;
const EXIT_UNSUPPORTED: i32 = 71;

/// Runs `sh -c "<prefix> BIN serve <args>"`, expecting it to exit on its own with the
/// status of a config error.
fn failing_start(prefix: &str, args: &[&str]) -> String {
    failing_start_of(BIN, prefix, args, EXIT_CONFIG)
}

/// The binary and the arguments reach the shell as positional parameters, so that a
/// checkout path with spaces or quotes stays one word. `exit`: the status expected.
fn failing_start_of(bin: &str, prefix: &str, args: &[&str], exit: i32) -> String {
    let script = format!("{prefix} \"$0\" serve \"$@\"");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .arg(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if began.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("{script} {args:?}: still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(exit), "{script} {args:?}: {stderr}");
    // One line: no panic message or backtrace before it.
    assert_eq!(
        stderr.lines().filter(|l| l.contains("ERROR")).count(),
        1,
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "{script} {args:?} panicked: {stderr}"
    );
    stderr
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = temp_dir();
    let listen = taken.local_addr().unwrap().to_string();
    let err = failing_start_of(
        BIN,
        "",
        &[
            "--listen",
            &listen,
            "--shards",
            "1",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        EXIT_IN_USE,
    );
    assert!(
        err.contains("cannot listen on 127.0.0.1:")
            && err.contains("in use")
            && err.contains("choose another address with --listen"),
        "{err}"
    );
}

#[test]
fn unknown_config_key_is_named() {
    let dir = temp_dir();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[limits]\nmax_body_bytez = 5\n").unwrap();
    let err = failing_start("", &["--config", config.to_str().unwrap()]);
    assert!(err.contains("max_body_bytez"), "{err}");
}

#[test]
fn bad_config_value_is_named() {
    let dir = temp_dir();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[limits]\nmax_headers = 1000\n").unwrap();
    let err = failing_start("", &["--config", config.to_str().unwrap()]);
    assert!(err.contains("limits.max_headers"), "{err}");
    std::fs::write(&config, "durability = \"sometimes\"\n").unwrap();
    let err = failing_start("", &["--config", config.to_str().unwrap()]);
    assert!(err.contains("durability"), "{err}");
}

#[test]
fn principals_and_segments_the_log_cannot_hold_are_refused() {
    let dir = temp_dir();
    let config = dir.path().join("c.toml");
    let principal = |id: &str, token: &str| {
        format!("[[principals]]\nid = \"{id}\"\ntoken = \"{token}\"\nrole = \"device\"\n")
    };
    // An id over 128 bytes (one over 255 once wrapped its length byte in the log).
    std::fs::write(
        &config,
        principal(&"p".repeat(300), "token-0123456789abcdef"),
    )
    .unwrap();
    let err = failing_start("", &["--config", config.to_str().unwrap()]);
    assert!(
        err.contains("principals[0].id: must be 1 to 128 bytes"),
        "{err}"
    );
    let twice =
        principal("dup", "token-0123456789abcdef") + &principal("dup", "token-fedcba9876543210");
    std::fs::write(&config, twice).unwrap();
    let err = failing_start("", &["--config", config.to_str().unwrap()]);
    assert!(err.contains("principals[1].id: is already used"), "{err}");
    std::fs::write(&config, "durability = \"sync\"\n").unwrap();
    let err = failing_start("", &["--config", config.to_str().unwrap()]);
    assert!(
        err.contains("principals: the config file lists none"),
        "{err}"
    );
    std::fs::write(&config, "segment_bytes = 1099511627776\n").unwrap();
    let err = failing_start("", &["--config", config.to_str().unwrap()]);
    assert!(
        err.contains("segment_bytes: must be between 65536 and 1073741824"),
        "{err}"
    );
    std::fs::write(
        &config,
        principal("dev\\u0000ice", "token-0123456789abcdef"),
    )
    .unwrap();
    let err = failing_start("", &["--config", config.to_str().unwrap()]);
    assert!(
        err.contains("principals[0].id: must not contain control characters"),
        "{err}"
    );
    let small_budget = "[limits]\nmemory_budget_bytes = 1048576\n\n".to_string()
        + &principal("d", "token-0123456789abcdef");
    std::fs::write(&config, small_budget).unwrap();
    let err = failing_start("", &["--config", config.to_str().unwrap()]);
    assert!(
        err.contains("limits.memory_budget_bytes: must hold one largest request: at least 4276224"),
        "{err}"
    );
}

#[test]
fn unwritable_data_dir_is_a_clear_error() {
    let dir = temp_dir();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let data = file.join("data");
    let err = failing_start(
        "",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--init",
        ],
    );
    assert!(err.contains("cannot create data dir"), "{err}");
}

#[test]
fn cpus_outside_the_affinity_mask_are_refused() {
    let dir = temp_dir();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ];
    let err = failing_start("", &[&args[..], &["--cpus", "4095"]].concat());
    assert!(err.contains("not in this process's affinity mask"), "{err}");
    // taskset narrows the mask to CPU 0: two shards no longer fit.
    let err = failing_start("taskset -c 0", &[&args[..], &["--shards", "2"]].concat());
    assert!(err.contains("only 1 CPUs are available"), "{err}");
}

#[test]
fn too_little_locked_memory_is_a_clear_error() {
    // Root may raise its hard limit, so as root the server runs as an unprivileged user,
    // with the binary and the data dir where that user can reach them whatever the
    // checkout's parents allow. Anyone else cannot raise a hard limit they lowered.
    use std::os::unix::fs::PermissionsExt;
    let open = common::open_temp_dir("epro-memlock-");
    let bin = open.path().join("epro-ingest");
    std::fs::copy(BIN, &bin).unwrap();
    let data = open.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let prefix = if common::is_root() {
        "ulimit -l 4096 && setpriv --reuid 65534 --regid 65534 --clear-groups"
    } else {
        "ulimit -l 4096 &&"
    };
    let err = failing_start_of(
        bin.to_str().unwrap(),
        prefix,
        &[
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        EXIT_UNSUPPORTED,
    );
    assert!(
        err.contains("locked-memory limit (ulimit -l) is 4096 KiB") && err.contains("6144 KiB"),
        "{err}"
    );
}

#[test]
fn shards_share_one_port_and_all_answer() {
    let server = Server::start("", &[]);
    assert_ne!(server.addr.port(), 0);
    assert_eq!(
        server.log().matches("listening on").count(),
        1,
        "{}",
        server.log()
    );
    // The kernel spreads connections over both shards' listeners; all must be served.
    for _ in 0..32 {
        let mut stream = server.connect();
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut stream).unwrap().status, 200);
    }
}

/// The sample config of docs/configuration.md works as written (on any machine: it pins
/// no CPU), with only the address and the data directory overridden for a test.
#[test]
fn the_documented_sample_config_starts() {
    let doc = include_str!("../docs/configuration.md");
    let start = doc
        .find("```toml\nlisten")
        .expect("the sample config in docs/configuration.md")
        + 8;
    let sample = &doc[start..start + doc[start..].find("```").unwrap()];
    let server = Server::start(sample, &[]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
}

#[test]
fn cpu_errors_name_the_config_key_when_the_value_came_from_the_file() {
    let dir = temp_dir();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "cpus = [4095]\n\n[[principals]]\nid = \"d\"\ntoken = \"device-token-0123456789\"\nrole = \"device\"\n").unwrap();
    let data = dir.path().join("data");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let err = failing_start("", &args);
    assert!(err.contains("cpus (config file): CPU 4095"), "{err}");
}

#[test]
fn serve_help_shows_the_defaults_the_log_level_and_where_the_token_goes() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "127.0.0.1:8080",
        "./data",
        "sync",
        "RUST_LOG",
        "admin.token",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle}:\n{help}"
        );
    }
    let out = Command::new(BIN)
        .args(["export", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("data directory"));
}

/// With a low open-file limit, the server says so and fits max_connections to it
/// instead of starting with more connections than it can open (EMFILE under load).
#[test]
fn a_low_open_file_limit_lowers_max_connections_and_says_so() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(
            "ulimit -n 1024 && exec \"$0\" serve --listen 127.0.0.1:0 --shards 2 --init --data-dir \"$1\"",
        )
        .arg(BIN)
        .arg(&data);
    let (mut child, _, log) = common::spawn_and_wait(cmd).expect("server starts");
    let _ = child.kill();
    let _ = child.wait();
    let log = log.lock().unwrap().clone();
    // (1024 - 2 x 32 - 64) / 2 = 448 connections per shard.
    assert!(
        log.contains(
            "open-file limit (ulimit -n) is 1024: limits.max_connections lowered from 10000 to 448"
        ),
        "{log}"
    );
}

/// A data directory that does not exist is created only with `--init`: a mistyped
/// `--data-dir` is one line naming the path and the flag, not an empty store.
#[test]
fn a_missing_data_dir_needs_init() {
    let dir = temp_dir();
    let data = dir.path().join("dtaa");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "1",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let err = failing_start("", &args);
    assert!(
        err.contains(&format!("data dir {} does not exist", data.display()))
            && err.contains("--init"),
        "{err}"
    );
    assert!(!data.exists());
    // --init creates the directory itself, never a mistyped parent.
    let deeper = dir.path().join("nope").join("data");
    let err = failing_start(
        "",
        &[
            "--init",
            "--data-dir",
            deeper.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(err.contains("its parent directory does not exist"), "{err}");
    assert!(!dir.path().join("nope").exists());
    // With --init it starts (Server passes it), and again over what it made.
    let server = Server::start_in(dir, "", &["--shards", "1"]);
    let (status, dir) = server.terminate();
    assert!(status.success());
    let mut cmd = common::serve_cmd("1");
    cmd.arg("--data-dir").arg(dir.path().join("data"));
    let (mut child, _, _) = common::spawn_and_wait(cmd).expect("an existing dir needs no --init");
    let _ = child.kill();
    let _ = child.wait();
}

/// io_uring blocked by a seccomp filter (as Docker's default profile does): one line
/// naming seccomp and the profile to use, no panic or backtrace before it, and the
/// status of a failure a restart cannot mend.
#[test]
fn io_uring_blocked_by_seccomp_is_one_line_naming_it() {
    let dir = temp_dir();
    let wrapper = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/common/seccomp_no_io_uring.py"
    );
    let prefix = format!("RUST_BACKTRACE=1 python3 '{wrapper}'");
    let err = failing_start_of(
        BIN,
        &prefix,
        &[
            "--init",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--data-dir",
        ]
        .iter()
        .copied()
        .chain([dir.path().join("data").to_str().unwrap()])
        .collect::<Vec<_>>(),
        EXIT_UNSUPPORTED,
    );
    assert!(
        err.contains("io_uring cannot be set up: a seccomp filter blocks")
            && err.contains("deploy/seccomp-io_uring.json"),
        "{err}"
    );
    assert!(
        !err.contains("Romulus") && !err.contains("backtrace"),
        "{err}"
    );
}

/// `--listen localhost:PORT` (a host name) is accepted.
#[test]
fn listen_takes_a_host_name() {
    let dir = temp_dir();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--init",
        "--listen",
        "localhost:0",
        "--shards",
        "1",
        "--data-dir",
    ])
    .arg(dir.path().join("data"));
    let (mut child, addr, _) = common::spawn_and_wait(cmd).expect("localhost:0 is accepted");
    assert!(addr.ip().is_loopback(), "{addr}");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    let _ = child.kill();
    let _ = child.wait();
}

/// The default start warns about nothing: an open-file limit a few descriptors short
/// of 2 x 10000 connections (a common hard limit) trims them quietly.
#[test]
fn the_default_start_warns_about_nothing() {
    let dir = temp_dir();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 20000 && exec \"$0\" serve --listen 127.0.0.1:0 --shards 2 --init --data-dir \"$1\"")
        .arg(BIN)
        .arg(dir.path().join("data"));
    let (mut child, _, log) = common::spawn_and_wait(cmd).expect("server starts");
    assert!(common::wait_until(Duration::from_secs(10), || log
        .lock()
        .unwrap()
        .contains("] ready: ")));
    let _ = child.kill();
    let _ = child.wait();
    let log = log.lock().unwrap().clone();
    assert!(log.contains("lowered from 10000 to 9936"), "{log}");
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
}
