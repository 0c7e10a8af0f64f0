//! `epro-ingest ship` into a real PostgreSQL: every record exactly once, the cursor
//! exact, across kill -9 of the shipper and a restart of PostgreSQL; one row per key
//! across nodes with every other copy kept as a duplicate; and SQL views that answer
//! like the read APIs.

mod common;
#[path = "common/faultfs.rs"]
mod faultfs;
#[path = "common/pg.rs"]
mod pg;
#[path = "common/shipper.rs"]
#[allow(dead_code)]
mod shipper;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    export, get, post, wait_until, Server, ADMIN_TOKEN as ADMIN, BIN,
    DEVICE_ADMIN_CONFIG as CONFIG, DEVICE_TOKEN as DEVICE,
};
use pg::Postgres;
use shipper::{count, ship_cmd, ship_once};

fn report(patient: &str, project: Option<&str>, site: &str, key: Option<&str>) -> String {
    let project = project.map_or(String::new(), |p| format!(r#""projectId":"{p}","#));
    let key = key.map_or(String::new(), |k| format!(r#","submissionId":"{k}""#));
    format!(r#"{{"patientId":"{patient}",{project}"siteId":"{site}","reportData":"ok"{key}}}"#)
}

/// Submits `n` reports spread over patients, sites and projects (some without one),
/// a few tags, over several connections (both shards).
fn fill(server: &Server, n: usize, key_prefix: Option<&str>) {
    for i in 0..n {
        let mut stream = server.connect();
        let project = match i % 3 {
            0 => Some("P001"),
            1 => Some("P002"),
            _ => None,
        };
        let key = key_prefix.map(|p| format!("{p}-{i}"));
        let body = report(
            &format!("pat-{}", i % 7),
            project,
            &format!("S0{}", i % 2),
            key.as_deref(),
        );
        let r = post(&mut stream, "/epro/submit", DEVICE, &body);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for patient in ["pat-1", "pat-2"] {
        let mut stream = server.connect();
        let tag =
            format!(r#"{{"projectId":"P001","patientId":"{patient}","tagName":"high-risk"}}"#);
        assert_eq!(
            post(&mut stream, "/api/v1/tags/add", ADMIN, &tag).status,
            200
        );
    }
}

/// Every record was counted into the cursors exactly once.
fn assert_cursor_counted(pg: &Postgres, total: i64) {
    assert_eq!(
        count(pg, "SELECT sum(shipped)::bigint FROM epro_ship_cursor"),
        total
    );
}

/// Reports with submissionIds `k-<i>` for `keys`.
fn submit_keys(server: &Server, keys: std::ops::Range<usize>) {
    for i in keys {
        let mut stream = server.connect();
        let key = format!("k-{i}");
        let body = report(&format!("pat-{i}"), Some("P001"), "S01", Some(&key));
        assert_eq!(post(&mut stream, "/epro/submit", DEVICE, &body).status, 200);
    }
}

#[test]
fn ship_once_stores_every_record_and_the_views_answer_like_the_read_apis() {
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &[]);
    fill(&server, 60, None);
    let data = server.data_dir();
    // Beside the running server.
    let out = ship_once(&data, &pg, "n1");
    let exported = export(&data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(" records behind, last shipped record received "),
        "{stderr}"
    );
    let done = format!("ship: done: {} records shipped", exported.len());
    assert!(stderr.contains(&done), "{stderr}");
    let mut client = pg.client();
    let rows = client
        .query(
            "SELECT id, body_raw, kind FROM epro_records WHERE node = 'n1'",
            &[],
        )
        .unwrap();
    let in_pg: BTreeMap<String, Vec<u8>> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, Vec<u8>>(1)))
        .collect();
    assert_eq!(in_pg.len(), exported.len());
    let ids: BTreeSet<String> = exported
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(in_pg.keys().cloned().collect::<BTreeSet<_>>(), ids);
    // Bodies byte for byte, as the logs hold them.
    for shard in 0..2u16 {
        let dir = data.join(format!("shard-{shard}"));
        epro_ingest::log::recover::scan_shard(
            &dir,
            shard,
            |r| {
                assert_eq!(
                    in_pg[&format!("s{shard}-{}", r.seq)],
                    r.body,
                    "s{shard}-{}",
                    r.seq
                )
            },
            |_| {},
        )
        .unwrap();
    }
    // Each row carries its record's hash in the chain, as export gives it; and the
    // newest row of each shard is a head that `verify --against` accepts: PostgreSQL,
    // off the machine, keeps heads as it ships.
    let hashes: BTreeMap<String, String> = client
        .query(
            "SELECT id, encode(sha256, 'hex') FROM epro_records WHERE node = 'n1'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for record in &exported {
        let id = record["id"].as_str().unwrap();
        assert_eq!(hashes[id], record["sha256"].as_str().unwrap(), "{id}");
    }
    let heads: String = client
        .query(
            "SELECT DISTINCT ON (shard) format('shard=%s seq=%s sha256=%s', shard, seq, \
             encode(sha256, 'hex')) FROM epro_records WHERE node = 'n1' AND sha256 IS NOT NULL \
             ORDER BY shard, seq DESC",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0) + "\n")
        .collect();
    let heads_file = data.with_file_name("heads-from-pg.txt");
    std::fs::write(&heads_file, &heads).unwrap();
    let verified = Command::new(BIN)
        .args(["verify", "--data-dir"])
        .arg(&data)
        .arg("--against")
        .arg(&heads_file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{heads}{said}");
    assert_eq!(said.matches("holds").count(), 2, "{said}");
    // The cursor is one past each shard's last record.
    for row in client
        .query(
            "SELECT shard, next_seq, shipped FROM epro_ship_cursor WHERE node = 'n1'",
            &[],
        )
        .unwrap()
    {
        let (shard, next, shipped): (i32, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let last = exported
            .iter()
            .filter(|r| r["shard"] == shard)
            .map(|r| r["seq"].as_i64().unwrap())
            .max()
            .unwrap();
        assert_eq!(next, last + 1);
        assert_eq!(
            shipped,
            exported.iter().filter(|r| r["shard"] == shard).count() as i64
        );
    }

    // The views give the read APIs' answers.
    let mut stream = server.connect();
    for project in ["P001", "P002", "-"] {
        let api = get(
            &mut stream,
            &format!("/api/v1/projects/{project}/reports/summary"),
            ADMIN,
        )
        .json();
        let row = client
            .query_one(
                "SELECT reports, subjects FROM epro_summary WHERE project_id = $1",
                &[&project],
            )
            .unwrap();
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, i64>(1)),
            (
                api["reports"].as_i64().unwrap(),
                api["subjects"].as_i64().unwrap()
            ),
            "{project}"
        );
        for site in ["S00", "S01"] {
            let sites = &api["sites"][site];
            let row = client
                .query_one(
                    "SELECT reports, subjects FROM epro_site_summary WHERE project_id = $1 AND site_id = $2",
                    &[&project, &site],
                )
                .unwrap();
            assert_eq!(row.get::<_, i64>(0), sites["reports"].as_i64().unwrap());
            assert_eq!(row.get::<_, i64>(1), sites["subjects"].as_i64().unwrap());
            let api = get(
                &mut stream,
                &format!("/api/v1/projects/{project}/sites/{site}/subjects"),
                ADMIN,
            )
            .json();
            let from_api: BTreeSet<(String, i64, Vec<String>)> = api["subjects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let tags = s["tags"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_string())
                        .collect();
                    (
                        s["patientId"].as_str().unwrap().to_string(),
                        s["reports"].as_i64().unwrap(),
                        tags,
                    )
                })
                .collect();
            let from_view: BTreeSet<(String, i64, Vec<String>)> = client
                .query(
                    "SELECT patient_id, reports, tags FROM epro_subjects WHERE project_id = $1 AND site_id = $2",
                    &[&project, &site],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            assert_eq!(from_view, from_api, "{project}/{site}");
        }
    }
    // Shipping again ships nothing new.
    ship_once(&data, &pg, "n1");
    assert_eq!(
        count(&pg, "SELECT count(*) FROM epro_records"),
        exported.len() as i64
    );
}

#[test]
fn kill_9_of_the_shipper_mid_batch_neither_loses_nor_duplicates() {
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &[]);
    fill(&server, 600, None);
    let data = server.data_dir();
    let total = export(&data).len() as i64;
    // The schema first (a shipper of an empty directory makes it): a kill before the
    // migration commits would leave nothing to count.
    let empty = common::temp_dir();
    ship_once(empty.path(), &pg, "schema");
    // Each run is killed as soon as the database shows it committed a batch, while
    // the next batch is on its way: a kill that depends on a sleep instead can come
    // after a fast run has already shipped everything.
    let mut interrupted = 0;
    for _ in 0..8 {
        let shipped = count(&pg, "SELECT count(*) FROM epro_records");
        if shipped == total {
            break;
        }
        let mut child: Child = ship_cmd(&data, &pg, "n1", &["--batch", "3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while count(&pg, "SELECT count(*) FROM epro_records") == shipped
            && child.try_wait().unwrap().is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if count(&pg, "SELECT count(*) FROM epro_records") < total {
            interrupted += 1;
        }
    }
    assert!(
        interrupted >= 4,
        "only {interrupted} kills came before the shipper finished"
    );
    ship_once(&data, &pg, "n1");
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), total);
    assert_eq!(
        count(&pg, "SELECT count(DISTINCT id) FROM epro_records"),
        total
    );
    assert_cursor_counted(&pg, total);
}

#[test]
fn two_nodes_with_overlapping_keys_keep_one_row_per_key_and_every_copy() {
    let pg = Postgres::start();
    let a = Server::start(CONFIG, &[]);
    let b = Server::start(CONFIG, &[]);
    submit_keys(&a, 0..10);
    submit_keys(&b, 5..15);
    ship_once(&a.data_dir(), &pg, "a");
    ship_once(&b.data_dir(), &pg, "b");
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), 15);
    assert_eq!(
        count(
            &pg,
            "SELECT count(DISTINCT submission_id) FROM epro_records"
        ),
        15
    );
    // Node b's copies of k-5..k-9 are kept, pointing at node a's rows.
    let mut client = pg.client();
    let dups = client
        .query(
            "SELECT d.submission_id, d.node, d.kept_node, r.id FROM epro_record_duplicates d
             JOIN epro_records r ON (r.node, r.shard, r.seq) = (d.kept_node, d.kept_shard, d.kept_seq)
             ORDER BY 1",
            &[],
        )
        .unwrap();
    let keys: Vec<String> = dups.iter().map(|r| r.get(0)).collect();
    assert_eq!(keys, ["k-5", "k-6", "k-7", "k-8", "k-9"]);
    assert!(dups
        .iter()
        .all(|r| r.get::<_, String>(1) == "b" && r.get::<_, String>(2) == "a"));
}

