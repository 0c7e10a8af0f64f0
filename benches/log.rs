//! The log alone, without HTTP: records/s and MB/s for durability `sync` (each of N
//! concurrent writers waits for its record to be durable before appending the next,
//! as connections do) and `async` (append without waiting), and the latency of one
//! 4 KiB write + fdatasync on this disk, which bounds sync throughput per group.
//!
//! Run: `cargo bench --bench log` (writes under target/bench-log, removed after).

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use epro_ingest::log::manifest::{Manifest, RESERVE_BLOCK};
use epro_ingest::log::record::Kind;
use epro_ingest::log::segment::Segment;
use epro_ingest::log::time::ShardTime;
use epro_ingest::log::Durability;
use epro_ingest::log::{Log, Resume};
use glommio::{LocalExecutorBuilder, Placement};

/// A ~280-byte report, as in the HTTP benchmark.
const BODY: &[u8] = br#"{"patientId":"P-000123","projectId":"P001","siteId":"S01","submissionId":"3f2a9c1e-5b7d-4e2a-9f1c-8d6b4a2e7c31","reportData":{"q1":3,"q2":1,"q3":4,"painScore":6,"sleepHours":7.5,"nausea":false,"notes":"mild headache after lunch"},"timestamp":"2026-11-26T08:15:30Z"}"#;

fn dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-log")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn run(durability: Durability, writers: usize, per_writer: usize) -> (f64, f64) {
    let path = dir(&format!("{durability:?}-{writers}"));
    let manifest = Manifest::new(0, 1 << 40);
    let log = Rc::new(Log::new(
        path.clone(),
        64 << 20,
        durability,
        Resume::FRESH,
        manifest,
        RESERVE_BLOCK,
        ShardTime::new(0, epro_ingest::base::clock::now_ns()),
    ));
    glommio::spawn_local(Rc::clone(&log).run_flusher(None, |_, _| {})).detach();
    let began = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let log = Rc::clone(&log);
            glommio::spawn_local(async move {
                let mut last = 0;
                for _ in 0..per_writer {
                    last = log
                        .append(Kind::Report, "site-app-001", None, 0, BODY)
                        .unwrap()
                        .seq;
                    if durability == Durability::Sync {
                        log.durable(last).await.unwrap();
                    } else {
                        glommio::yield_if_needed().await;
                    }
                }
                log.durable(last).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await;
    }
    let elapsed = began.elapsed().as_secs_f64();
    log.close();
    log.stopped().await;
    let _ = std::fs::remove_dir_all(&path);
    let records = (writers * per_writer) as f64;
    let bytes = records * (BODY.len() + 36 + 12) as f64;
    (records / elapsed, bytes / elapsed / 1e6)
}

async fn fdatasync_latency() -> Duration {
    let path = dir("latency");
    let mut segment = Segment::create(&path, 0, 1, 64 << 20).await.unwrap();
    let mut samples = Vec::new();
    for _ in 0..200 {
        let began = Instant::now();
        segment.write(&[7u8; 100]).await.unwrap();
        samples.push(began.elapsed());
    }
    segment.close().await;
    let _ = std::fs::remove_dir_all(&path);
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: skip the work.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(|| async {
            let latency = fdatasync_latency().await;
            println!("write + fdatasync of one 4 KiB block, median of 200: {latency:?}");
            println!("| durability | writers | records/s | MB/s |");
            println!("|---|---|---|---|");
            for (durability, writers, per_writer) in [
                (Durability::Sync, 1, 300),
                (Durability::Sync, 64, 200),
                (Durability::Sync, 256, 100),
                (Durability::Async, 64, 5000),
            ] {
                let (rps, mbps) = run(durability, writers, per_writer).await;
                println!("| {durability:?} | {writers} | {rps:.0} | {mbps:.1} |");
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
