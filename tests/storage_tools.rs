//! The offline tools on damaged and wrong directories: `verify` lists every problem in
//! every shard, `export` keeps going past a damaged shard, `export --salvage` keeps
//! every record that still verifies, an unreadable file is not called corrupt, strays
//! are refused, and `serve` removes only the temporary files it makes.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{post, report, temp_dir, Server, BIN, DEVICE_CONFIG as CONFIG, DEVICE_TOKEN};
use epro_ingest::log::files::list_segments;
use epro_ingest::log::record::{decode, Decoded, HEADER_LEN};

fn run(args: &[&str], data: &Path) -> Output {
    common::run_cli(args, data)
}

fn ids(stdout: &[u8]) -> BTreeSet<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// A stopped 2-shard server's directory with reports in both shards.
fn two_shards() -> tempfile::TempDir {
    two_shards_in(temp_dir())
}

/// As [`two_shards`], over the given directory.
fn two_shards_in(dir: tempfile::TempDir) -> tempfile::TempDir {
    let server = Server::start_in(dir, CONFIG, &[]);
    let mut seen = BTreeSet::new();
    let mut n = 0;
    // Connections spread over the shards by the kernel: go on until both hold 20.
    while (0..2).any(|s| {
        seen.iter()
            .filter(|id: &&String| id.starts_with(&format!("s{s}-")))
            .count()
            < 20
    }) {
        let mut stream = server.connect();
        for _ in 0..5 {
            let r = post(
                &mut stream,
                "/epro/submit",
                DEVICE_TOKEN,
                &report(&format!("P-{n}")),
            );
            n += 1;
            seen.insert(r.json()["id"].as_str().unwrap().to_string());
        }
        assert!(n < 5000, "connections never reached both shards");
    }
    let (status, dir) = server.terminate();
    assert!(status.success());
    dir
}

/// Flips one byte inside each of records `indexes` of shard 0's first segment;
/// returns their offsets.
fn damage_records(data: &Path, indexes: &[usize]) -> Vec<usize> {
    let segment = &list_segments(&data.join("shard-0")).unwrap()[0].path;
    let mut bytes = std::fs::read(segment).unwrap();
    let mut offsets = Vec::new();
    let mut at = HEADER_LEN;
    while let Decoded::Record(_, len) = decode(&bytes[at..], None) {
        offsets.push(at);
        at += len;
    }
    let chosen: Vec<usize> = indexes.iter().map(|&i| offsets[i]).collect();
    for &at in &chosen {
        bytes[at + 40] ^= 0x10;
    }
    std::fs::write(segment, &bytes).unwrap();
    chosen
}

#[test]
fn verify_lists_every_problem_and_export_goes_on_past_a_damaged_shard() {
    let dir = two_shards();
    let data = dir.path().join("data");
    let all = ids(&run(&["export"], &data).stdout);
    let damaged = damage_records(&data, &[3, 10]);

    let out = run(&["verify"], &data);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    for &offset in &damaged {
        assert!(
            text.contains(&format!("skipped bytes {offset}..")),
            "offset {offset} not listed:\n{text}"
        );
    }
    assert!(
        text.contains("shard 1: ") && !text.contains("shard 1: CORRUPT"),
        "{text}"
    );

    // Plain export: shard 0 up to the damage, shard 1 whole, and a failure naming shard 0.
    let out = run(&["export"], &data);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shards [0] are damaged"));
    let exported = ids(&out.stdout);
    let shard1: BTreeSet<_> = all
        .iter()
        .filter(|id| id.starts_with("s1-"))
        .cloned()
        .collect();
    assert!(exported.is_superset(&shard1), "shard 1 was abandoned");
    assert!(exported.contains("s0-3") && !exported.contains("s0-4"));

    // Salvage: everything but the two damaged records, each skipped range reported.
    let out = run(&["export", "--salvage"], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let salvaged = ids(&out.stdout);
    let lost: Vec<_> = all.difference(&salvaged).cloned().collect();
    assert_eq!(lost, ["s0-11", "s0-4"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("skipped bytes").count(), 2, "{stderr}");

    // Retire the damaged log: the server starts, and shard 0 never reuses an old id.
    let out = run(&["retire-shard", "--shard", "0"], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let retired = std::fs::read_dir(&data)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("retired-shard-0-")
        })
        .count();
    assert_eq!(retired, 1);
    let old_max = all
        .iter()
        .filter_map(|id| id.strip_prefix("s0-"))
        .map(|seq| seq.parse::<u64>().unwrap())
        .max()
        .unwrap();
    let server = Server::start_in(dir, CONFIG, &[]);
    let mut n = 0;
    let new_seq = loop {
        let mut stream = server.connect();
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE_TOKEN,
            &report(&format!("P-new-{n}")),
        );
        n += 1;
        if let Some(seq) = r.json()["id"].as_str().unwrap().strip_prefix("s0-") {
            break seq.parse::<u64>().unwrap();
        }
        assert!(n < 1000, "no connection reached shard 0");
    };
    assert!(
        new_seq > old_max,
        "s0-{new_seq} reuses an id of the retired log (up to {old_max})"
    );
}