#[test]
fn a_follower_rides_out_a_postgres_restart_and_stops_cleanly_on_sigterm() {
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &[]);
    let data = server.data_dir();
    let mut follower = ship_cmd(&data, &pg, "n1", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    fill(&server, 30, None);
    let shipped = |pg: &Postgres| {
        postgres::Client::connect(&pg.conninfo, postgres::NoTls)
            .ok()
            .and_then(|mut c| c.query_one("SELECT count(*) FROM epro_records", &[]).ok())
            .map_or(-1, |r| r.get::<_, i64>(0))
    };
    let total = export(&data).len() as i64;
    assert!(wait_until(Duration::from_secs(20), || shipped(&pg) == total));
    pg.restart();
    fill(&server, 30, None);
    let total = export(&data).len() as i64;
    let caught_up = wait_until(Duration::from_secs(30), || shipped(&pg) == total);
    let pid = nix::unistd::Pid::from_raw(follower.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let status = follower.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(follower.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        caught_up,
        "the follower did not catch up after the restart:\n{stderr}"
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("lost PostgreSQL") || stderr.contains("cannot reach PostgreSQL"),
        "{stderr}"
    );
    assert!(stderr.contains("ship: done: "), "{stderr}");
    assert_cursor_counted(&pg, total);
}

#[test]
fn a_corrupt_record_stops_ship_with_its_file_and_offset_after_what_came_before() {
    use epro_ingest::log::record::{decode, Decoded, HEADER_LEN};
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &["--shards", "1"]);
    fill(&server, 20, None);
    let (status, dir) = server.terminate();
    assert!(status.success());
    let data = dir.path().join("data");
    let segment = epro_ingest::log::files::list_segments(&data.join("shard-0"))
        .unwrap()
        .remove(0)
        .path;
    // Flip a byte in the body of the 10th record: acknowledged groups follow it.
    let mut bytes = std::fs::read(&segment).unwrap();
    let mut at = HEADER_LEN;
    for _ in 0..9 {
        match decode(&bytes[at..], None) {
            Decoded::Record(_, len) => at += len,
            other => panic!("{other:?}"),
        }
    }
    let Decoded::Record(_, len) = decode(&bytes[at..], None) else {
        panic!("no 10th record")
    };
    bytes[at + len - 3] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();

    let out = ship_cmd(&data, &pg, "n1", &["--once"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let place = format!("{} at offset {at}: ", segment.display());
    assert!(
        stderr.contains("shipped up to the damage, stopping"),
        "{stderr}"
    );
    assert!(stderr.contains(&place), "{stderr}");
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), 9);
    assert_eq!(count(&pg, "SELECT max(seq) FROM epro_records"), 9);
}

