//! The PostgreSQL side of `ship`: versioned migrations (applied once, under an
//! advisory lock, so shippers of several nodes can start together) and the statements
//! that move one staged batch into the tables.
//!
//! - `epro_records`: one row per record, primary key `(node, shard, seq)`; at most one
//!   row per `(principal, submission_id)` (the idempotency key: a report's
//!   `submissionId`, or the `Idempotency-Key` header it was stored with). `sha256` is
//!   the record's hash in its shard's chain (migration 2; NULL for rows shipped before).
//! - `epro_record_duplicates`: every other copy of a key (another node's, or one stored
//!   before keys were enforced), with a pointer to the kept row: nothing acknowledged
//!   is dropped silently.
//! - `epro_ship_cursor`: per (node, shard), the next sequence number to ship; it moves
//!   in the same transaction as the rows it covers. `node_id` (migration 3) is the id
//!   of the data directory the node's records come from ([`crate::ship::node`]).
//! - Views `epro_subjects`, `epro_summary` and `epro_site_summary`: the read APIs'
//!   answers for the whole fleet; like them, they count FHIR QuestionnaireResponses
//!   as reports (migration 3).
//! - `refused` (migration 3, both record tables): what PostgreSQL could not hold of a
//!   record shipped without it (`ship::shard`), NULL for every other row.

use postgres::{Client, Transaction};

use crate::ship::rows::COLUMNS;

/// Migrations by version; each runs once, in order, in its own transaction.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE epro_records (
    node text NOT NULL,
    shard integer NOT NULL,
    seq bigint NOT NULL,
    id text NOT NULL,
    kind text NOT NULL,
    received_at timestamptz NOT NULL,
    received_ns bigint NOT NULL,
    principal text NOT NULL,
    submission_id text,
    patient_id text,
    project_id text,
    site_id text,
    tag_name text,
    counted boolean NOT NULL,
    body jsonb,
    body_raw bytea NOT NULL,
    PRIMARY KEY (node, shard, seq)
);
CREATE UNIQUE INDEX epro_records_key ON epro_records (principal, submission_id)
    WHERE submission_id IS NOT NULL;
CREATE INDEX epro_records_project ON epro_records (project_id, site_id, patient_id);
CREATE TABLE epro_record_duplicates (
    LIKE epro_records,
    kept_node text NOT NULL,
    kept_shard integer NOT NULL,
    kept_seq bigint NOT NULL,
    PRIMARY KEY (node, shard, seq)
);
CREATE TABLE epro_ship_cursor (
    node text NOT NULL,
    shard integer NOT NULL,
    next_seq bigint NOT NULL,
    shipped bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node, shard)
);
CREATE VIEW epro_subjects AS
SELECT s.project_id, s.site_id, s.patient_id, s.reports, s.last_received_ns,
       coalesce((SELECT array_agg(DISTINCT t.tag_name ORDER BY t.tag_name)
                 FROM epro_records t
                 WHERE t.kind = 'tag' AND t.counted
                   AND t.project_id = s.project_id AND t.patient_id = s.patient_id),
                '{}') AS tags
FROM (SELECT coalesce(project_id, '-') AS project_id, site_id, patient_id,
             count(*) AS reports, max(received_ns) AS last_received_ns
      FROM epro_records
      WHERE kind = 'report' AND counted AND site_id IS NOT NULL
      GROUP BY 1, 2, 3) s;
CREATE VIEW epro_summary AS
SELECT coalesce(project_id, '-') AS project_id, count(*) AS reports,
       count(DISTINCT patient_id) AS subjects, max(received_ns) AS last_received_ns
FROM epro_records
WHERE kind = 'report' AND counted
GROUP BY 1;
CREATE VIEW epro_site_summary AS
SELECT coalesce(project_id, '-') AS project_id, site_id, count(*) AS reports,
       count(DISTINCT patient_id) AS subjects
