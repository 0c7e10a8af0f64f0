//! Node identity: a data directory's id, created once and kept with its node's cursors.
//! Shipping under another node's name, or from a copy of another node's directory, is
//! a clear error naming both, never a tamper alarm; cursors kept before ids are
//! claimed; a directory moved or restored takes its node over on request.

mod common;
#[path = "common/pg.rs"]
#[allow(dead_code)]
mod pg;
#[path = "common/shipper.rs"]
#[allow(dead_code)]
mod shipper;

use std::path::Path;
use std::process::{Command, Output};

use common::{export, Server, BIN, DEVICE_ADMIN_CONFIG as CONFIG};
use pg::Postgres;
use shipper::{count, ship_cmd, ship_once, submit};

fn node_id(data: &Path) -> String {
    let text = std::fs::read_to_string(data.join("node-id")).unwrap();
    text.lines().next().unwrap().to_string()
}

fn cursor_ids(pg: &Postgres, node: &str) -> Vec<Option<String>> {
    let rows = pg
        .client()
        .query(
            "SELECT DISTINCT node_id FROM epro_ship_cursor WHERE node = $1",
            &[&node],
        )
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// `ship --once` without `--node` (the name kept in the data directory).
fn ship_by_kept_name(data: &Path, pg: &Postgres, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["ship", "--once", "--postgres", &pg.conninfo, "--data-dir"])
        .arg(data)
        .args(extra)
        .output()
        .unwrap()
}

/// A refusal that names both ids and is no tamper alarm.
fn assert_refused(out: &Output, ids: [&str; 2]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for id in ids {
        assert!(stderr.contains(id), "{id} in: {stderr}");
    }
    assert!(!stderr.contains("not what was shipped"), "{stderr}");
    assert!(!stderr.contains("no longer in the log"), "{stderr}");
}

#[test]
fn the_wrong_node_name_is_a_clear_error_naming_both_ids() {
    let pg = Postgres::start();
    let (a, b) = (Server::start(CONFIG, &[]), Server::start(CONFIG, &[]));
    submit(&a, 8);
    submit(&b, 3);
    ship_once(&a.data_dir(), &pg, "a");
    let id_a = node_id(&a.data_dir());
    assert_eq!(id_a.len(), 36, "{id_a}");
    assert_eq!(cursor_ids(&pg, "a"), [Some(id_a.clone())]);
    // Node b's directory shipped as "a": refused before anything is compared.
    let out = ship_cmd(&b.data_dir(), &pg, "a", &["--once"])
        .output()
        .unwrap();
    let id_b = node_id(&b.data_dir());
    assert_ne!(id_a, id_b);
    assert_refused(&out, [&id_a, &id_b]);
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), 8);
    // The id stays what it was, run after run.
    ship_once(&a.data_dir(), &pg, "a");
    assert_eq!(node_id(&a.data_dir()), id_a);
}

#[test]
fn a_copied_data_directory_is_refused_and_ships_as_a_node_of_its_own() {
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &["--shards", "1"]);
    submit(&server, 5);
    let (status, dir) = server.terminate();
    assert!(status.success());
    let data = dir.path().join("data");
    std::fs::write(data.join("ship-node"), "alpha\n").unwrap();
    assert!(ship_by_kept_name(&data, &pg, &[]).status.success());
    let id = node_id(&data);
    // Another node provisioned from a copy of alpha's directory, its own records since.
    let copy_dir = common::temp_dir();
    let copy = copy_dir.path().join("data");
    let cp = Command::new("cp").arg("-a").arg(&data).arg(&copy).status();
    assert!(cp.unwrap().success());
    let server = Server::start_in(copy_dir, CONFIG, &["--shards", "1"]);
    submit(&server, 4);
    let out = ship_by_kept_name(&copy, &pg, &[]);
    assert_refused(&out, [&id, "a copy of another node's data directory"]);
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), 5);
    // As the error says: a node of its own, with its own id.
    std::fs::remove_file(copy.join("node-id")).unwrap();
    std::fs::remove_file(copy.join("ship-node")).unwrap();
    ship_once(&copy, &pg, "beta");
    assert_ne!(node_id(&copy), id);
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), 5 + 9);
    // Alpha ships on, unaffected.
    assert!(ship_by_kept_name(&data, &pg, &[]).status.success());
}

#[test]
fn cursors_from_before_ids_are_claimed_and_a_moved_directory_takes_over() {
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &["--shards", "1"]);
    submit(&server, 5);
    let (status, dir) = server.terminate();
    assert!(status.success());
    let data = dir.path().join("data");
    ship_once(&data, &pg, "n1");
    // As a deployment from before ids: no file, cursors without one.
    std::fs::remove_file(data.join("node-id")).unwrap();
    pg.client()
        .batch_execute("UPDATE epro_ship_cursor SET node_id = NULL")
        .unwrap();
    ship_once(&data, &pg, "n1");
    let id = node_id(&data);
    assert_eq!(cursor_ids(&pg, "n1"), [Some(id.clone())]);
    // Moved to another disk (a new directory, the old one gone): refused, then taken
    // over on request, and shipping goes on where it was.
    let moved_dir = common::temp_dir();
    let moved = moved_dir.path().join("data");
    let cp = Command::new("cp").arg("-a").arg(&data).arg(&moved).status();
    assert!(cp.unwrap().success());
    drop(dir);
    let out = ship_cmd(&moved, &pg, "n1", &["--once"]).output().unwrap();
    assert_refused(&out, [&id, "--take-over"]);
    let out = ship_cmd(&moved, &pg, "n1", &["--once", "--take-over"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start_in(moved_dir, CONFIG, &["--shards", "1"]);
    submit(&server, 3);
    ship_once(&moved, &pg, "n1");
    assert_eq!(node_id(&moved), id);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM epro_records"),
        export(&moved).len() as i64
    );
}
