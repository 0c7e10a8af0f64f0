//! What an acknowledgement promises, checked where operators break it: a second server
//! on the same directory, damage after a clean stop, truncated and missing segments, a
//! torn write whose first page reads as zeros, file modes, and bodies whose nesting
//! the index and the live path must agree on.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{export, get, post, project_report, verify, Server};
use epro_ingest::log::files::list_segments;
use epro_ingest::log::record::{decode, Decoded, HEADER_LEN};

use common::{Ending, ADMIN_TOKEN as ADMIN, DEVICE_ADMIN_CONFIG as CONFIG, DEVICE_TOKEN as DEVICE};

/// A 1-shard server with `n` reports, stopped cleanly or killed.
fn with_reports(n: usize, clean: bool) -> tempfile::TempDir {
    let ending = if clean { Ending::Clean } else { Ending::Crash };
    common::stored_reports(CONFIG, n, ending)
}

fn segments(data: &Path) -> Vec<PathBuf> {
    list_segments(&data.join("shard-0"))
        .unwrap()
        .into_iter()
        .map(|s| s.path)
        .collect()
}

/// A 1-shard data directory with five reports (stopped cleanly or killed): its last
/// segment, that segment's bytes, where each record starts and where the last ends.
fn five_reports(clean: bool) -> (tempfile::TempDir, PathBuf, Vec<u8>, Vec<usize>, usize) {
    let dir = with_reports(5, clean);
    let segment = segments(&dir.path().join("data")).pop().unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    let (offsets, end) = record_offsets(&bytes);
    (dir, segment, bytes, offsets, end)
}

/// Offsets where each record of a segment starts, and where the last one ends.
fn record_offsets(bytes: &[u8]) -> (Vec<usize>, usize) {
    let mut offsets = Vec::new();
    let mut at = HEADER_LEN;
    while let Decoded::Record(_, len) = decode(&bytes[at..], None) {
        offsets.push(at);
        at += len;
    }
    (offsets, at)
}

