//! `backup` beside a running server under load gives a copy that `verify` accepts and
//! that holds every record acknowledged before it began; `restore` puts it in place as
//! a data directory whose shards never give an id the old node may have given.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{export, post, report, verify, Server, BIN};

fn run(args: &[&str], paths: &[&Path]) -> (bool, String) {
    let out = Command::new(BIN).args(args).args(paths).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), said)
}

fn ids(data: &Path) -> Vec<String> {
    export(data)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// `s<shard>-<seq>` → (shard, seq).
fn parse(id: &str) -> (u16, u64) {
    let (shard, seq) = id[1..].split_once('-').unwrap();
    (shard.parse().unwrap(), seq.parse().unwrap())
}

#[test]
fn a_backup_under_load_verifies_and_a_restore_never_reuses_an_id() {
    // Small segments: the backup copies sealed segments and a live one.
    let server = Arc::new(Server::start(common::DEVICE_CONFIG, &[]));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (server, acked, stop) =
                (Arc::clone(&server), Arc::clone(&acked), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut s = server.connect();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let r = post(
                        &mut s,
                        "/epro/submit",
                        common::DEVICE_TOKEN,
                        &report(&format!("P-{w}-{n}")),
                    );
                    assert_eq!(r.status, 200, "{}", r.text());
                    acked
                        .lock()
                        .unwrap()
                        .push(r.json()["id"].as_str().unwrap().to_string());
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let dir = common::temp_dir();
    let mut backups = Vec::new();
    for i in 0..3 {
        let before: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
        let to = dir.path().join(format!("backup-{i}"));
        let (ok, said) = run(
            &["backup", "--data-dir"],
            &[&server.data_dir(), Path::new("--to"), &to],
        );
        assert!(ok, "{said}");
        let (ok, out) = verify(&to);
        assert!(ok && !out.contains("incomplete tail"), "{out}");
        let copied: HashSet<String> = ids(&to).into_iter().collect();
        let lost: Vec<&String> = before.iter().filter(|id| !copied.contains(*id)).collect();
        assert!(
            lost.is_empty(),
            "acknowledged before the backup, not in it: {lost:?}"
        );
        backups.push(to);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    // The old node gave ids after the last backup; a restore must never give them again.
    let given: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let last = backups.last().unwrap();
    let in_backup = ids(last).len();
    assert!(given.len() > in_backup, "no write after the last backup");
    let restored = dir.path().join("restored");
    let (ok, said) = run(
        &["restore", "--from"],
        &[last, Path::new("--data-dir"), &restored],
    );
    assert!(ok, "{said}");
    drop(server);
    // Serve the restored directory (Server wants it at <dir>/data).
    let home = common::temp_dir();
    std::fs::rename(&restored, home.path().join("data")).unwrap();
    let server = Server::start_in(home, common::DEVICE_CONFIG, &[]);
    let mut s = server.connect();
    let highest = |shard| {
        given
            .iter()
            .map(|id| parse(id))
            .filter(|(s, _)| *s == shard)
            .map(|(_, q)| q)
            .max()
            .unwrap_or(0)
    };
    for n in 0..20 {
        let r = post(
            &mut s,
            "/epro/submit",
            common::DEVICE_TOKEN,
            &report(&format!("R-{n}")),
        );
        assert_eq!(r.status, 200);
        let id = r.json()["id"].as_str().unwrap().to_string();
        let (shard, seq) = parse(&id);
        assert!(
            !given.contains(&id) && seq > highest(shard),
            "{id} may have been given before"
        );
        // Past the gap: the old node may have renewed its reservation (every 512Ki
        // ids) after the backup and given ids beyond the copied one.
        assert!(seq >= 1 << 48, "{id}");
    }
    assert_eq!(ids(&server.data_dir()).len(), in_backup + 20);
}

/// A copy that catches the live segment's last group half-written (made here by hand:
/// bytes after the last record of a node killed while running) leaves it out, as
/// recovery would cut it: the backup verifies with no tail to cut.
#[test]
fn a_half_written_last_group_is_left_out_of_the_copy() {
    let server = Server::start(common::DEVICE_CONFIG, &["--shards", "1"]);
    let mut s = server.connect();
    for n in 0..30 {
        let r = post(
            &mut s,
            "/epro/submit",
            common::DEVICE_TOKEN,
            &report(&format!("P-{n}")),
        );
        assert_eq!(r.status, 200);
    }
    let dir = server.kill();
    let data = dir.path().join("data");
    let mut segments: Vec<_> = std::fs::read_dir(data.join("shard-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let live = segments.last().unwrap();
    let mut bytes = std::fs::read(live).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    bytes[end + 16..end + 116].fill(0xAB);
    std::fs::write(live, &bytes).unwrap();
    let (ok, out) = verify(&data);
    assert!(ok && out.contains("incomplete tail"), "{out}");
    let to = dir.path().join("backup");
    let (ok, said) = run(&["backup", "--data-dir"], &[&data, Path::new("--to"), &to]);
    assert!(
        ok && said.contains("bytes of a half-written group left out"),
        "{said}"
    );
    let (ok, out) = verify(&to);
    assert!(ok && !out.contains("incomplete tail"), "{out}");
    assert_eq!(ids(&to).len(), 30);
}

/// A stopped 2-shard data directory with reports in both shards, and the ids given.
fn two_shards_with_reports() -> (tempfile::TempDir, Vec<String>) {
    let server = Server::start(common::DEVICE_CONFIG, &[]);
    let mut given = Vec::new();
    for n in 0..200 {
        let mut s = server.connect();
        let r = post(
            &mut s,
            "/epro/submit",
            common::DEVICE_TOKEN,
            &report(&format!("P-{n}")),
        );
        assert_eq!(r.status, 200);
        given.push(r.json()["id"].as_str().unwrap().to_string());
        if given.iter().any(|id| id.starts_with("s0-"))
            && given.iter().any(|id| id.starts_with("s1-"))
            && n >= 20
        {
            break;
        }
    }
    let (status, dir) = server.terminate();
    assert!(status.success());
    (dir, given)
}

/// Restores `backup` into a new directory, serves it, and returns the ids of `n`
/// submits there.
fn restore_and_submit(backup: &Path, n: usize) -> Vec<String> {
    let home = common::temp_dir();
    let data = home.path().join("data");
    let (ok, said) = run(
        &["restore", "--from"],
        &[backup, Path::new("--data-dir"), &data],
    );
    assert!(ok, "{said}");
    let server = Server::start_in(home, common::DEVICE_CONFIG, &[]);
    (0..n)
        .map(|i| {
            let mut s = server.connect();
            let r = post(
                &mut s,
                "/epro/submit",
                common::DEVICE_TOKEN,
                &report(&format!("R-{i}")),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The node restored from a backup fails too, and the same backup is restored again:
/// the second restore gives none of the ids the first one gave.
#[test]
fn restoring_one_backup_twice_never_gives_an_id_twice() {
    let (dir, _) = two_shards_with_reports();
    let backup = dir.path().join("backup");
    let (ok, said) = run(
        &["backup", "--data-dir"],
        &[&dir.path().join("data"), Path::new("--to"), &backup],
    );
    assert!(ok, "{said}");
    let first: HashSet<String> = restore_and_submit(&backup, 30).into_iter().collect();
    let second = restore_and_submit(&backup, 30);
    for id in &second {
        assert!(
            !first.contains(id),
            "{id} was given by the first restore too"
        );
    }
}

/// A shard whose log was removed is known only from its reservation's copy: a backup
/// that left it out would restore that shard at id 1, so `backup` refuses.
#[test]
fn a_backup_refuses_a_shard_known_only_from_its_reservation() {
    let (dir, given) = two_shards_with_reports();
    let data = dir.path().join("data");
    assert!(data.join("reserved-shard-1").exists());
    assert!(given.iter().any(|id| id.starts_with("s1-")));
    std::fs::remove_dir_all(data.join("shard-1")).unwrap();
    let backup = dir.path().join("backup");
    let (ok, said) = run(
        &["backup", "--data-dir"],
        &[&data, Path::new("--to"), &backup],
    );
    assert!(
        !ok,
        "a backup without shard 1's reservation was taken: {said}"
    );
    assert!(
        said.contains("shard-1") && said.contains("retire-shard"),
        "{said}"
    );
    assert!(!backup.exists());
}
