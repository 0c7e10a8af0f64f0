//! How `ship` starts and what it says: shippers starting together on an empty database
//! (the migration is theirs to race for), and the lag it reports after a server crash
//! made the log skip ids.

mod common;
#[path = "common/pg.rs"]
#[allow(dead_code)]
mod pg;
#[path = "common/shipper.rs"]
#[allow(dead_code)]
mod shipper;

use std::process::Stdio;

use common::{export, Server, DEVICE_ADMIN_CONFIG as CONFIG};
use pg::Postgres;
use shipper::{count, ship_cmd, submit};

#[test]
fn shippers_starting_together_on_an_empty_database_all_migrate_and_ship() {
    const SHIPPERS: usize = 8;
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &[]);
    submit(&server, 5);
    let data = server.data_dir();
    let total = export(&data).len() as i64;
    for round in 0..3 {
        pg.client()
            .batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
            .unwrap();
        // A starting gate: while this transaction holds the first table's name, every
        // shipper that tries to create it waits; once it rolls back, they all go at once.
        let mut gate = pg.client();
        let mut held = gate.transaction().unwrap();
        held.batch_execute("CREATE TABLE epro_schema_version (version integer PRIMARY KEY)")
            .unwrap();
        let children: Vec<_> = (0..SHIPPERS)
            .map(|i| {
                ship_cmd(&data, &pg, &format!("node-{i}"), &["--once"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        held.rollback().unwrap();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(
            count(&pg, "SELECT max(version)::bigint FROM epro_schema_version"),
            epro_ingest::ship::schema::VERSION
        );
        assert_eq!(
            count(&pg, "SELECT count(*) FROM epro_records"),
            total * SHIPPERS as i64
        );
        // One data directory, one node id, whichever shipper created it.
        assert_eq!(
            count(&pg, "SELECT count(DISTINCT node_id) FROM epro_ship_cursor"),
            1
        );
    }
}

#[test]
fn lag_counts_records_not_the_ids_a_crash_skipped() {
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &["--shards", "1"]);
    submit(&server, 10);
    // kill -9: the restarted server starts past every id it had reserved.
    let dir = server.kill();
    let server = Server::start_in(dir, CONFIG, &["--shards", "1"]);
    submit(&server, 10);
    let data = server.data_dir();
    let seqs: Vec<i64> = export(&data)
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 20);
    assert!(
        seqs[19] - seqs[0] > 1 << 20,
        "no ids were skipped: {seqs:?}"
    );
    // The first progress line comes after the first batch of 4.
    let out = ship_cmd(&data, &pg, "n1", &["--once", "--batch", "4"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ship: 4 records shipped, ") && stderr.contains("; 16 records behind, "),
        "{stderr}"
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), 20);
}
