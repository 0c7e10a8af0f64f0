//! Tamper evidence: the per-shard hash chain and saved heads, tried as an auditor
//! would try them. Records are edited on disk with their CRC recomputed (what a CRC
//! alone cannot catch), whole tails are re-chained, history is cut; and a log of the
//! format before the chain is read and continued. Real servers, real files; the hash
//! is checked against Python's hashlib, not only against itself.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{export, post, project_report, python, verify, Ending, Server, BIN, DEVICE_TOKEN};
use epro_ingest::log::files::list_segments;
use epro_ingest::log::manifest::Manifest;
use epro_ingest::log::record::{
    decode, encode_header_version, hash, Decoded, Hash, Kind, Record, GENESIS, HASH_LEN,
    HEADER_LEN, VERSION,
};

const CONFIG: &str = common::DEVICE_CONFIG;

/// A 1-shard server that stored `n` project reports (site S01), stopped cleanly, or
/// killed when `crash`.
fn with_reports(n: usize, crash: bool) -> tempfile::TempDir {
    let ending = if crash { Ending::Crash } else { Ending::Clean };
    common::stored_reports(CONFIG, n, ending)
}

fn data(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data")
}

fn only_segment(data: &Path) -> PathBuf {
    let segments = list_segments(&data.join("shard-0")).unwrap();
    assert_eq!(segments.len(), 1);
    segments[0].path.clone()
}

/// Each record's (offset, length) in a segment's bytes.
fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut at = HEADER_LEN;
    while let Decoded::Record(_, len) = decode(&bytes[at..], None) {
        found.push((at, len));
        at += len;
    }
    found
}

/// Re-encodes the record at `at` with `edit` applied to its body and `prev` replaced
/// when given: a valid record with a recomputed CRC, the same length.
fn rewrite(bytes: &mut [u8], at: usize, edit: impl Fn(&[u8]) -> Vec<u8>, prev: Option<Hash>) {
    let Decoded::Record(record, len) = decode(&bytes[at..], None) else {
        panic!("no record at {at}")
    };
    let body = edit(record.body);
    let new_prev = prev.or(record.prev.copied());
    let mut out = Vec::new();
    Record {
        body: &body,
        prev: new_prev.as_ref(),
        ..record
    }
    .encode(&mut out)
    .unwrap();
    assert_eq!(out.len(), len, "an edit of the same length");
    bytes[at..at + len].copy_from_slice(&out);
}

fn site_s99(body: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(body)
        .replace("\"S01\"", "\"S99\"")
        .into_bytes()
}

