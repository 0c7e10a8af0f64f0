//! An id once given is never given to another record, whatever happens to the log's
//! own metadata: a missing or damaged `MANIFEST`, a lost last segment, a removed shard
//! directory, a `retire-shard` killed or failing at any step. Each test stores reports
//! through the real server, keeps the ids the client got, damages the real files, and
//! runs the real binary.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{post, report, Server, DEVICE_CONFIG as CONFIG, DEVICE_TOKEN};
use epro_ingest::log::files::list_segments;
use epro_ingest::log::manifest::Manifest;

/// A stopped 1-shard server's directory holding `n` reports (several 64 KiB
/// segments), and the sequence numbers its client was given.
fn acked_log(n: usize) -> (tempfile::TempDir, BTreeSet<u64>) {
    let server = Server::start(CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    let mut acked = BTreeSet::new();
    for i in 0..n {
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE_TOKEN,
            &report(&format!("P-{i}")),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        acked.insert(seq_of(r.json()["id"].as_str().unwrap()));
    }
    let (status, dir) = server.terminate();
    assert!(status.success());
    (dir, acked)
}

fn seq_of(id: &str) -> u64 {
    id.strip_prefix("s0-").unwrap().parse().unwrap()
}

fn data(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Starts the server over `dir` and stores `n` reports: the sequence numbers given.
fn new_ids(dir: tempfile::TempDir, n: usize) -> BTreeSet<u64> {
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    (0..n)
        .map(|i| {
            let r = post(
                &mut stream,
                "/epro/submit",
                DEVICE_TOKEN,
                &report(&format!("P-new-{i}")),
            );
            seq_of(r.json()["id"].as_str().unwrap())
        })
        .collect()
}

/// Asserts that the server refuses `dir`, with a line that says `why`.
fn serve_refuses(dir: tempfile::TempDir, why: &str) -> tempfile::TempDir {
    let data = data(&dir);
    let mut cmd = common::serve_cmd("1");
    cmd.arg("--data-dir").arg(&data);
    match common::spawn_and_wait(cmd) {
        Ok((mut child, _, log)) => {
            // Recovery may still refuse after listening: wait for the exit.
            let exited = common::wait_until(std::time::Duration::from_secs(20), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            let log = log.lock().unwrap().clone();
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
                panic!("served:\n{log}");
            }
            assert!(!child.wait().unwrap().success(), "{log}");
            assert!(log.contains(why), "{log}");
        }
        Err(log) => assert!(log.contains(why), "{log}"),
    }
    dir
}

fn segment_names(shard: &Path) -> Vec<PathBuf> {
    list_segments(shard)
        .unwrap()
        .into_iter()
        .map(|s| PathBuf::from(s.path.file_name().unwrap()))
        .collect()
}

/// The table's row: segments but no MANIFEST, and the last segment gone too.
fn without_manifest_and_last_segment() -> (tempfile::TempDir, u64) {
    let (dir, acked) = acked_log(900);
    let shard = data(&dir).join("shard-0");
    let segments = list_segments(&shard).unwrap();
    assert!(segments.len() >= 3, "{} segments", segments.len());
    std::fs::remove_file(shard.join("MANIFEST")).unwrap();
    std::fs::remove_file(&segments.last().unwrap().path).unwrap();
    (dir, *acked.last().unwrap())
}

#[test]
fn segments_without_a_manifest_are_damage_and_retiring_skips_every_acked_id() {
    let (dir, max) = without_manifest_and_last_segment();
    let dir = serve_refuses(dir, "shard-0 has no MANIFEST");
    let out = common::run_cli(&["verify"], &data(&dir));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("shard-0/MANIFEST"), "{}", text(&out));

    let out = common::run_cli(&["retire-shard", "--shard", "0"], &data(&dir));
    assert!(out.status.success(), "{}", text(&out));
    let new = new_ids(dir, 20);
    // The copy of the reservation knows exactly where the log ended (a clean stop).
    assert_eq!(new.first(), Some(&(max + 1)), "acknowledged up to {max}");
}

/// As above in a data directory written before the reservation's copy existed: the
/// MANIFEST's absence alone is damage, and `retire-shard`, knowing no reservation,
/// starts a whole reservation block past the records that remain.
#[test]
fn without_any_reservation_retiring_starts_a_block_past_the_records() {
    let (dir, max) = without_manifest_and_last_segment();
    std::fs::remove_file(data(&dir).join("reserved-shard-0")).unwrap();
    let dir = serve_refuses(dir, "shard-0/MANIFEST at offset 0: missing");
    let out = common::run_cli(&["verify"], &data(&dir));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("shard-0/MANIFEST"), "{}", text(&out));

    let out = common::run_cli(&["retire-shard", "--shard", "0"], &data(&dir));
    assert!(out.status.success(), "{}", text(&out));
    let new = new_ids(dir, 20);
    assert!(
        new.iter().all(|&seq| seq > max),
        "ids {new:?} reissued (acknowledged up to {max})"
    );
}

