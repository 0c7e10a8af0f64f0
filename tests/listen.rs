//! One server per listen address: a second `serve` on a port a server already listens
//! on (with another data directory) would join its `SO_REUSEPORT` group and take part
//! of its connections. It is refused at start, with one line, whether its address is
//! the same or overlaps (a wildcard against a specific address); port 0 still works.

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

/// Asserts that `cmd` exits non-zero by itself, with a line saying `why`.
fn refused(cmd: Command, why: &str) {
    let (mut child, log): (Option<Child>, Arc<Mutex<String>>) = match spawn_and_wait(cmd) {
        Ok((child, _, log)) => (Some(child), log),
        Err(log) => {
            // It exited before listening: 69, the address is held by another process.
            assert!(
                log.contains(&format!("unix_wait_status({})", 69 << 8)),
                "{log}"
            );
            (None, Arc::new(Mutex::new(log)))
        }
    };
    if let Some(child) = child.as_mut() {
        let exited = common::wait_until(Duration::from_secs(20), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
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
    let (mut child, addr, _log) = spawn_and_wait(serve("0.0.0.0:0", &dir)).unwrap();
    let port = addr.port();
    refused(
        serve(&format!("127.0.0.1:{port}"), &temp_dir()),
        &format!("another process listens on 0.0.0.0:{port}, which overlaps it"),
    );
    let _ = child.kill();
    let _ = child.wait();
}
