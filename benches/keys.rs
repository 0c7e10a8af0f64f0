//! The idempotency key table's pauses: a hash map doubles as it grows and moves every
//! key when it does, on the shard's request path. The shard's table ([`KeyTable`],
//! split into `PARTS` maps) against one map of the same keys and entries, claiming the
//! same fresh keys in turn: the slowest single claim (a doubling), the time per
//! claim, and a whole expiry scan (split: its longest part).
//!
//! Run: `cargo bench --bench keys` (`-- 4000000` for another number of keys).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use epro_ingest::domain::keys::{Entry, KeyTable, KeyedAnswer, PARTS};
use epro_ingest::log::record::Kind;

const PRINCIPAL: &str = "site-app-001";

fn entry(seq: u64) -> Entry {
    Entry {
        kind: Kind::Report,
        shard: 0,
        seq,
        received_ns: seq,
        body_hash: seq,
    }
}

/// A UUID-shaped key, different for each `i`.
fn key(i: u64, buf: &mut String) {
    use std::fmt::Write;
    buf.clear();
    write!(
        buf,
        "{:08x}-4b1e-4c2a-9f3e-{:012x}",
        i.wrapping_mul(0x9e37_79b9),
        i
    )
    .unwrap();
}

/// Claims `n` fresh keys with `claim`; returns the slowest claim and the mean.
fn run(n: u64, mut claim: impl FnMut(&str, u64)) -> (Duration, Duration) {
    let (mut worst, mut buf) = (Duration::ZERO, String::new());
    let began = Instant::now();
    for i in 0..n {
        key(i, &mut buf);
        let t = Instant::now();
        claim(&buf, i);
        worst = worst.max(t.elapsed());
    }
    (worst, began.elapsed() / n as u32)
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    println!("{n} fresh keys of principal {PRINCIPAL:?}, claimed one at a time");
    println!("| table | slowest claim | per claim | expiry scan (longest step) |");
    println!("|---|---:|---:|---:|");
    // Each twice, alternating, the first round only warming the allocator: the first
    // to run would otherwise pay the page faults of fresh memory alone.
    for round in 0..2 {
        let rows = [one_map(n), split(n)];
        if round == 1 {
            for row in rows {
                println!("{row}");
            }
        }
    }
}

fn split(n: u64) -> String {
    let mut table = KeyTable::default();
    let (worst, mean) = run(n, |k, i| {
        let answer = table.claim(PRINCIPAL, k, Kind::Report, i, || Ok(entry(i)));
        assert!(matches!(answer, KeyedAnswer::Stored(_)));
    });
    let longest = (0..PARTS)
        .map(|part| {
            let t = Instant::now();
            table.expire_part(part, n / 2);
            t.elapsed()
        })
        .max()
        .unwrap();
    drop(black_box(table));
    format!("| {PARTS} parts (the shard's) | {worst:.2?} | {mean:.2?} | {longest:.2?} |")
}

/// The rival: the same keys and entries in one map.
fn one_map(n: u64) -> String {
    let mut one: HashMap<Box<str>, Entry> = HashMap::new();
    let (worst, mean) = run(n, |k, i| {
        let mut joined = String::with_capacity(PRINCIPAL.len() + 1 + k.len());
        joined.push_str(PRINCIPAL);
        joined.push('\0');
        joined.push_str(k);
        let fresh = one.insert(joined.into_boxed_str(), entry(i)).is_none();
        assert!(fresh);
    });
    let t = Instant::now();
    one.retain(|_, e| e.received_ns >= n / 2);
    let scan = t.elapsed();
    drop(black_box(one));
    format!("| one map | {worst:.2?} | {mean:.2?} | {scan:.2?} |")
}