FROM epro_records
WHERE kind = 'report' AND counted AND site_id IS NOT NULL
GROUP BY 1, 2;
"#,
    r#"
ALTER TABLE epro_records ADD COLUMN sha256 bytea;
ALTER TABLE epro_record_duplicates ADD COLUMN sha256 bytea;
"#,
    r#"
ALTER TABLE epro_records ADD COLUMN refused text;
ALTER TABLE epro_record_duplicates ADD COLUMN refused text;
ALTER TABLE epro_ship_cursor ADD COLUMN node_id text;
CREATE OR REPLACE VIEW epro_subjects AS
SELECT s.project_id, s.site_id, s.patient_id, s.reports, s.last_received_ns,
       coalesce((SELECT array_agg(DISTINCT t.tag_name ORDER BY t.tag_name)
                 FROM epro_records t
                 WHERE t.kind = 'tag' AND t.counted
                   AND t.project_id = s.project_id AND t.patient_id = s.patient_id),
                '{}') AS tags
FROM (SELECT coalesce(project_id, '-') AS project_id, site_id, patient_id,
             count(*) AS reports, max(received_ns) AS last_received_ns
      FROM epro_records
      WHERE kind IN ('report', 'fhir') AND counted AND site_id IS NOT NULL
      GROUP BY 1, 2, 3) s;
CREATE OR REPLACE VIEW epro_summary AS
SELECT coalesce(project_id, '-') AS project_id, count(*) AS reports,
       count(DISTINCT patient_id) AS subjects, max(received_ns) AS last_received_ns
FROM epro_records
WHERE kind IN ('report', 'fhir') AND counted
GROUP BY 1;
CREATE OR REPLACE VIEW epro_site_summary AS
SELECT coalesce(project_id, '-') AS project_id, site_id, count(*) AS reports,
       count(DISTINCT patient_id) AS subjects
FROM epro_records
WHERE kind IN ('report', 'fhir') AND counted AND site_id IS NOT NULL
GROUP BY 1, 2;
"#,
];

/// The schema version [`migrate`] brings a database to.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to date; a no-op when it is. Everything, the version table's
/// creation included, runs under one advisory lock: shippers starting together on an
/// empty database take turns, and the later ones find the work done.
pub fn migrate(client: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7242390001);
         CREATE TABLE IF NOT EXISTS epro_schema_version (version integer PRIMARY KEY)",
    )?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM epro_schema_version",
            &[],
        )?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql)?;
        let version = i as i32 + 1;
        tx.execute(
            "INSERT INTO epro_schema_version (version) VALUES ($1)",
            &[&version],
        )?;
    }
    tx.commit()
}

/// The session's staging table: a batch's records with a key are copied here, then
/// moved in one statement per rule.
pub fn prepare_session(client: &mut Client) -> Result<(), postgres::Error> {
    client.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS epro_stage (LIKE epro_records) ON COMMIT DELETE ROWS",
    )
}

/// The COPY statement for records without a key: straight into `epro_records` (the
/// cursor moves in the same transaction, so none of them is there yet).
pub fn copy_records() -> String {
    format!("COPY epro_records ({COLUMNS}) FROM STDIN")
}

/// The COPY statement for records with a key: into the staging table, for
/// [`move_staged`].
pub fn copy_staged() -> String {
    format!("COPY epro_stage ({COLUMNS}) FROM STDIN")
}

/// Moves the staged records with a key: of each key, the earliest copy unless the key
/// is already kept; every other copy into the duplicates.
/// Columns are named, not `*`: a migration's added column comes last in each table,
/// after the duplicates' own `kept_*` columns.
pub fn move_staged(tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
    let staged: Vec<String> = COLUMNS.split(", ").map(|c| format!("s.{c}")).collect();
    let staged = staged.join(", ");
    tx.batch_execute(&format!(
        "INSERT INTO epro_records ({COLUMNS})
             SELECT DISTINCT ON (principal, submission_id) {staged} FROM epro_stage s
             ORDER BY principal, submission_id, received_ns, node, shard, seq
             ON CONFLICT DO NOTHING;
         INSERT INTO epro_record_duplicates ({COLUMNS}, kept_node, kept_shard, kept_seq)
             SELECT {staged}, r.node, r.shard, r.seq FROM epro_stage s
             JOIN epro_records r
               ON r.principal = s.principal AND r.submission_id = s.submission_id
             WHERE (r.node, r.shard, r.seq) <> (s.node, s.shard, s.seq)
             ON CONFLICT (node, shard, seq) DO NOTHING;"
    ))
}

