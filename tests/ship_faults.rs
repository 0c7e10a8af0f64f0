//! `ship` against records and shards PostgreSQL refuses: a value jsonb cannot hold is
//! shipped all the same, exactly once with every byte; a shard PostgreSQL refuses a
//! record of is retried with backoff, named by record id, segment and offset, while
//! the other shards go on.

mod common;
#[path = "common/pg.rs"]
#[allow(dead_code)]
mod pg;
#[path = "common/shipper.rs"]
#[allow(dead_code)]
mod shipper;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use common::{
    export, get, post, wait_until, Server, ADMIN_TOKEN as ADMIN, DEVICE_ADMIN_CONFIG as CONFIG,
    DEVICE_TOKEN as DEVICE,
};
use pg::Postgres;
use shipper::{count, ship_cmd, ship_once};

fn submit(server: &Server, body: &str) -> String {
    let r = post(&mut server.connect(), "/epro/submit", DEVICE, body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

fn plain(patient: &str) -> String {
    format!(r#"{{"patientId":"{patient}","projectId":"P1","siteId":"S1","reportData":"ok"}}"#)
}

/// Where record `id` (`s<shard>-<seq>`) is in `data`: its segment and offset.
fn place(data: &std::path::Path, id: &str) -> String {
    let (shard, seq) = id[1..].split_once('-').unwrap();
    let (shard, seq): (u16, u64) = (shard.parse().unwrap(), seq.parse().unwrap());
    let dir = data.join(format!("shard-{shard}"));
    let mut offset = None;
    epro_ingest::log::recover::scan_shard_from(
        &dir,
        shard,
        seq,
        |r, at| {
            if r.seq == seq {
                offset = Some(at.offset);
            }
        },
        |_| {},
    )
    .unwrap();
    let segments = epro_ingest::log::files::list_segments(&dir).unwrap();
    let segment = segments.iter().rfind(|s| s.first_seq <= seq).unwrap();
    format!("{} at offset {}", segment.path.display(), offset.unwrap())
}

#[test]
fn a_record_postgres_cannot_hold_as_jsonb_ships_once_with_its_exact_body() {
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &[]);
    let data = server.data_dir();
    // Valid JSON the server takes, past what PostgreSQL's numeric holds: an exponent
    // below its scale, and more than 16,383 digits after the point.
    let tiny =
        r#"{"patientId":"P-1","projectId":"P1","siteId":"S1","reportData":{"score":1e-20000}}"#;
    let long = format!(
        r#"{{"patientId":"P-2","projectId":"P1","siteId":"S1","reportData":{{"score":0.{}1}}}}"#,
        "0".repeat(17_000)
    );
    let mut refused = Vec::new();
    for i in 0..12 {
        submit(&server, &plain(&format!("P-ok-{i}")));
        match i {
            3 => refused.push((submit(&server, tiny), tiny.to_string())),
            8 => refused.push((submit(&server, &long), long.clone())),
            _ => {}
        }
    }
    // One transaction's batch holds them all: the good records around the refused
    // ones ship with it.
    let out = ship_once(&data, &pg, "n1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let exported = export(&data);
    let mut client = pg.client();
    let ids: BTreeSet<String> = client
        .query("SELECT id FROM epro_records", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: BTreeSet<String> = exported
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, want, "{stderr}");
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), 14);
    for (id, body) in &refused {
        let row = client
            .query_one(
                "SELECT body IS NULL, refused, body_raw, patient_id, project_id, counted
                 FROM epro_records WHERE id = $1",
                &[id],
            )
            .unwrap();
        assert!(row.get::<_, bool>(0), "{id}: no jsonb");
        let why: String = row.get(1);
        assert!(why.contains("numeric"), "{id}: {why}");
        assert_eq!(
            row.get::<_, Vec<u8>>(2),
            body.as_bytes(),
            "{id}: every byte"
        );
        assert!(
            row.get::<_, String>(3).starts_with("P-"),
            "{id}: fields kept"
        );
        assert_eq!(row.get::<_, String>(4), "P1");
        assert!(row.get::<_, bool>(5), "{id} still counts");
        let said = format!(
            "record {id} ({}) shipped without its jsonb",
            place(&data, id)
        );
        assert!(stderr.contains(&said), "{said}\n{stderr}");
    }
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM epro_records WHERE body IS NULL OR refused IS NOT NULL"
        ),
        2
    );
    assert!(
        stderr.contains("ship: done: 14 records shipped")
            && stderr.contains("(2 of them without what PostgreSQL refused of them)"),
        "{stderr}"
    );
    // Bytes outside printable ASCII and backslashes arrive exactly too.
    let accented = r#"{"patientId":"P-é","projectId":"P1","reportData":"a\\b \u00e9 ~\t"}"#;
    let id = submit(&server, accented);
    ship_once(&data, &pg, "n1");
    let row = client
        .query_one(
            "SELECT body_raw, body->>'reportData' FROM epro_records WHERE id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), accented.as_bytes());
    assert_eq!(row.get::<_, String>(1), "a\\b é ~\t");
    // Counted as the read API counts them.
    let api = get(
        &mut server.connect(),
        "/api/v1/projects/P1/reports/summary",
        ADMIN,
    )
    .json();
    assert_eq!(
        count(
            &pg,
            "SELECT reports FROM epro_summary WHERE project_id = 'P1'"
        ),
        api["reports"].as_i64().unwrap()
    );
    // Exactly once: another run ships nothing.
    ship_once(&data, &pg, "n1");
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), 15);
}

