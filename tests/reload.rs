//! SIGHUP reloads the config file's principals, tokens and rate limits on every shard
//! without a restart: under load, a rotated token flips from 200 to 401 and its
//! successor from 401 to 200, and no request fails otherwise or is lost; a file that
//! does not load is refused whole, the principals in force kept; the log names what
//! changed by principal id, never a token.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_stored_once, post, report, Server};

const OLD: &str = "device-token-old-0123456789";
const NEW: &str = "device-token-new-9876543210";

fn config(device_token: &str, extra: &str) -> String {
    format!(
        "segment_bytes = 65536\n\n[[principals]]\nid = \"site-app-001\"\ntoken = \"{device_token}\"\n\
         role = \"device\"\nprojects = [\"*\"]\n{extra}\n[[principals]]\nid = \"admin-1\"\n\
         token = \"admin-token-0123456789\"\nrole = \"admin\"\nprojects = [\"*\"]\n"
    )
}

fn config_path(server: &Server) -> PathBuf {
    server.data_dir().parent().unwrap().join("config.toml")
}

/// Replaces the config file whole (as an editor or config management would) and sends
/// SIGHUP; waits for the log line that ends the reload, `expect`.
fn reload(server: &Server, text: &str, expect: &str) {
    let path = config_path(server);
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, &path).unwrap();
    let before = server.log().matches(expect).count();
    let pid = nix::unistd::Pid::from_raw(server.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let done = common::wait_until(Duration::from_secs(10), || {
        server.log().matches(expect).count() > before
    });
    assert!(done, "no {expect:?} after SIGHUP:\n{}", server.log());
}

fn submit_status(server: &Server, token: &str) -> u16 {
    post(&mut server.connect(), "/epro/submit", token, &report("P-1")).status
}

#[test]
fn a_token_rotated_under_load_flips_and_nothing_else_fails_or_is_lost() {
    let server = Arc::new(Server::start(&config(OLD, ""), &[]));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|c| {
            let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
            std::thread::spawn(move || {
                // Each connection stays on its shard: once that shard applied the reload,
                // the old token is 401 there and the new one 200.
                let mut stream = server.connect();
                let (mut token, mut ids, mut flips) = (OLD, Vec::new(), 0);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let r = post(
                        &mut stream,
                        "/epro/submit",
                        token,
                        &report(&format!("P-{c}-{n}")),
                    );
                    match (r.status, token) {
                        (200, _) => ids.push(r.json()["id"].as_str().unwrap().to_string()),
                        (401, OLD) => {
                            token = NEW;
                            flips += 1;
                        }
                        (status, _) => panic!("{status} with {token}: {}", r.text()),
                    }
                }
                (ids, flips, token)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    reload(&server, &config(NEW, ""), "reloaded ");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = HashSet::new();
    for client in clients {
        let (ids, flips, token) = client.join().expect("a client saw another failure");
        assert_eq!((flips, token), (1, NEW), "every connection flipped once");
        acknowledged.extend(ids);
    }
    assert!(acknowledged.len() > 60, "{}", acknowledged.len());
    // The old token is refused everywhere now, the new one accepted.
    for _ in 0..8 {
        assert_eq!(submit_status(&server, OLD), 401);
        assert_eq!(submit_status(&server, NEW), 200);
    }
    let log = server.log();
    let line = log.lines().find(|l| l.contains("reloaded ")).unwrap();
    assert!(
        line.contains("on all 2 shards")
            && line.contains("changed [site-app-001 (token)]")
            && !log.contains(OLD)
            && !log.contains(NEW),
        "{log}"
    );
    // Every acknowledged record is stored, once.
    let server = Arc::into_inner(server).unwrap();
    let (status, dir) = server.terminate();
    assert!(status.success());
    assert_stored_once(&dir.path().join("data"), &acknowledged);
}

#[test]
fn a_bad_file_is_refused_whole_and_rate_limits_reload_too() {
    let server = Server::start(&config(OLD, ""), &[]);
    // A broken rule (a token too short) and broken TOML: both refused, naming why.
    let short = config("short", "");
    reload(&server, &short, "reload refused");
    assert!(
        server
            .log()
            .contains("principals[0].token: must be at least 16"),
        "{}",
        server.log()
    );
    reload(&server, "[[principals]\nid =", "reload refused");
    assert_eq!(submit_status(&server, OLD), 200, "the old principals stay");
    assert_eq!(submit_status(&server, "short"), 401);
    // A rate limit added by a reload applies: one request a second, no burst.
    let limited = config(OLD, "rate_per_second = 1\nburst = 1\n");
    reload(&server, &limited, "reloaded ");
    assert!(
        server.log().contains("changed [site-app-001 (rate limit)]"),
        "{}",
        server.log()
    );
    let mut stream = server.connect();
    let began = Instant::now();
    let statuses: Vec<u16> = (0..10)
        .map(|i| post(&mut stream, "/epro/submit", OLD, &report(&format!("P-{i}"))).status)
        .collect();
    assert!(began.elapsed() < Duration::from_secs(1));
    assert!(statuses.contains(&429), "{statuses:?}");
    // And a reload that takes it away again lifts it.
    reload(&server, &config(OLD, ""), "reloaded ");
    assert!((0..10).all(|i| {
        post(&mut stream, "/epro/submit", OLD, &report(&format!("Q-{i}"))).status == 200
    }));
}

#[test]
fn a_reload_judges_the_file_with_the_command_lines_flags_as_the_start_did() {
    // `shards = 0` alone is refused; the flag the server started with (`--shards 2`)
    // overrides it, so the file started the server and must reload too.
    let server = Server::start(
        &config(OLD, "").replace("segment_bytes", "shards = 0\nsegment_bytes"),
        &[],
    );
    let next = config(NEW, "").replace("segment_bytes", "shards = 0\nsegment_bytes");
    reload(&server, &next, "reloaded ");
    assert_eq!(submit_status(&server, NEW), 200);
    assert_eq!(submit_status(&server, OLD), 401);
}
