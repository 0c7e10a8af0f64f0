//! The log on disk: torn tails at every byte, flipped bits, empty and preallocated
//! segments, restarts that resume sequence numbers, and segment rotation under load.
//! Files are real (under target/tmp, on disk), servers are real.

mod common;

use std::path::{Path, PathBuf};

use common::{export, post, report, verify, Server};
use epro_ingest::log::files::list_segments;
use epro_ingest::log::record::{decode, Decoded, HEADER_LEN};
use epro_ingest::log::recover::scan_shard;

/// Starts a 1-shard server, stores `n` reports, stops it gracefully.
fn write_reports(n: usize, config: &str) -> tempfile::TempDir {
    write_reports_then(n, config, Ending::Clean)
}

enum Ending {
    Clean,
    Crash,
}

/// Starts a 1-shard server, stores `n` reports, then stops it gracefully or kills it.
fn write_reports_then(n: usize, config: &str, ending: Ending) -> tempfile::TempDir {
    let server = Server::start(config, &["--shards", "1"]);
    let token = token_of(&server, config);
    let mut stream = server.connect();
    for i in 0..n {
        let r = post(
            &mut stream,
            "/epro/submit",
            &token,
            &report(&format!("P-{i}")),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    match ending {
        Ending::Crash => server.kill(),
        Ending::Clean => {
            let (status, dir) = server.terminate();
            assert!(status.success(), "{status:?}");
            dir
        }
    }
}

fn seq_of(id: &serde_json::Value) -> u64 {
    id.as_str()
        .unwrap()
        .strip_prefix("s0-")
        .unwrap()
        .parse()
        .unwrap()
}

use common::{DEVICE_CONFIG as CONFIG, DEVICE_TOKEN};

fn token_of(server: &Server, config: &str) -> String {
    if config.is_empty() {
        server.admin_token()
    } else {
        DEVICE_TOKEN.to_string()
    }
}

fn only_segment(data: &Path) -> PathBuf {
    let segments = list_segments(&data.join("shard-0")).unwrap();
    assert_eq!(segments.len(), 1);
    segments[0].path.clone()
}

/// Offsets where each record of a segment starts, and where the last one ends.
fn record_offsets(bytes: &[u8]) -> (Vec<usize>, usize) {
    let mut offsets = Vec::new();
    let mut at = HEADER_LEN;
    let mut seq = 1;
    while let Decoded::Record(_, len) = decode(&bytes[at..], Some((0, seq))) {
        offsets.push(at);
        at += len;
        seq += 1;
    }
    (offsets, at)
}

#[test]
fn torn_last_record_at_every_byte_is_cut_and_earlier_records_survive() {
    // A crash (no clean-shutdown mark), then the last write reads as half written.
    let dir = write_reports_then(5, CONFIG, Ending::Crash);
    let data = dir.path().join("data");
    let segment = only_segment(&data);
    let original = std::fs::read(&segment).unwrap();
    let (offsets, end) = record_offsets(&original);
    assert_eq!(offsets.len(), 5);
    let last = offsets[4];
    // A crash can leave any prefix of the last record (the rest reads as zeros).
    for cut in last..end {
        let mut torn = original.clone();
        torn[cut..end].fill(0);
        std::fs::write(&segment, &torn).unwrap();
        let mut seen = 0;
        let scan = scan_shard(&data.join("shard-0"), 0, |_| seen += 1, |_| {})
            .unwrap_or_else(|c| panic!("cut {cut}: {c}"));
        assert_eq!(seen, 4, "cut at {cut}");
        assert_eq!(scan.next_seq, 5);
        // What is left of the record reads as a torn tail, unless it is all zeros (a
        // prefix of the CRC can be): then it is indistinguishable from the end.
        if original[last..cut].iter().any(|&b| b != 0) {
            let torn = scan.torn.expect("torn tail reported");
            assert_eq!(torn.offset as usize, last);
        } else {
            assert!(scan.torn.is_none(), "cut {cut}: zeros reported as torn");
        }
    }
    // A real restart over one torn file: cut, resume at 5, verify clean afterwards.
    let mut torn = original.clone();
    torn[last + 20..end].fill(0);
    std::fs::write(&segment, &torn).unwrap();
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let logged = common::wait_until(std::time::Duration::from_secs(5), || {
        server.log().contains("cut torn tail")
    });
    assert!(logged, "{}", server.log());
    let mut stream = server.connect();
    let r = post(&mut stream, "/epro/submit", DEVICE_TOKEN, &report("P-new"));
    // s0-5 was handed out before the crash: the new record never gets it again.
    let new_id = r.json()["id"].as_str().unwrap().to_string();
    assert!(seq_of(&r.json()["id"]) > 5, "{new_id} reissues an id");
    let (status, dir) = server.terminate();
    assert!(status.success());
    let data = dir.path().join("data");
    let records = export(&data);
    let ids: Vec<_> = records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["s0-1", "s0-2", "s0-3", "s0-4", new_id.as_str()]);
    assert_eq!(records[4]["body"]["patientId"], "P-new");
    let (ok, out) = verify(&data);
    assert!(ok && !out.contains("incomplete tail"), "{out}");
}

#[test]
fn flipped_bit_in_a_middle_record_fails_verify_and_start() {
    let dir = write_reports(5, CONFIG);
    let data = dir.path().join("data");
    let segment = only_segment(&data);
    let mut bytes = std::fs::read(&segment).unwrap();
    let (offsets, _) = record_offsets(&bytes);
    let target = offsets[2] + 40;
    bytes[target] ^= 0x04;
    std::fs::write(&segment, &bytes).unwrap();

    let (ok, out) = verify(&data);
    assert!(!ok, "verify passed a corrupt log: {out}");
    let expected = format!("{} at offset {}", segment.display(), offsets[2]);
    assert!(out.contains("CORRUPT") && out.contains(&expected), "{out}");

    match Server::try_start_in(dir, CONFIG, &["--shards", "1"]) {
        Ok(server) => panic!("started over a corrupt log:\n{}", server.log()),
        Err(log) => assert!(
            log.contains("corrupt log") && log.contains(&expected),
            "{log}"
        ),
    }
}

#[test]
fn empty_and_preallocated_segments_recover() {
    // A segment with only its header (created, nothing written yet): as after a crash
    // right after rotation. Preallocated space is all zeros after the header.
    let dir = common::temp_dir();
    let shard_dir = dir.path().join("data/shard-0");
    std::fs::create_dir_all(&shard_dir).unwrap();
    let mut bytes = epro_ingest::log::record::encode_header(0, 1).to_vec();
    bytes.resize(1 << 20, 0);
    std::fs::write(shard_dir.join("00000000000000000001.seg"), &bytes).unwrap();
    common::write_manifest(&shard_dir, 0);
    let (ok, out) = verify(&dir.path().join("data"));
    assert!(ok, "{out}");
    assert!(out.contains("0 records"), "{out}");
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    let r = post(&mut stream, "/epro/submit", DEVICE_TOKEN, &report("P-1"));
    assert_eq!(r.json()["id"], "s0-1");
    let (_, dir) = server.terminate();
    assert_eq!(export(&dir.path().join("data")).len(), 1);
}

#[test]
fn restart_resumes_sequence_numbers() {
    let dir = write_reports(3, CONFIG);
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    let r = post(
        &mut stream,
        "/epro/submit",
        DEVICE_TOKEN,
        &report("P-after"),
    );
    assert_eq!(
        r.json()["id"],
        "s0-4",
        "a clean restart continues where it ended"
    );
    // After a crash, numbering resumes past every id that may have been handed out.
    let dir = server.kill();
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    let r = post(
        &mut stream,
        "/epro/submit",
        DEVICE_TOKEN,
        &report("P-again"),
    );
    let after_crash = seq_of(&r.json()["id"]);
    assert!(after_crash > 4);
    let (_, dir) = server.terminate();
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    let r = post(&mut stream, "/epro/submit", DEVICE_TOKEN, &report("P-3"));
    assert_eq!(seq_of(&r.json()["id"]), after_crash + 1);
}

#[test]
fn a_crash_loop_does_not_leave_a_segment_of_zeros_per_crash() {
    use std::os::unix::fs::MetadataExt;
    // Each start after a crash skips ids and so starts a new segment (1 MiB here): the
    // one it leaves gives the disk blocks of its unused preallocated space back.
    let config = CONFIG.replace("segment_bytes = 65536", "segment_bytes = 1048576");
    let mut dir = write_reports_then(2, &config, Ending::Crash);
    for round in 0..4 {
        let server = Server::start_in(dir, &config, &["--shards", "1"]);
        let mut stream = server.connect();
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE_TOKEN,
            &report(&format!("R-{round}")),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        dir = server.kill();
    }
    let data = dir.path().join("data");
    let (ok, out) = verify(&data);
    assert!(ok && out.contains("6 records"), "{out}");
    let segments = list_segments(&data.join("shard-0")).unwrap();
    assert_eq!(segments.len(), 5, "one segment per run");
    let used: Vec<(u64, u64)> = segments
        .iter()
        .map(|s| {
            let meta = std::fs::metadata(&s.path).unwrap();
            (meta.len(), meta.blocks() * 512)
        })
        .collect();
    // Every one but the last keeps its size (it reads as before: records, then zeros)
    // but holds on disk little more than the block or two of its records.
    for (segment, &(size, on_disk)) in segments.iter().zip(&used).take(4) {
        assert_eq!(size, 1 << 20, "{}", segment.path.display());
        assert!(on_disk <= 16 << 10, "{}: {used:?}", segment.path.display());
    }
    assert!(
        used[4].1 >= 1 << 20,
        "the live one keeps its preallocation: {used:?}"
    );
    // And the next start reads them as they are.
    let server = Server::start_in(dir, &config, &["--shards", "1"]);
    let (status, dir) = server.terminate();
    assert!(status.success());
    assert_eq!(export(&dir.path().join("data")).len(), 6);
}

#[test]
fn segments_rotate_under_load() {
    let server = Server::start(CONFIG, &[]);
    let token = DEVICE_TOKEN;
    // Many connections, so both shards take writes and batches grow.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                let mut ids = Vec::new();
                for i in 0..150 {
                    let body = report(&format!("P-{t}-{i}-{}", "x".repeat(100)));
                    let r = post(&mut stream, "/epro/submit", token, &body);
                    assert_eq!(r.status, 200);
                    ids.push(r.json()["id"].as_str().unwrap().to_string());
                }
                ids
            })
        })
        .collect();
    // export and verify only read: both work beside the live, writing server.
    let data = server.data_dir();
    for _ in 0..3 {
        let (ok, out) = verify(&data);
        assert!(ok, "verify beside a live server: {out}");
        export(&data);
    }
    let mut acked: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let (status, dir) = server.terminate();
    assert!(status.success());
    assert_eq!(data, dir.path().join("data"));
    let segments: usize = (0..2)
        .map(|s| {
            list_segments(&data.join(format!("shard-{s}")))
                .unwrap()
                .len()
        })
        .sum();
    assert!(
        segments >= 4,
        "only {segments} segments for ~400 KiB of records"
    );
    let mut exported: Vec<String> = export(&data)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    acked.sort();
    exported.sort();
    assert_eq!(acked, exported);
    let (ok, out) = verify(&data);
    assert!(ok, "{out}");
}

