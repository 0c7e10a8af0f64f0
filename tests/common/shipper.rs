//! Running `epro-ingest ship` against the throwaway PostgreSQL of `pg.rs`, and the
//! reports it ships.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{post, Server, BIN, DEVICE_TOKEN};
use crate::pg::Postgres;

/// `ship --data-dir DATA --postgres PG --node NODE EXTRA...`.
pub fn ship_cmd(data: &Path, pg: &Postgres, node: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["ship", "--data-dir"])
        .arg(data)
        .args(["--postgres", &pg.conninfo, "--node", node])
        .args(extra);
    cmd
}

/// `ship --once`, which must succeed; its output.
pub fn ship_once(data: &Path, pg: &Postgres, node: &str) -> Output {
    let out = ship_cmd(data, pg, node, &["--once"]).output().unwrap();
    assert!(
        out.status.success(),
        "ship --once failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The one bigint `sql` answers.
pub fn count(pg: &Postgres, sql: &str) -> i64 {
    pg.client().query_one(sql, &[]).unwrap().get(0)
}

/// Submits `n` reports of project `P1`, patients `P-0`, `P-1`, ..., each acknowledged.
pub fn submit(server: &Server, n: usize) {
    for i in 0..n {
        let body = format!(r#"{{"patientId":"P-{i}","projectId":"P1","reportData":"ok"}}"#);
        let r = post(&mut server.connect(), "/epro/submit", DEVICE_TOKEN, &body);
        assert_eq!(r.status, 200, "{}", r.text());
    }
}
