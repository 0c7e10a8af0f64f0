//! The README's quickstart works as written: `scripts/quickstart.sh` holds it, this
//! test runs that script against the real binary (from a directory whose name holds a
//! space, as `.ci/run` does), and the README must show the script's quickstart lines
//! exactly, so neither can drift from the other.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/quickstart.sh");
const README: &str = include_str!("../README.md");
const BEGIN: &str = "# --- quickstart\n";
const END: &str = "# --- end of quickstart\n";

/// The script's lines between its markers.
fn quickstart_lines() -> String {
    let script = std::fs::read_to_string(SCRIPT).expect("read scripts/quickstart.sh");
    let start = script.find(BEGIN).expect("the script's begin marker") + BEGIN.len();
    let len = script[start..].find(END).expect("the script's end marker");
    script[start..start + len].to_string()
}

#[test]
fn the_readme_shows_the_scripts_quickstart_exactly() {
    let lines = quickstart_lines();
    assert!(
        README.contains(&format!("```sh\n{lines}```\n")),
        "README.md's quickstart block differs from the lines between the markers of \
         scripts/quickstart.sh; copy them over:\n{lines}"
    );
}

#[test]
fn the_quickstart_runs_against_the_real_binary() {
    // mktemp -d in the script makes its data directory under TMPDIR.
    let tmp = tempfile::Builder::new()
        .prefix("quick start ")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let mut child = Command::new("bash")
        .arg(SCRIPT)
        .current_dir(tmp.path())
        .env("EPRO_INGEST", common::BIN)
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a hung run is stopped with its server.
        .process_group(0)
        .spawn()
        .expect("run bash scripts/quickstart.sh");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!("scripts/quickstart.sh did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    let mut lines = stdout.lines();
    let answer: serde_json::Value =
        serde_json::from_str(lines.next().expect("the submit's answer")).unwrap();
    assert_eq!(answer["status"], "success", "{stdout}");
    let id = answer["id"].as_str().expect("an id in the answer");
    assert_eq!(
        lines.next(),
        Some(
            r#"{"patientId":"P-000123","projectId":"P001","siteId":"S01","reportData":{"q1":3,"painScore":6}}"#
        ),
        "the record read back by its id: {stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("shards verified"),
        "verify's report: {stdout}"
    );

    // What the script left on disk holds that record under that id, and only it.
    let data = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path().join("data"))
        .find(|p| p.is_dir())
        .expect("the script's data directory");
    let records = common::export(&data);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["id"], id);
    assert_eq!(records[0]["body"]["patientId"], "P-000123");
}