/// `verify` with extra arguments: (success, stdout, stderr).
fn verify_with(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("verify")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Saves `verify --heads` of `data` into a file beside it.
fn save_heads(data: &Path) -> PathBuf {
    let (ok, heads, err) = verify_with(data, &["--heads"]);
    assert!(ok, "{err}");
    let file = data.with_file_name("heads.txt");
    std::fs::write(&file, heads).unwrap();
    file
}

#[test]
fn an_edited_record_with_its_crc_recomputed_breaks_the_chain() {
    let dir = with_reports(5, false);
    let heads = save_heads(&data(&dir));
    let segment = only_segment(&data(&dir));
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = records(&bytes);
    assert_eq!(at.len(), 5);
    rewrite(&mut bytes, at[1].0, site_s99, None);
    std::fs::write(&segment, &bytes).unwrap();
    let (ok, out) = verify(&data(&dir));
    assert!(!ok, "an edit must not verify: {out}");
    assert!(
        out.contains("hash chain broken: record 3") && out.contains(&format!("offset {}", at[2].0)),
        "names the first record whose prev no longer matches, and where: {out}"
    );
    // The saved head lies past the damage: not judged, rather than called cut.
    let (ok, out, _) = verify_with(&data(&dir), &["--against", heads.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("saved head seq 5 not checked") && !out.contains("gone"),
        "{out}"
    );
    // The server refuses to start on it, as on any corruption.
    let start = common::serve_cmd("1")
        .arg("--data-dir")
        .arg(data(&dir))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&start.stderr);
    assert!(!start.status.success(), "{said}");
    assert!(said.contains("hash chain broken"), "{said}");
}

#[test]
fn rewriting_every_later_record_is_caught_by_a_saved_head() {
    let dir = with_reports(5, false);
    let heads = save_heads(&data(&dir));
    let saved = std::fs::read_to_string(&heads).unwrap();
    assert!(saved.starts_with("shard=0 seq=5 sha256="), "{saved}");
    let (ok, out, _) = verify_with(&data(&dir), &["--against", heads.to_str().unwrap()]);
    assert!(ok && out.contains("saved head seq 5 holds"), "{out}");
    assert!(
        out.contains("shard 0: not covered: records after seq 5 and the MANIFEST"),
        "{out}"
    );

    // The attacker edits record 2 and recomputes every later prev and CRC.
    let segment = only_segment(&data(&dir));
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = records(&bytes);
    rewrite(&mut bytes, at[1].0, site_s99, None);
    for i in 2..at.len() {
        let (prev_at, prev_len) = at[i - 1];
        let prev = hash(&bytes[prev_at..prev_at + prev_len]);
        rewrite(&mut bytes, at[i].0, |b| b.to_vec(), Some(prev));
    }
    std::fs::write(&segment, &bytes).unwrap();
    let (ok, out) = verify(&data(&dir));
    assert!(ok, "a fully re-chained log verifies on its own: {out}");
    // ... and says so: a clean result without a saved head covers neither.
    assert!(
        out.contains(
            "not covered: without --against, a tail rewritten and re-chained, a cut tail and \
             a rewritten MANIFEST all verify"
        ),
        "{out}"
    );
    let site = |e: &serde_json::Value| e["body"]["siteId"].clone();
    assert_eq!(site(&export(&data(&dir))[1]), "S99");
    // Only the head kept elsewhere tells.
    let (ok, out, _) = verify_with(&data(&dir), &["--against", heads.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("TAMPERED: record 5 no longer has the saved hash"),
        "{out}"
    );
}

#[test]
fn cutting_history_before_a_saved_head_is_caught() {
    // After a crash nothing marks where the log ended: zeroing the last records reads
    // as a shorter log, and only the saved head tells.
    let dir = with_reports(5, true);
    let heads = save_heads(&data(&dir));
    let segment = only_segment(&data(&dir));
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = records(&bytes);
    let (cut, _) = at[3];
    let (last, last_len) = at[4];
    bytes[cut..last + last_len].fill(0);
    std::fs::write(&segment, &bytes).unwrap();
    let (ok, out) = verify(&data(&dir));
    assert!(ok, "{out}");
    let (ok, out, _) = verify_with(&data(&dir), &["--against", heads.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("TAMPERED: record 5 of the saved head is gone"),
        "{out}"
    );
}

#[test]
fn a_chained_record_received_before_its_predecessor_fails_verify() {
    // After a crash (no clean-stop mark), a record is appended that the chain accepts:
    // the right prev, the next id, its CRC computed; only its time, 45 days earlier
    // than the record before it, gives it away.
    let dir = with_reports(5, true);
    let segment = only_segment(&data(&dir));
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = records(&bytes);
    let (last_at, last_len) = at[4];
    let Decoded::Record(last, _) = decode(&bytes[last_at..], None) else {
        panic!("no record at {last_at}")
    };
    let prev = hash(&bytes[last_at..last_at + last_len]);
    let body = project_report("P-forged");
    let mut forged = Vec::new();
    Record {
        seq: last.seq + 1,
        received_ns: last.received_ns - 45 * 86_400 * 1_000_000_000,
        group_index: 0,
        body: body.as_bytes(),
        prev: Some(&prev),
        ..last
    }
    .encode(&mut forged)
    .unwrap();
    let end = last_at + last_len;
    bytes[end..end + forged.len()].copy_from_slice(&forged);
    std::fs::write(&segment, &bytes).unwrap();
    assert_eq!(
        export(&data(&dir)).len(),
        6,
        "the chain takes the forged record"
    );
    let (ok, out) = verify(&data(&dir));
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "shard 0: TIME GOES BACKWARDS: record 6 (offset {end}) was received at"
        )) && out.contains("3888000.000 s before record 5"),
        "{out}"
    );
}