/// Where the cursor of (node, shard) is now.
pub fn cursor_now(client: &mut Client, node: &str, shard: i32) -> Result<i64, postgres::Error> {
    Ok(client
        .query_one(
            "SELECT next_seq FROM epro_ship_cursor WHERE node = $1 AND shard = $2",
            &[&node, &shard],
        )?
        .get(0))
}

/// A shipped record as PostgreSQL has it.
pub struct Shipped {
    pub seq: i64,
    /// `None` for a row shipped before rows had hashes.
    pub sha256: Option<Vec<u8>>,
}

/// The newest record of (node, shard) shipped before `below`, in either table.
pub fn last_shipped(
    client: &mut Client,
    node: &str,
    shard: i32,
    below: i64,
) -> Result<Option<Shipped>, postgres::Error> {
    let row = client.query_opt(
        "SELECT seq, sha256 FROM (
             SELECT seq, sha256 FROM epro_records
             WHERE node = $1 AND shard = $2 AND seq < $3
             UNION ALL
             SELECT seq, sha256 FROM epro_record_duplicates
             WHERE node = $1 AND shard = $2 AND seq < $3
         ) shipped ORDER BY seq DESC LIMIT 1",
        &[&node, &shard, &below],
    )?;
    Ok(row.map(|r| Shipped {
        seq: r.get(0),
        sha256: r.get(1),
    }))
}

/// Binds the cursors of node `node` to the data directory of node id `id`: those
/// without one (kept before cursors had ids) take it, and with `take_over` every one
/// does. Another id one of them keeps, if any.
pub fn claim(
    client: &mut Client,
    node: &str,
    id: &str,
    take_over: bool,
) -> Result<Option<String>, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute(
        "UPDATE epro_ship_cursor SET node_id = $2
         WHERE node = $1 AND (node_id IS NULL OR $3)",
        &[&node, &id, &take_over],
    )?;
    let other = tx.query_opt(
        "SELECT node_id FROM epro_ship_cursor WHERE node = $1 AND node_id <> $2 LIMIT 1",
        &[&node, &id],
    )?;
    tx.commit()?;
    Ok(other.map(|r| r.get(0)))
}

/// The cursor of (node, shard), created at 0 for node id `id` when there is none.
pub fn cursor(
    client: &mut Client,
    (node, id): (&str, &str),
    shard: i32,
) -> Result<i64, postgres::Error> {
    client.execute(
        "INSERT INTO epro_ship_cursor (node, shard, next_seq, node_id) VALUES ($1, $2, 0, $3)
         ON CONFLICT (node, shard) DO NOTHING",
        &[&node, &shard, &id],
    )?;
    cursor_now(client, node, shard)
}

/// Moves the cursor from `from` to `to` in `tx`; false when it was not at `from`
/// (another shipper for the same node is running).
pub fn advance(
    tx: &mut Transaction<'_>,
    node: &str,
    shard: i32,
    from: i64,
    to: i64,
    shipped: i64,
) -> Result<bool, postgres::Error> {
    let moved = tx.execute(
        "UPDATE epro_ship_cursor SET next_seq = $4, shipped = shipped + $5, updated_at = now()
         WHERE node = $1 AND shard = $2 AND next_seq = $3",
        &[&node, &shard, &from, &to, &shipped],
    )?;
    Ok(moved == 1)
}