#[test]
fn a_log_rewritten_behind_the_shipper_stops_it() {
    use epro_ingest::log::record::{decode, Decoded, Record, HEADER_LEN};
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &["--shards", "1"]);
    fill(&server, 10, None);
    // Killed: no clean-shutdown mark tells where the log ended.
    let dir = server.kill();
    let data = dir.path().join("data");
    ship_once(&data, &pg, "n1");
    // Rewrite the last record (its patient pat-N -> pat+N, same length) with its CRC
    // recomputed: no record follows it, so the chain alone cannot tell.
    let segment = epro_ingest::log::files::list_segments(&data.join("shard-0"))
        .unwrap()
        .remove(0)
        .path;
    let mut bytes = std::fs::read(&segment).unwrap();
    let (mut at, mut last) = (HEADER_LEN, HEADER_LEN);
    while let Decoded::Record(_, len) = decode(&bytes[at..], None) {
        last = at;
        at += len;
    }
    let Decoded::Record(record, len) = decode(&bytes[last..], None) else {
        panic!("no record")
    };
    let body = String::from_utf8_lossy(record.body).replace("\"pat-", "\"pat+");
    assert_ne!(body.as_bytes(), record.body);
    let seq = record.seq;
    let prev = *record.prev.unwrap();
    let mut out = Vec::new();
    Record {
        body: body.as_bytes(),
        prev: Some(&prev),
        ..record
    }
    .encode(&mut out)
    .unwrap();
    assert_eq!(out.len(), len);
    let original = bytes.clone();
    bytes[last..last + len].copy_from_slice(&out);
    std::fs::write(&segment, &bytes).unwrap();
    let (ok, said) = common::verify(&data);
    assert!(
        ok,
        "the chain alone does not see an edit of the last record: {said}"
    );
    // The shipper reads its last shipped record again and finds it changed.
    let out = ship_cmd(&data, &pg, "n1", &["--once"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("record {seq} is not what was shipped")),
        "{stderr}"
    );
    // Cutting it instead (zeros, as if never written) reads as a shorter log, which
    // verify accepts after a crash; the shipper knows it had it.
    let mut cut = original;
    cut[last..last + len].fill(0);
    std::fs::write(&segment, &cut).unwrap();
    let (ok, said) = common::verify(&data);
    assert!(ok, "{said}");
    let out = ship_cmd(&data, &pg, "n1", &["--once"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "record {seq} was shipped but is no longer in the log"
        )),
        "{stderr}"
    );
}