#[test]
fn heads_and_exported_hashes_are_the_sha256_of_each_records_bytes() {
    let dir = with_reports(4, false);
    let exported = export(&data(&dir));
    let bytes = std::fs::read(only_segment(&data(&dir))).unwrap();
    let at = records(&bytes);
    // Python's hashlib over the raw record bytes, one per line in hex.
    let raw: Vec<u8> = at
        .iter()
        .flat_map(|&(o, l)| {
            let mut line = hex(&bytes[o..o + l]);
            line.push('\n');
            line.into_bytes()
        })
        .collect();
    let out = python(
        "import sys, hashlib\n\
         for l in sys.stdin.read().split():\n    print(hashlib.sha256(bytes.fromhex(l)).hexdigest())",
        &raw,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let ours: Vec<&str> = exported
        .iter()
        .map(|e| e["sha256"].as_str().unwrap())
        .collect();
    assert_eq!(ours, theirs);
    // Each record's last 32 bytes are the previous record's hash; the first's zeros.
    for (i, &(o, l)) in at.iter().enumerate() {
        let prev = hex(&bytes[o + l - HASH_LEN..o + l]);
        let want = if i == 0 {
            "0".repeat(64)
        } else {
            theirs[i - 1].clone()
        };
        assert_eq!(prev, want, "record {}", i + 1);
    }
    let (_, heads, _) = verify_with(&data(&dir), &["--heads"]);
    assert_eq!(heads, format!("shard=0 seq=4 sha256={}\n", theirs[3]));
}

/// A data directory whose shard 0 holds one segment, first record 1: `bytes`, padded
/// with zeros to 64 KiB as preallocated space is.
fn one_segment_log(bytes: &[u8]) -> tempfile::TempDir {
    let dir = common::temp_dir();
    let shard = dir.path().join("data/shard-0");
    std::fs::create_dir_all(&shard).unwrap();
    let mut segment = bytes.to_vec();
    segment.resize(65536, 0);
    std::fs::write(shard.join("00000000000000000001.seg"), &segment).unwrap();
    common::write_manifest(&shard, 0);
    dir
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_log_from_before_the_chain_is_read_and_continued_chained() {
    an_older_log_is_read_and_continued_in_a_new_segment(1);
}

#[test]
fn a_log_from_before_keyed_fhir_records_is_read_and_continued_in_a_new_segment() {
    // Version 2 is chained but has no kind 6: an older binary would take one for
    // damage, so a version 2 segment with records is never continued.
    an_older_log_is_read_and_continued_in_a_new_segment(2);
}

/// A segment of `version` with three records: read as it is, never written to again;
/// the next record starts a segment of the current version that chains onto it.
fn an_older_log_is_read_and_continued_in_a_new_segment(version: u16) {
    let mut old = encode_header_version(0, 1, version).to_vec();
    let mut prev = GENESIS;
    for seq in 1..=3 {
        let body = project_report(&format!("OLD-{seq}"));
        let at = old.len();
        Record {
            kind: Kind::Report,
            shard: 0,
            seq,
            received_ns: 1_700_000_000_000_000_000,
            group_index: 0,
            principal: "site-app-001",
            key: None,
            body: body.as_bytes(),
            prev: (version > 1).then_some(&prev),
        }
        .encode(&mut old)
        .unwrap();
        prev = hash(&old[at..]);
    }
    let last_old = prev;
    let dir = one_segment_log(&old);
    old.resize(65536, 0);

    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    let r = post(
        &mut stream,
        "/epro/submit",
        DEVICE_TOKEN,
        &project_report("NEW"),
    );
    assert_eq!(r.json()["id"], "s0-4", "{}", r.text());
    let (status, dir) = server.terminate();
    assert!(status.success());
    let (ok, out) = verify(&data(&dir));
    assert!(ok, "{out}");
    // The old segment reads as it was; the new record went into a segment of the
    // current version whose first record follows the last old one.
    let segments = list_segments(&data(&dir).join("shard-0")).unwrap();
    assert_eq!(segments.len(), 2);
    let written = std::fs::read(&segments[0].path).unwrap();
    assert_eq!(written, old);
    let new = std::fs::read(&segments[1].path).unwrap();
    assert_eq!(u16::from_le_bytes([new[8], new[9]]), VERSION);
    let (o, l) = records(&new)[0];
    assert_eq!(&new[o + l - HASH_LEN..o + l], &last_old);
    let exported = export(&data(&dir));
    assert_eq!(exported.len(), 4);
    assert_eq!(exported[2]["sha256"], hex(&last_old));

    // An edit of the last old record is caught by the first new one.
    let mut edited = written.clone();
    let (at, _) = records(&edited)[2];
    rewrite(&mut edited, at, site_s99, None);
    std::fs::write(&segments[0].path, &edited).unwrap();
    let (ok, out) = verify(&data(&dir));
    assert!(!ok && out.contains("hash chain broken: record 4"), "{out}");
}

#[test]
fn a_keyed_fhir_record_in_a_version_2_segment_is_an_edit() {
    // Kind 6 came with version 3: in a version 2 segment, even with its CRC and the
    // chain intact, it was not written by this server.
    let mut v2 = encode_header_version(0, 1, 2).to_vec();
    Record {
        kind: Kind::Fhir,
        shard: 0,
        seq: 1,
        received_ns: 1_700_000_000_000_000_000,
        group_index: 0,
        principal: "site-app-001",
        key: Some("key-1"),
        body: b"{}",
        prev: Some(&GENESIS),
    }
    .encode(&mut v2)
    .unwrap();
    let dir = one_segment_log(&v2);
    let (ok, out) = verify(&data(&dir));
    assert!(
        !ok && out.contains("record kind or chaining disagrees with its segment's version"),
        "{out}"
    );
}

#[test]
fn an_empty_segment_from_before_the_chain_is_continued_as_a_chained_one() {
    // Header only (a crash right after rotation, or a shard never written to): the
    // next record would start a segment of the same name, so this one is upgraded.
    let dir = one_segment_log(&encode_header_version(0, 1, 1));
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    for patient in ["A", "B"] {
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE_TOKEN,
            &project_report(patient),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let (status, dir) = server.terminate();
    assert!(status.success());
    let (ok, out) = verify(&data(&dir));
    assert!(ok && out.contains("1 segments, 2 records"), "{out}");
    let bytes = std::fs::read(only_segment(&data(&dir))).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), VERSION);
    assert_eq!(export(&data(&dir)).len(), 2);
    // Listed once: not replaced by a new segment of the same name.
    let manifest = Manifest::read(&data(&dir).join("shard-0"), 0)
        .unwrap()
        .unwrap();
    let listed: Vec<u64> = manifest.segments.iter().map(|s| s.first_seq).collect();
    assert_eq!(listed, [1]);
}

#[test]
fn the_server_serves_its_durable_heads_as_a_heads_file() {
    use common::{get, ADMIN_TOKEN, DEVICE_ADMIN_CONFIG};
    let server = Server::start(DEVICE_ADMIN_CONFIG, &["--shards", "2"]);
    // Several connections, so both shards store records.
    for i in 0..12 {
        let mut stream = server.connect();
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE_TOKEN,
            &project_report(&format!("H-{i}")),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut stream = server.connect();
    assert_eq!(
        get(&mut stream, "/api/v1/log/heads", DEVICE_TOKEN).status,
        403
    );
    let r = get(&mut stream, "/api/v1/log/heads", ADMIN_TOKEN);
    assert_eq!(r.status, 200, "{}", r.text());
    let served = r.text();
    assert_eq!(served.lines().count(), 2, "{served}");
    let (status, dir) = server.terminate();
    assert!(status.success());
    // Every acknowledged record was durable: the served heads are the log's heads.
    let (ok, heads, err) = verify_with(&data(&dir), &["--heads"]);
    assert!(ok, "{err}");
    assert_eq!(served, heads);
    let file = data(&dir).with_file_name("served-heads.txt");
    std::fs::write(&file, &served).unwrap();
    let (ok, out, _) = verify_with(&data(&dir), &["--against", file.to_str().unwrap()]);
    assert!(ok && out.matches("holds").count() == 2, "{out}");
}

/// A record stored before a rule was added (here: an identifier with a lone surrogate
/// escape, refused since) is still counted by the read APIs after a restart, and its
/// key is still remembered: recovery holds stored bodies only to the rules they were
/// stored under. Made by editing the last record (its CRC recomputed; nothing chains
/// onto it).
#[test]
fn a_record_stored_under_older_rules_is_still_counted_and_keyed() {
    const ADMIN: &str = common::ADMIN_TOKEN;
    const STAFF: &str = "staff-p1-token-0123456789";
    let config = &format!(
        "{}\n[[principals]]\nid = \"staff-p1\"\ntoken = \"{STAFF}\"\nrole = \"staff\"\nprojects = [\"P001\"]\n",
        common::DEVICE_ADMIN_CONFIG
    );
    let body = r#"{"patientId":"P-000000","reportData":"x","projectId":"P001","siteId":"S01","submissionId":"old-1"}"#;
    let server = Server::start(config, &["--shards", "1"]);
    let r = post(&mut server.connect(), "/epro/submit", DEVICE_TOKEN, body);
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let (status, dir) = server.terminate();
    assert!(status.success());
    let segment = only_segment(&data(&dir));
    let mut bytes = std::fs::read(&segment).unwrap();
    let (at, _) = *records(&bytes).last().unwrap();
    let edit = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace(r#""P-000000""#, r#""ab\ud801""#)
            .into_bytes()
    };
    rewrite(&mut bytes, at, edit, None);
    std::fs::write(&segment, &bytes).unwrap();

    let server = Server::start_in(dir, config, &["--shards", "1"]);
    let mut s = server.connect();
    let subjects = common::get(&mut s, "/api/v1/projects/P001/sites/S01/subjects", ADMIN);
    assert_eq!(subjects.status, 200, "{}", subjects.text());
    assert_eq!(
        subjects.json()["subjects"].as_array().map(Vec::len),
        Some(1),
        "{}",
        subjects.text()
    );
    // The key is remembered: another body under it is refused, not stored anew.
    let other = body.replace(r#""reportData":"x""#, r#""reportData":"y""#);
    let r = post(&mut s, "/epro/submit", DEVICE_TOKEN, &other);
    assert_eq!(r.status, 422, "{}", r.text());
    let summary = common::get(&mut s, "/api/v1/projects/P001/reports/summary", ADMIN).json();
    assert_eq!(summary["reports"], 1, "{summary}");
    // Read back by the project's staff: authorized by the project the index counts.
    let record = common::get(&mut s, &format!("/api/v1/records/{id}"), STAFF);
    assert_eq!(record.status, 200, "{}", record.text());
    assert_eq!(record.body, edit(body.as_bytes()));
}