/// After the first, segments come from a spare prepared beside the flusher (zeros
/// written over the preallocation). A spare left behind by kill -9 is a `.tmp`: removed
/// at the next start, never read as a segment, and every acknowledged record survives.
#[test]
fn segments_come_from_prepared_spares_and_a_leftover_spare_is_harmless() {
    let server = Server::start(CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    let mut acked = Vec::new();
    for i in 0..1200 {
        let body = report(&format!("P-{i}-{}", "x".repeat(60)));
        let r = post(&mut stream, "/epro/submit", DEVICE_TOKEN, &body);
        assert_eq!(r.status, 200, "{}", r.text());
        acked.push(r.json()["id"].as_str().unwrap().to_string());
    }
    // More writes until the current segment is past half and its successor is ready.
    let shard = server.data_dir().join("shard-0");
    let mut i = 0;
    while !shard.join("spare.seg.tmp").exists() && i < 2000 {
        let body = report(&format!("P-more-{i}"));
        let r = post(&mut stream, "/epro/submit", DEVICE_TOKEN, &body);
        acked.push(r.json()["id"].as_str().unwrap().to_string());
        i += 1;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(common::wait_until(
        std::time::Duration::from_secs(5),
        || { server.log().contains("(prepared ahead)") }
    ));
    let rotations = server.log().matches("new segment").count();
    let prepared = server.log().matches("(prepared ahead)").count();
    assert!(rotations >= 3, "{rotations} segments");
    // Segments after the first come prepared (one may be cut anew if a rotation
    // outruns its spare on a loaded machine).
    assert!(
        prepared >= 1 && prepared * 2 >= rotations,
        "{}",
        server.log()
    );
    let dir = server.kill();
    assert!(dir.path().join("data/shard-0/spare.seg.tmp").exists());
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let data = server.data_dir();
    // Removed at start (a new one is prepared only once writes fill half a segment).
    assert!(!data.join("shard-0/spare.seg.tmp").exists());
    let (status, dir) = server.terminate();
    assert!(status.success());
    let data = dir.path().join("data");
    let mut exported: Vec<String> = export(&data)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    exported.sort();
    acked.sort();
    assert_eq!(exported, acked);
    let (ok, out) = verify(&data);
    assert!(ok, "{out}");
}