#[test]
fn a_record_the_disk_could_not_sync_is_not_shipped() {
    use common::{project_report, read_response, submit_request};
    use faultfs::{data_on_faultfs, Cut, Mount};
    use std::io::Write;
    let pg = Postgres::start();
    let dir = common::temp_dir();
    let (disk, mount) = data_on_faultfs(dir.path());
    let (mnt, data) = (dir.path().join("mnt"), dir.path().join("data"));
    let mut server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    let mut stream = server.connect();
    for i in 0..3 {
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE,
            &project_report(&format!("P-{i}")),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Shipped while the disk syncs (the data directory gets its node id).
    ship_once(&data, &pg, "n1");
    // The next record reaches the file, not stable storage: its sync fails, it is never
    // acknowledged and the server ends. The shipper still reads it.
    disk.lock().unwrap().failing_sync = true;
    stream
        .write_all(&submit_request(&project_report("P-lost")))
        .unwrap();
    assert!(read_response(&mut stream).is_none());
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(75)
    );
    let out = ship_cmd(&data, &pg, "n1", &["--once"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("is not shipped"), "{stderr}");
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), 3);
    // The power goes: the record that was never synced is gone, and PostgreSQL never
    // had it. With a disk that syncs again, what survived ships.
    drop(mount);
    disk.lock().unwrap().power_cut(Cut::DropAll, 1);
    disk.lock().unwrap().failing_sync = false;
    let mount = Mount::new(&disk, &mnt).expect("mount again");
    ship_once(&data, &pg, "n1");
    let exported = export(&data);
    let patients: Vec<&str> = exported
        .iter()
        .map(|r| r["body"]["patientId"].as_str().unwrap())
        .collect();
    assert_eq!(patients, ["P-0", "P-1", "P-2"]);
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), 3);
    // Unmounted before the server's directory is removed.
    drop(mount);
    drop(server);
}

