//! The container pieces: the Dockerfile builds in stages into a small non-root runtime
//! image whose HEALTHCHECK asks /readyz through `epro-ingest probe`; the seccomp
//! profile in `deploy/` parses, allows the io_uring calls and refuses what Docker's
//! default refuses; and the server really runs under that profile (applied here with
//! seccomp(2) through `tests/common/seccomp_profile.py`), and not without io_uring.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{post, report, temp_dir, BIN};

const DOCKERFILE: &str = include_str!("../Dockerfile");
const PROFILE: &str = include_str!("../deploy/seccomp-io_uring.json");
const IO_URING: [&str; 3] = ["io_uring_setup", "io_uring_enter", "io_uring_register"];
const HEADER: &str = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";

fn allowed(profile: &serde_json::Value) -> Vec<String> {
    profile["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|r| r["names"].as_array().unwrap().iter())
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_dockerfile_builds_in_stages_into_a_small_non_root_image_with_a_healthcheck() {
    let lines: Vec<&str> = DOCKERFILE
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let from: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "a build stage and a runtime stage");
    assert!(from[0].ends_with(" AS build"), "{}", from[0]);
    assert!(from[1].contains("distroless/cc"), "{}", from[1]);
    let text = lines.join("\n");
    assert!(text.contains("cargo build --profile dist --locked"));
    assert!(text.contains("COPY --from=build /out/epro-ingest /usr/local/bin/epro-ingest"));
    assert!(text.contains("USER nonroot"));
    assert!(
        text.contains("HEALTHCHECK")
            && text.contains(r#""probe", "--addr", "127.0.0.1:8080", "--path", "/readyz""#),
        "{text}"
    );
    // The run line in the comments uses the profile this test checks.
    assert!(DOCKERFILE.contains("seccomp=deploy/seccomp-io_uring.json"));
    // The arguments of the image's CMD are ones serve takes.
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--listen", "--data-dir"] {
        assert!(help.contains(flag), "{flag}");
    }
}

#[test]
fn the_seccomp_profile_allows_io_uring_and_refuses_what_docker_refuses() {
    let profile: serde_json::Value = serde_json::from_str(PROFILE).expect("profile JSON");
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    let allowed = allowed(&profile);
    for call in IO_URING {
        assert!(allowed.iter().any(|a| a == call), "{call} not allowed");
    }
    for refused in [
        "mount",
        "ptrace",
        "bpf",
        "kexec_load",
        "unshare",
        "setns",
        "keyctl",
    ] {
        assert!(!allowed.iter().any(|a| a == refused), "{refused} allowed");
    }
}

/// Starts `serve` under the seccomp profile `profile`, as a container would run it.
fn serve_under(profile: &Path, data: &Path) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/common/seccomp_profile.py"
    ))
    .arg(profile)
    .arg(HEADER)
    .arg(BIN)
    .args([
        "serve",
        "--init",
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--data-dir",
    ])
    .arg(data);
    cmd
}

#[test]
fn the_server_runs_under_the_profile_and_its_healthcheck_passes() {
    let dir = temp_dir();
    let profile = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/seccomp-io_uring.json"
    ));
    let data = dir.path().join("data");
    let (mut child, addr, log) = common::spawn_and_wait(serve_under(&profile, &data)).unwrap();
    let probe = |addr: String| {
        Command::new(BIN)
            .args(["probe", "--addr", &addr])
            .output()
            .unwrap()
    };
    let ready = common::wait_until(Duration::from_secs(20), || {
        probe(addr.to_string()).status.success()
    });
    assert!(ready, "{}", log.lock().unwrap());
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = post(&mut s, "/epro/submit", &token, &report("P-1"));
    assert_eq!(r.status, 200, "{}", r.text());
    let _ = child.kill();
    let _ = child.wait();
    // The probe fails where nothing answers.
    let out = probe(addr.to_string());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("probe: "));

    // The same profile without the io_uring calls: the start fails, naming seccomp.
    let mut without: serde_json::Value = serde_json::from_str(PROFILE).unwrap();
    for rule in without["syscalls"].as_array_mut().unwrap() {
        let names = rule["names"].as_array_mut().unwrap();
        names.retain(|n| !IO_URING.contains(&n.as_str().unwrap()));
    }
    let blocked = dir.path().join("no-io_uring.json");
    std::fs::write(&blocked, without.to_string()).unwrap();
    let out = serve_under(&blocked, &dir.path().join("data2"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(71), "{err}");
    assert!(
        err.contains("a seccomp filter blocks the io_uring system calls"),
        "{err}"
    );
}
