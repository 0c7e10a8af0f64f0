//! One server per listen address: a second `serve` on a port a server already listens
//! on (with another data directory) would join its `SO_REUSEPORT` group and take part
//! of its connections. It is refused at start, with one line, whether its address is
//! the same or overlaps (a wildcard against a specific address), and of two started at
//! the same moment exactly one serves; port 0 still works.

mod common;

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{post, report, spawn_and_wait, temp_dir, Server, BIN, DEVICE_CONFIG, DEVICE_TOKEN};

fn serve(listen: &str, dir: &tempfile::TempDir) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--init",
        "--listen",
        listen,
        "--shards",
        "1",
        "--data-dir",
    ])
    .arg(dir.path().join("data"));
    cmd
}

/// A server started here, killed when dropped: a failing assertion leaves none running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asserts that `cmd` exits non-zero by itself, with a line saying `why`.
fn refused(cmd: Command, why: &str) {
    let (mut child, log): (Option<Running>, Arc<Mutex<String>>) = match spawn_and_wait(cmd) {
        Ok((child, _, log)) => (Some(Running(child)), log),
        Err(log) => {
            // It exited before listening: 69, the address is held by another process.
            assert!(
                log.contains(&format!("unix_wait_status({})", 69 << 8)),
                "{log}"
            );
            (None, Arc::new(Mutex::new(log)))
        }
    };
    if let Some(Running(child)) = child.as_mut() {
        let exited = common::wait_until(Duration::from_secs(20), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            // Running kills it as the panic unwinds.
            panic!(
                "a second server started on the address:\n{}",
                log.lock().unwrap()
            );
        }
        // 69: the address is held by another process; a restart cannot help.
        assert_eq!(child.wait().unwrap().code(), Some(69));
    }
    std::thread::sleep(Duration::from_millis(100));
    let log = log.lock().unwrap().clone();
    assert!(log.contains(why), "{log}");
    assert_eq!(
        log.lines().filter(|l| l.contains("ERROR")).count(),
        1,
        "not one line: {log}"
    );
}

#[test]
fn a_second_server_on_the_same_port_is_refused() {
    let first = Server::start(DEVICE_CONFIG, &["--shards", "1"]);
    let port = first.addr.port();
    let other = temp_dir();
    refused(
        serve(&format!("127.0.0.1:{port}"), &other),
        &format!(
            "cannot listen on 127.0.0.1:{port}: another epro-ingest server (pid {}) listens there",
            first.pid()
        ),
    );
    // A wildcard address overlaps the first server's: it would take its connections.
    refused(
        serve(&format!("0.0.0.0:{port}"), &other),
        &format!("another process listens on 127.0.0.1:{port}, which overlaps it"),
    );
    // The first server still has every connection, and port 0 still starts another.
    let second = Server::start(DEVICE_CONFIG, &["--shards", "1"]);
    assert_ne!(second.addr.port(), port);
    let mut stream = first.connect();
    let r = post(&mut stream, "/epro/submit", DEVICE_TOKEN, &report("P-1"));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_specific_address_under_a_wildcard_server_is_refused() {
    let dir = temp_dir();
    let (child, addr, _log) = spawn_and_wait(serve("0.0.0.0:0", &dir)).unwrap();
    let _first = Running(child);
    let port = addr.port();
    refused(
        serve(&format!("127.0.0.1:{port}"), &temp_dir()),
        &format!("another process listens on 0.0.0.0:{port}, which overlaps it"),
    );
}

/// Two servers started at the same moment on one address, several times over: exactly
/// one serves and the other exits 69 with the refusal line. Neither has bound when the
/// other looks for listeners, so only the claim, taken before binding, tells them apart.
#[test]
fn of_two_servers_starting_at_once_on_one_address_one_serves() {
    for round in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let dirs = [temp_dir(), temp_dir()];
        let mut servers: Vec<Racer> = dirs
            .iter()
            .map(|d| Racer::spawn(serve(&listen, d)))
            .collect();
        let settled = common::wait_until(Duration::from_secs(20), || {
            servers.iter_mut().filter_map(Racer::exited).count() == 1
                && servers.iter().any(|s| s.log().contains("] ready: "))
                || servers.iter().all(|s| s.log().contains("listening on "))
        });
        let logs: Vec<String> = servers.iter().map(Racer::log).collect();
        assert!(
            settled,
            "round {round}: not one server serving, one refused: {logs:#?}"
        );
        let Some(loser) = servers.iter_mut().position(|s| s.exited().is_some()) else {
            panic!("round {round}: both servers listen on {listen}: {logs:#?}");
        };
        let winner = 1 - loser;
        // 69: the address is held by another process; a restart cannot help.
        assert_eq!(
            servers[loser].exited(),
            Some(69),
            "round {round}: {logs:#?}"
        );
        let refusal = format!(
            "cannot listen on {listen}: another epro-ingest server (pid {}) listens there",
            servers[winner].child.id()
        );
        // The log reaches the test through a pipe and a reader thread.
        common::wait_until(Duration::from_secs(5), || {
            servers[loser].log().contains(&refusal)
        });
        let log = servers[loser].log();
        assert!(log.contains(&refusal), "round {round}: {log}");
        assert_eq!(
            log.lines().filter(|l| l.contains("ERROR")).count(),
            1,
            "{log}"
        );
        let mut stream = std::net::TcpStream::connect(&listen).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let r = common::get(&mut stream, "/healthz", "");
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        assert_eq!(servers[winner].exited(), None, "round {round}: {logs:#?}");
    }
}

/// A server started without waiting for it, its stderr collected as it comes; killed
/// when dropped.
struct Racer {
    child: Child,
    log: Arc<Mutex<String>>,
    status: Option<i32>,
}

impl Racer {
    fn spawn(mut cmd: Command) -> Racer {
        use std::io::{BufRead, BufReader};
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .env("RUST_LOG", "info");
        let mut child = cmd.spawn().expect("spawn server");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Racer {
            child,
            log,
            status: None,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The exit code once the server has exited (-1 for a signal).
    fn exited(&mut self) -> Option<i32> {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status.code().unwrap_or(-1));
            }
        }
        self.status
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