#[test]
fn a_database_of_schema_version_1_is_migrated_and_shipping_goes_on() {
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &["--shards", "1"]);
    fill(&server, 6, None);
    let data = server.data_dir();
    ship_once(&data, &pg, "n1");
    // Back to version 1, as a database shipped into before rows had hashes.
    pg.client()
        .batch_execute(
            "ALTER TABLE epro_records DROP COLUMN sha256, DROP COLUMN refused;
             ALTER TABLE epro_record_duplicates DROP COLUMN sha256, DROP COLUMN refused;
             ALTER TABLE epro_ship_cursor DROP COLUMN node_id;
             DELETE FROM epro_schema_version WHERE version >= 2;",
        )
        .unwrap();
    let before = count(&pg, "SELECT count(*) FROM epro_records");
    fill(&server, 6, None);
    ship_once(&data, &pg, "n1");
    let total = export(&data).len() as i64;
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), total);
    assert_eq!(
        count(&pg, "SELECT max(version)::bigint FROM epro_schema_version"),
        epro_ingest::ship::schema::VERSION
    );
    // Rows from before have no hash; every new one has its record's.
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM epro_records WHERE sha256 IS NULL"
        ),
        before
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM epro_records WHERE sha256 IS NOT NULL"
        ),
        total - before
    );
    // A pass whose last shipped row has a hash checks it; the next one goes on quietly.
    fill(&server, 2, None);
    ship_once(&data, &pg, "n1");
    assert_eq!(
        count(&pg, "SELECT count(*) FROM epro_records"),
        export(&data).len() as i64
    );
}

#[test]
fn without_node_the_name_is_kept_in_the_data_directory_so_a_rerun_ships_nothing_new() {
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &[]);
    fill(&server, 5, None);
    let data = server.data_dir();
    let total = export(&data).len() as i64;
    let ship = || {
        let out = Command::new(BIN)
            .args(["ship", "--once", "--postgres", &pg.conninfo, "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(data.join("ship-node"), "alpha\n").unwrap();
    ship();
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM epro_records WHERE node = 'alpha'"
        ),
        total
    );
    std::fs::remove_file(data.join("ship-node")).unwrap();
    ship();
    let kept = std::fs::read_to_string(data.join("ship-node")).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(kept.trim(), host.trim());
    ship();
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), 2 * total);
}