#[test]
fn an_unreadable_segment_is_reported_as_unreadable_not_corrupt() {
    // Root reads every file, so as root `verify` runs as an unprivileged user, and the
    // data lives where that user can reach it whatever the checkout's parents allow.
    let as_root = common::is_root();
    let dir = if as_root {
        two_shards_in(common::open_temp_dir("epro-verify-"))
    } else {
        two_shards()
    };
    let data = dir.path().join("data");
    // Readable to others except one segment, as after a restore with the wrong owner.
    for d in [data.as_path(), &data.join("shard-0"), &data.join("shard-1")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for s in 0..2 {
        for seg in list_segments(&data.join(format!("shard-{s}"))).unwrap() {
            std::fs::set_permissions(&seg.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        for file in [format!("shard-{s}/MANIFEST"), format!("reserved-shard-{s}")] {
            std::fs::set_permissions(data.join(file), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
    }
    let secret = &list_segments(&data.join("shard-0")).unwrap()[0].path;
    let out = if as_root {
        std::fs::set_permissions(secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        // The binary copied where that user can run it.
        let bin = dir.path().join("epro-ingest");
        std::fs::copy(BIN, &bin).unwrap();
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(&bin)
            .args(["verify", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    } else {
        std::fs::set_permissions(secret, std::fs::Permissions::from_mode(0o000)).unwrap();
        run(&["verify"], &data)
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains(&format!(
            "cannot read {}: Permission denied",
            secret.display()
        )) && !text.contains("CORRUPT"),
        "{text}"
    );
}

#[test]
fn wrong_and_stray_directories_are_refused_with_a_hint() {
    let dir = two_shards();
    let data = dir.path().join("data");
    let out = run(&["verify"], &data.join("shard-0"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("it is a shard directory"),
        "{err}"
    );
    let empty = temp_dir();
    let out = run(&["verify"], empty.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is it the data directory"),
        "{err}"
    );

    // A copied shard directory would double (or hide) records: refused everywhere.
    let copy = data.join("shard-01");
    std::fs::create_dir(&copy).unwrap();
    for args in [&["verify"][..], &["export"][..]] {
        let out = run(args, &data);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("shard-01: not a shard directory"),
            "{args:?}: {err}"
        );
    }
    match Server::try_start_in(dir, CONFIG, &[]) {
        Ok(server) => panic!("served beside a stray shard directory:\n{}", server.log()),
        Err(log) => assert!(log.contains("shard-01: not a shard directory"), "{log}"),
    }
}

#[test]
fn a_shard_directory_holding_another_shards_log_is_an_error() {
    let dir = two_shards();
    let data = dir.path().join("data");
    // Swapped by hand (a restore into the wrong place): each holds the other's log.
    std::fs::rename(data.join("shard-0"), data.join("swap")).unwrap();
    std::fs::rename(data.join("shard-1"), data.join("shard-0")).unwrap();
    std::fs::rename(data.join("swap"), data.join("shard-1")).unwrap();
    let out = run(&["verify"], &data);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("shard 0: CORRUPT") && text.contains("another shard"),
        "{text}"
    );
    let out = run(&["export"], &data);
    assert!(!out.status.success() && out.stdout.is_empty());
}

#[test]
fn serve_removes_only_the_temporary_files_it_creates() {
    let dir = two_shards();
    let shard = dir.path().join("data/shard-0");
    let ours = shard.join("00000000000000000099.seg.tmp");
    let theirs = [shard.join("notes.seg.tmp"), shard.join("backup.tmp")];
    std::fs::write(&ours, b"interrupted creation").unwrap();
    for path in &theirs {
        std::fs::write(path, b"an operator's file").unwrap();
    }
    let server = Server::start_in(dir, CONFIG, &[]);
    assert!(
        !ours.exists(),
        "an unfinished segment creation was left behind"
    );
    for path in &theirs {
        assert!(path.exists(), "{} was deleted", path.display());
    }
    drop(server);
}

/// Runs `args` with stderr on a pseudo-terminal, as a person at a terminal would;
/// returns what appeared on it and whether the command succeeded.
fn run_on_terminal(args: &[&str], data: &Path) -> (String, bool) {
    use std::io::Read;
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(pty.slave))
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Reads end with EIO once the child, the last holder of the terminal, exits.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let ok = child.wait().unwrap().success();
    (String::from_utf8_lossy(&seen).into_owned(), ok)
}

#[test]
fn verify_and_export_show_progress_on_a_terminal_and_nothing_in_a_pipe() {
    let dir = two_shards();
    let data = dir.path().join("data");
    for command in ["verify", "export"] {
        let (terminal, ok) = run_on_terminal(&[command], &data);
        assert!(ok, "{terminal}");
        assert!(
            terminal.contains(&format!("{command} ["))
                && terminal.contains("128.00 KiB/128.00 KiB"),
            "no progress bar for {command} on a terminal: {terminal:?}"
        );
        let piped = run(&[command], &data);
        assert!(piped.status.success());
        let stderr = String::from_utf8_lossy(&piped.stderr);
        assert!(
            !stderr.contains(&format!("{command} [")) && !stderr.contains('\r'),
            "progress output in a pipe for {command}: {stderr:?}"
        );
    }
}