#[test]
fn a_removed_shard_directory_is_damage_not_a_fresh_start() {
    let (dir, acked) = acked_log(300);
    std::fs::remove_dir_all(data(&dir).join("shard-0")).unwrap();

    let dir = serve_refuses(dir, "shard-0 is gone, but");
    for tool in ["verify", "export"] {
        let out = common::run_cli(&[tool], &data(&dir));
        assert!(!out.status.success(), "{tool}: {}", text(&out));
        assert!(text(&out).contains("reserved-shard-0"), "{}", text(&out));
    }

    let out = common::run_cli(&["retire-shard", "--shard", "0"], &data(&dir));
    assert!(out.status.success(), "{}", text(&out));
    let max = *acked.last().unwrap();
    let new = new_ids(dir, 20);
    assert!(
        new.iter().all(|&seq| seq > max),
        "ids {new:?} reissued (acknowledged up to {max})"
    );
}

/// A copy of `template`'s directory, in a new temp dir.
fn copy_of(template: &Path) -> tempfile::TempDir {
    let dir = common::temp_dir();
    let status = Command::new("cp")
        .arg("-a")
        .arg(template.join("data"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn retired_dirs(data: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("retired-shard-0-")
        })
        .collect();
    dirs.sort();
    dirs
}

/// `retire-shard` over a log whose MANIFEST has a flipped byte, killed (or failing as
/// on a full disk) at each of its steps: the data directory is then in the old state
/// (the damaged log in place) or the new one (the old log moved aside whole, a new
/// log reserving past it), never in between; and once retired, the next `serve` never
/// gives an acknowledged id again.
#[test]
fn retire_shard_leaves_the_old_state_or_the_new_at_every_step() {
    let (template, acked) = acked_log(900);
    let max = *acked.last().unwrap();
    let shard = data(&template).join("shard-0");
    let manifest = shard.join("MANIFEST");
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&manifest, &bytes).unwrap();
    let old_segments = segment_names(&shard);
    let dir = serve_refuses(template, "manifest checksum mismatch");

    for mode in ["crash", "fail"] {
        for step in 1..=5 {
            let case = format!("{mode}:{step}");
            let copy = copy_of(dir.path());
            let data = data(&copy);
            let out = Command::new(common::BIN)
                .args(["retire-shard", "--shard", "0", "--data-dir"])
                .arg(&data)
                .env("EPRO_TEST_RETIRE_FAULT", &case)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{case}: {}", text(&out));
            let now = data.join("shard-0");
            let retired = retired_dirs(&data);
            let with_records: Vec<_> = retired
                .iter()
                .filter(|d| !segment_names(d).is_empty())
                .collect();
            let old = segment_names(&now) == old_segments
                && std::fs::read(now.join("MANIFEST")).unwrap() == bytes
                && with_records.is_empty();
            let new = segment_names(&now).is_empty()
                && Manifest::read(&now, 0)
                    .unwrap()
                    .is_some_and(|m| m.reserved_seq > max)
                && with_records.len() == 1
                && segment_names(with_records[0]) == old_segments;
            assert!(
                old || new,
                "{case}: neither the old state nor the new: shard-0 holds {:?}, retired {retired:?}",
                segment_names(&now)
            );
            if mode == "fail" && step < 5 {
                assert!(old && retired.is_empty(), "{case}: left {retired:?}");
            }
            if old {
                let out = common::run_cli(&["retire-shard", "--shard", "0"], &data);
                assert!(out.status.success(), "{case}: {}", text(&out));
            }
            let new = new_ids(copy, 5);
            assert!(
                new.iter().all(|&seq| seq > max),
                "{case}: ids {new:?} reissued (acknowledged up to {max})"
            );
        }
    }
}