/// Runs `cmd`, expecting it to exit with status `exit` on its own within 20 s; returns
/// its stderr.
fn refused(mut cmd: Command, exit: i32) -> String {
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let ended = common::wait_until(std::time::Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(ended, "still serving instead of refusing:\n{log}");
    assert_eq!(out.status.code(), Some(exit), "{log}");
    log
}

/// Runs `serve` over `dir`'s data, expecting it to refuse.
fn refused_start(dir: &Path) -> String {
    std::fs::write(dir.join("config.toml"), CONFIG).unwrap();
    let mut cmd = common::serve_cmd("1");
    cmd.arg("--config")
        .arg(dir.join("config.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"));
    // 65 (EX_DATAERR): damage a restart cannot mend (RestartPreventExitStatus=).
    refused(cmd, 65)
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused_naming_the_first() {
    let server = Server::start(CONFIG, &[]);
    let data = server.data_dir();
    let config = data.parent().unwrap().join("config.toml");
    let mut cmd = common::serve_cmd("2");
    cmd.arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data);
    // 69 (EX_UNAVAILABLE): held by another process; no restart loop.
    let err = refused(cmd, 69);
    assert!(
        err.contains("in use by another epro-ingest server")
            && err.contains(&format!("pid {}", server.pid())),
        "{err}"
    );
    // The first server is unharmed, and the offline readers work beside it.
    let mut stream = server.connect();
    assert_eq!(
        post(&mut stream, "/epro/submit", DEVICE, &project_report("P-1")).status,
        200
    );
    let (ok, out) = verify(&data);
    assert!(ok, "{out}");
    assert_eq!(export(&data).len(), 1);
}

#[test]
fn after_a_clean_stop_damage_in_the_last_group_is_corruption_not_a_torn_tail() {
    let (dir, segment, mut bytes, offsets, _) = five_reports(true);
    let data = dir.path().join("data");
    bytes[offsets[4]] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();

    let (ok, out) = verify(&data);
    assert!(!ok && out.contains("after a clean shutdown"), "{out}");
    let log = refused_start(dir.path());
    assert!(
        log.contains("after a clean shutdown") && !log.contains("cut torn tail"),
        "{log}"
    );
    // Nothing was cut: the damaged bytes are still there for whoever investigates.
    assert_eq!(std::fs::read(&segment).unwrap(), bytes);
}

#[test]
fn a_truncated_or_missing_segment_is_detected() {
    // 1400 reports of ~120 bytes: three segments of 64 KiB.
    let dir = with_reports(1400, true);
    let data = dir.path().join("data");
    let all = segments(&data);
    assert!(all.len() >= 3, "{all:?}");
    let (first, last) = (all[0].clone(), all[all.len() - 1].clone());
    let original = |p: &Path| std::fs::read(p).unwrap();
    let (first_bytes, last_bytes) = (original(&first), original(&last));

    // The last segment cut short (as a copy that stopped, or a truncate).
    std::fs::write(&last, &last_bytes[..last_bytes.len() / 2]).unwrap();
    let (ok, out) = verify(&data);
    assert!(!ok && out.contains("truncated"), "{out}");
    std::fs::write(&last, &last_bytes).unwrap();

    for gone in [&last, &first] {
        std::fs::remove_file(gone).unwrap();
        let (ok, out) = verify(&data);
        assert!(!ok && out.contains("missing"), "{}: {out}", gone.display());
    }
    std::fs::write(&first, &first_bytes).unwrap();
    std::fs::write(&last, &last_bytes).unwrap();
    let (ok, out) = verify(&data);
    assert!(ok, "restored: {out}");
    std::fs::remove_file(&first).unwrap();
    let log = refused_start(dir.path());
    assert!(log.contains("missing"), "{log}");
}

#[test]
fn a_torn_group_whose_first_bytes_read_as_zeros_is_cut_byte_exactly() {
    let (dir, segment, mut bytes, offsets, end) = five_reports(false);
    let data = dir.path().join("data");
    let last = offsets[4];
    // The write of the last group reached the disk except its first bytes.
    bytes[last..last + 8].fill(0);
    std::fs::write(&segment, &bytes).unwrap();

    let (ok, out) = verify(&data);
    assert!(
        ok && out.contains(&format!(
            "incomplete tail at {} offset {last}",
            segment.display()
        )),
        "{out}"
    );
    // The record's own last bytes (its `prev` hash) may be zeros: nothing tells those
    // from the preallocated zeros after it, so the cut ends at the last non-zero byte.
    let end = last + bytes[last..end].iter().rposition(|&b| b != 0).unwrap() + 1;
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let cut = format!("offset {last}..{end}");
    let logged = common::wait_until(std::time::Duration::from_secs(5), || {
        server.log().contains(&cut)
    });
    assert!(logged, "{}", server.log());
    // Zeroed, like the rest of the segment after it (not continued after a crash).
    let after = std::fs::read(&segment).unwrap();
    assert!(
        after[last..].iter().all(|&b| b == 0),
        "torn bytes not zeroed"
    );
    assert_eq!(&after[..last], &bytes[..last]);
    let copy = PathBuf::from(format!("{}.torn-{last}", segment.display()));
    assert_eq!(std::fs::read(&copy).unwrap(), &bytes[last..end]);

    let mut stream = server.connect();
    assert_eq!(
        post(
            &mut stream,
            "/epro/submit",
            DEVICE,
            &project_report("P-new")
        )
        .status,
        200
    );
    let (_, dir) = server.terminate();
    let patients: Vec<String> = export(&dir.path().join("data"))
        .iter()
        .map(|r| r["body"]["patientId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(patients, ["P-0", "P-1", "P-2", "P-3", "P-new"]);
}

#[test]
fn records_in_a_segment_the_manifest_does_not_list_are_corruption() {
    // A crash, then a run that writes into a new segment (ids skipped), then killed.
    let dir = with_reports(3, false);
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    let r = post(
        &mut stream,
        "/epro/submit",
        DEVICE,
        &project_report("P-late"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let dir = server.kill();
    let data = dir.path().join("data");
    assert_eq!(segments(&data).len(), 2);
    let (ok, out) = verify(&data);
    assert!(ok, "{out}");
    // The manifest loses the second segment (a segment copied in looks the same).
    let shard = data.join("shard-0");
    let mut manifest = epro_ingest::log::manifest::Manifest::read(&shard, 0)
        .unwrap()
        .unwrap();
    manifest.segments.pop();
    manifest.write(&shard).unwrap();
    let (ok, out) = verify(&data);
    assert!(!ok, "{out}");
    assert!(
        out.contains("records in a segment the manifest does not list"),
        "{out}"
    );
    let said = refused_start(dir.path());
    assert!(said.contains("does not list"), "{said}");
}

#[test]
fn patient_data_is_readable_by_its_owner_only() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    assert_eq!(
        post(&mut stream, "/epro/submit", DEVICE, &project_report("P-1")).status,
        200
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("shard-0")), 0o700);
    assert_eq!(mode(&data.join("LOCK")), 0o600);
    assert_eq!(mode(&data.join("shard-0/MANIFEST")), 0o600);
    for segment in segments(&data) {
        assert_eq!(mode(&segment), 0o600, "{}", segment.display());
    }
}

/// `{"patientId":..,"projectId":"P001","reportData":{"a":{"a":...}}}` with the body
/// object at level 1, so the deepest object is at `depth`.
fn nested(patient: &str, depth: usize) -> String {
    let inner = depth - 1;
    format!(
        r#"{{"patientId":"{patient}","projectId":"P001","reportData":{}"x"{}}}"#,
        r#"{"a":"#.repeat(inner),
        "}".repeat(inner)
    )
}

#[test]
fn nesting_is_limited_and_reads_agree_before_and_after_a_restart() {
    let server = Server::start(CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    let r = post(&mut stream, "/epro/submit", DEVICE, &nested("P-deep", 200));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error(),
        "body nests arrays and objects deeper than 64 levels"
    );
    let r = post(&mut stream, "/epro/submit", DEVICE, &nested("P-ok", 64));
    assert_eq!(r.status, 200, "{}", r.text());
    let summary = "/api/v1/projects/P001/reports/summary";
    let before = get(&mut stream, summary, ADMIN).json();
    assert_eq!(before["reports"], 1);
    let (_, dir) = server.terminate();
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    assert_eq!(
        get(&mut stream, summary, ADMIN).json()["reports"],
        before["reports"]
    );
    assert!(!server.log().contains("not counted"), "{}", server.log());
}
