//! Power loss, not just kill -9: the data directory lives on a fault-injecting FUSE
//! filesystem ([`faultfs`]) that keeps unsynced pages in memory. Each cycle loads the
//! server from several connections (some pipelining), kills it with SIGKILL, cuts the
//! power (every unsynced page dropped, or a random subset written back first),
//! remounts, restarts and checks:
//!
//! - every acknowledged report is exported exactly once, under its id, with its body;
//! - everything a previous recovery kept is still there, unchanged;
//! - whatever is new was written in the cycle just ended: a record that recovery cut
//!   never comes back, and no id is ever given to a second body;
//! - `verify` is clean once the server has stopped cleanly.
//!
//! The harness has teeth: with `durability = "async"` acknowledged reports are lost,
//! and a test expects exactly that.

mod common;
#[path = "common/faultfs.rs"]
mod faultfs;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::DEVICE_CONFIG as CONFIG;
use common::{export, submit_until_gone, temp_dir, verify, Server};
use faultfs::{Cut, Disk, Mount};

/// Cycles per mode: each is a load, a kill -9 and a power cut.
const CYCLES: u64 = 20;
/// How long each cycle loads the server before the cut.
const LOAD: Duration = Duration::from_millis(250);

/// What the clients were told: record id -> the patient id of the body acknowledged.
type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// The records a data directory exports: id -> patient id of the body.
fn exported(data: &std::path::Path) -> BTreeMap<String, String> {
    let mut records = BTreeMap::new();
    for record in export(data) {
        let id = record["id"].as_str().unwrap().to_string();
        let patient = record["body"]["patientId"].as_str().unwrap().to_string();
        assert!(
            records.insert(id.clone(), patient).is_none(),
            "{id} exported twice"
        );
    }
    records
}

/// What the cycles came to.
struct Outcome {
    acked: usize,
    /// Acknowledged reports missing or changed after the last recovery.
    lost: usize,
    /// Unsynced pages the power cuts dropped: zero would mean no cut hit a write.
    lost_pages: u64,
}

/// Runs `cycles` of load, kill -9 and power cut; panics on any broken invariant except
/// acknowledged reports missing at the end, which it counts.
fn power_cut_cycles(cut: Cut, durability: &str, cycles: u64, stop_at_first_loss: bool) -> Outcome {
    let dir = temp_dir();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::os::unix::fs::symlink(mnt.join("data"), dir.path().join("data")).unwrap();
    let data = dir.path().join("data");
    let disk = Disk::new();
    let acked: Acked = Arc::default();
    let mut kept: BTreeMap<String, String> = BTreeMap::new();
    let mut dir = Some(dir);
    let mut lost = 0;
    let mut loads = 0;
    for cycle in 0..=cycles {
        let mount = Mount::new(&disk, &mnt).expect("mount the fault-injecting filesystem");
        if cycle == 0 {
            std::fs::create_dir(mnt.join("data")).unwrap();
        }
        let server = Server::start_in(dir.take().unwrap(), CONFIG, &["--durability", durability]);
        // What recovery kept: everything kept before, plus only records of the last cycle.
        let now = exported(&data);
        for (id, patient) in &kept {
            assert_eq!(
                now.get(id),
                Some(patient),
                "cycle {cycle}: kept record {id} changed or vanished"
            );
        }
        for (id, patient) in &now {
            if !kept.contains_key(id) {
                let from = format!("P-{}-", cycle.wrapping_sub(1));
                assert!(
                    patient.starts_with(&from),
                    "cycle {cycle}: {id} ({patient}) reappeared from an earlier cycle"
                );
            }
        }
        lost = acked
            .lock()
            .unwrap()
            .iter()
            .filter(|&(id, patient)| now.get(id) != Some(patient))
            .count();
        if lost > 0 && !stop_at_first_loss {
            panic!("cycle {cycle} ({cut:?}, {durability}): {lost} acknowledged reports lost or changed");
        }
        kept = now;
        if cycle == cycles || (lost > 0 && stop_at_first_loss) {
            let (status, back) = server.terminate();
            assert!(status.success());
            let (ok, out) = verify(&data);
            assert!(ok, "verify after a clean stop: {out}");
            dir = Some(back);
            drop(mount);
            break;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (addr, stop, acked) = (server.addr, Arc::clone(&stop), Arc::clone(&acked));
                let depth = if c % 2 == 0 { 1 } else { 4 };
                std::thread::spawn(move || {
                    submit_until_gone(
                        addr,
                        depth,
                        &format!("P-{cycle}-{c}"),
                        &stop,
                        |id, patient| {
                            let previous = acked.lock().unwrap().insert(id.clone(), patient);
                            assert!(previous.is_none(), "id {id} acknowledged twice");
                        },
                    )
                })
            })
            .collect();
        std::thread::sleep(LOAD);
        loads += 1;
        dir = Some(server.kill());
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        drop(mount);
        disk.lock().unwrap().power_cut(cut, cycle * 7919 + 1);
    }
    drop(dir);
    let lost_pages = disk.lock().unwrap().lost_pages;
    let acked = acked.lock().unwrap().len();
    assert!(
        acked > 50 * loads,
        "only {acked} reports acknowledged in {loads} cycles: the test did not load the server"
    );
    Outcome {
        acked,
        lost,
        lost_pages,
    }
}

#[test]
fn sync_keeps_every_acknowledged_report_when_unsynced_pages_are_dropped() {
    let outcome = power_cut_cycles(Cut::DropAll, "sync", CYCLES, false);
    assert_eq!(outcome.lost, 0);
    assert!(
        outcome.lost_pages > 0,
        "no power cut dropped a page in flight"
    );
}

#[test]
fn sync_keeps_every_acknowledged_report_under_torn_writeback() {
    let outcome = power_cut_cycles(Cut::RandomSubset, "sync", CYCLES, false);
    assert_eq!(outcome.lost, 0);
    assert!(
        outcome.lost_pages > 0,
        "no power cut dropped a page in flight"
    );
}

/// The control: acknowledging before fdatasync must lose reports to a power cut. If
/// this ever passes without loss, the harness no longer cuts anything.
#[test]
fn async_loses_acknowledged_reports_to_a_power_cut() {
    let outcome = power_cut_cycles(Cut::DropAll, "async", CYCLES, true);
    assert!(
        outcome.lost > 0,
        "{} reports acknowledged in async mode, none lost: the power cut has no teeth",
        outcome.acked
    );
}