/// Offsets of the records of a segment file.
fn record_offsets(segment: &Path) -> Vec<usize> {
    use epro_ingest::log::record::{decode, Decoded, HEADER_LEN};
    let bytes = std::fs::read(segment).unwrap();
    let mut offsets = Vec::new();
    let mut at = HEADER_LEN;
    while let Decoded::Record(_, len) = decode(&bytes[at..], None) {
        offsets.push(at);
        at += len;
    }
    offsets
}

/// The contiguous ranges of `ids`, written as the tools write lost ids.
fn ranges(ids: &BTreeSet<u64>) -> Vec<String> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &id in ids {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == id => *last = id,
            _ => out.push((id, id)),
        }
    }
    out.iter()
        .map(|&(a, b)| match a == b {
            true => format!("s0-{a} (1 id)"),
            false => format!("s0-{a}..s0-{b} ({} ids)", b - a + 1),
        })
        .collect()
}

/// The ranges a tool reported on `text`'s `LOST ids` lines.
fn reported(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split("LOST ids ").nth(1))
        .map(|r| r.split(": record").next().unwrap().to_string())
        .collect()
}

/// A flipped byte in one record, a segment in the middle cut short between two
/// records, and the last segment cut short inside one: `export --salvage` and `verify` name exactly the
/// ids the client was given that are gone.
#[test]
fn salvage_and_verify_name_the_ids_that_damage_took() {
    let (dir, acked) = acked_log(900);
    let data = data(&dir);
    let segments = list_segments(&data.join("shard-0")).unwrap();
    assert!(segments.len() >= 3, "{} segments", segments.len());
    let first = &segments[0].path;
    let mut bytes = std::fs::read(first).unwrap();
    bytes[record_offsets(first)[10] + 40] ^= 0x10;
    std::fs::write(first, &bytes).unwrap();
    // The middle one exactly between two records, the last one inside a record.
    let cuts = [
        (&segments[1].path, 20, 0),
        (&segments.last().unwrap().path, 5, 7),
    ];
    for (segment, record, into) in cuts {
        let cut = record_offsets(segment)[record] + into;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(segment)
            .unwrap();
        file.set_len(cut as u64).unwrap();
    }

    let out = common::run_cli(&["export", "--salvage"], &data);
    assert!(out.status.success(), "{}", text(&out));
    let kept: BTreeSet<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            seq_of(v["id"].as_str().unwrap())
        })
        .collect();
    let lost: BTreeSet<u64> = acked.difference(&kept).copied().collect();
    let expected = ranges(&lost);
    assert_eq!(expected.len(), 3, "{expected:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(reported(&stderr), expected, "{stderr}");

    let out = common::run_cli(&["verify"], &data);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(reported(&stdout), expected, "{stdout}");
}

/// A segment the MANIFEST lists is gone: its ids are named from the segments around it.
#[test]
fn the_ids_of_a_missing_segment_are_named() {
    let (dir, acked) = acked_log(900);
    let data = data(&dir);
    let segments = list_segments(&data.join("shard-0")).unwrap();
    assert!(segments.len() >= 3, "{} segments", segments.len());
    std::fs::remove_file(&segments[1].path).unwrap();
    let out = common::run_cli(&["export", "--salvage"], &data);
    assert!(out.status.success(), "{}", text(&out));
    let kept: BTreeSet<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            seq_of(v["id"].as_str().unwrap())
        })
        .collect();
    let lost: BTreeSet<u64> = acked.difference(&kept).copied().collect();
    assert_eq!(lost.first(), Some(&segments[1].first_seq));
    let expected = ranges(&lost);
    assert_eq!(reported(&String::from_utf8_lossy(&out.stderr)), expected);
    let out = common::run_cli(&["verify"], &data);
    assert_eq!(reported(&String::from_utf8_lossy(&out.stdout)), expected);
}

/// A retired log is evidence too: with the new log's MANIFEST and the reservation's
/// copy both gone, the shard still starts past every id of the log it retired.
#[test]
fn a_retired_log_keeps_its_ids_from_being_given_again() {
    let (dir, acked) = acked_log(300);
    let out = common::run_cli(&["retire-shard", "--shard", "0"], &data(&dir));
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_file(data(&dir).join("shard-0/MANIFEST")).unwrap();
    std::fs::remove_file(data(&dir).join("reserved-shard-0")).unwrap();
    let max = *acked.last().unwrap();
    let new = new_ids(dir, 20);
    assert!(
        new.iter().all(|&seq| seq > max),
        "ids {new:?} reissued (acknowledged up to {max})"
    );
}