#[test]
fn a_failing_shard_is_retried_with_backoff_while_the_others_go_on() {
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &[]);
    let data = server.data_dir();
    for i in 0..6 {
        submit(&server, &plain(&format!("P-{i}")));
    }
    ship_once(&data, &pg, "n1");
    // PostgreSQL refuses one record for as long as this trigger is there.
    pg.client()
        .batch_execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'poisoned record %', NEW.id; END $$;
             CREATE TRIGGER poison BEFORE INSERT ON epro_records FOR EACH ROW
                 WHEN (NEW.patient_id = 'poison') EXECUTE FUNCTION poison();",
        )
        .unwrap();
    let log = data.with_file_name("ship.log");
    let mut follower = ship_cmd(&data, &pg, "n1", &[])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let poison = submit(&server, &plain("poison"));
    let bad_shard: i32 = poison[1..2].parse().unwrap();
    let poison_seq: i64 = poison[3..].parse().unwrap();
    // More records on both shards, after the poisoned one.
    let mut other_shard_ids = Vec::new();
    for i in 0..40 {
        let id = submit(&server, &plain(&format!("after-{i}")));
        if !id.starts_with(&format!("s{bad_shard}-")) {
            other_shard_ids.push(id);
        }
    }
    assert!(
        !other_shard_ids.is_empty(),
        "every record went to one shard"
    );
    let said = || std::fs::read_to_string(&log).unwrap();
    let shipped = |shard: i32| {
        count(
            &pg,
            &format!("SELECT count(*) FROM epro_records WHERE shard = {shard}"),
        )
    };
    let exported = export(&data);
    let on = |shard: i32| exported.iter().filter(|r| r["shard"] == shard).count() as i64;
    let before_poison = exported
        .iter()
        .filter(|r| r["shard"] == bad_shard && r["seq"].as_i64().unwrap() < poison_seq)
        .count() as i64;
    // The other shard ships everything; the failing one up to the poisoned record,
    // retried with a growing wait, named with its id, segment and offset.
    let failure = format!(
        "shard {bad_shard}: stopped at record {poison} ({}): PostgreSQL refused it: ERROR: \
         poisoned record {poison}",
        place(&data, &poison)
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            shipped(1 - bad_shard) == on(1 - bad_shard)
                && said().contains("retrying in 1.0 s, the other shards go on")
        }),
        "{}",
        said()
    );
    assert!(said().contains(&failure), "{failure}\n{}", said());
    assert!(said().contains("retrying in 0.5 s, the other shards go on"));
    assert_eq!(shipped(bad_shard), before_poison, "{}", said());
    // The other shard keeps shipping what comes next.
    let late: Vec<String> = (0..20)
        .map(|i| submit(&server, &plain(&format!("late-{i}"))))
        .collect();
    let exported = export(&data);
    let on = |shard: i32| exported.iter().filter(|r| r["shard"] == shard).count() as i64;
    assert!(wait_until(Duration::from_secs(20), || shipped(
        1 - bad_shard
    ) == on(
        1 - bad_shard
    )));
    assert_eq!(shipped(bad_shard), before_poison, "{late:?}");
    // Once PostgreSQL takes the record, the shard catches up: every record once.
    pg.client()
        .batch_execute("DROP TRIGGER poison ON epro_records")
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(90), || shipped(bad_shard)
            == on(bad_shard)),
        "{}",
        said()
    );
    assert!(said().contains(&format!("ship: shard {bad_shard}: shipping again")));
    let total = exported.len() as i64;
    assert_eq!(count(&pg, "SELECT count(*) FROM epro_records"), total);
    assert_eq!(
        count(&pg, "SELECT count(DISTINCT id) FROM epro_records"),
        total
    );
    let pid = nix::unistd::Pid::from_raw(follower.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(follower.wait().unwrap().success(), "{}", said());
}

#[test]
fn with_once_a_failing_shard_exits_non_zero_after_the_others_are_shipped() {
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &[]);
    let data = server.data_dir();
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(submit(&server, &plain(&format!("P-{i}"))));
    }
    let victim = ids[10].clone();
    let bad_shard: i32 = victim[1..2].parse().unwrap();
    // Another node's shipper creates the schema the trigger goes on.
    ship_once(&data, &pg, "n0");
    pg.client()
        .batch_execute(&format!(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'poisoned record %', NEW.id; END $$;
             CREATE TRIGGER poison BEFORE INSERT ON epro_records FOR EACH ROW
                 WHEN (NEW.node = 'n1' AND NEW.id = '{victim}') EXECUTE FUNCTION poison();"
        ))
        .unwrap();
    let out = ship_cmd(&data, &pg, "n1", &["--once"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let failure = format!(
        "shard {bad_shard}: stopped at record {victim} ({})",
        place(&data, &victim)
    );
    assert!(stderr.contains(&failure), "{failure}\n{stderr}");
    assert!(
        stderr.contains("1 shard(s) not shipped to their end"),
        "{stderr}"
    );
    let exported = export(&data);
    let seq: i64 = victim[3..].parse().unwrap();
    let want = exported
        .iter()
        .filter(|r| r["shard"] != bad_shard || r["seq"].as_i64().unwrap() < seq)
        .count() as i64;
    assert_eq!(
        count(&pg, "SELECT count(*) FROM epro_records WHERE node = 'n1'"),
        want
    );
}
