//! Allocations per request on the real path, counted process-wide: the whole server
//! (accept, connection loop, admission, onion, handlers, log, flusher, the logger at
//! its default level) runs in this process, and clients drive it over real sockets
//! from threads that allocate nothing while they measure (requests built beforehand,
//! fixed read buffers). Every allocation of the process is counted: this project's
//! code and the runtime's (glommio) alike. `tests/alloc.rs` shows the project's own
//! request path allocates nothing; what this test finds is glommio's, and it fails if
//! anything adds an allocation per request.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use epro_ingest::config::{Config, Overrides};
use epro_ingest::log::Durability;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// While set, every 16th allocation's call site is sampled (see [`sample`]).
static SAMPLING: AtomicBool = AtomicBool::new(false);
static SAMPLES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

thread_local! {
    /// Inside the sampler: its own allocations are neither counted nor sampled.
    static IN_SAMPLER: Cell<bool> = const { Cell::new(false) };
}

/// Notes which function asked for this allocation: the first frame of this project or
/// of glommio in a backtrace (symbolizing is slow and allocates: only while sampling).
fn sample() {
    IN_SAMPLER.with(|flag| {
        if flag.replace(true) {
            return;
        }
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        let site = trace
            .lines()
            .map(str::trim)
            .filter_map(|l| l.split_once(": ").map(|(_, f)| f))
            .find(|f| {
                (f.starts_with("glommio::") || f.starts_with("epro_ingest::"))
                    && !f.contains("alloc_real")
            })
            .map(|f| f.split("::{{closure}}").next().unwrap_or(f))
            .map(|f| f.rsplit_once("::h").map_or(f, |(name, _)| name).to_string())
            .unwrap_or_else(|| "(other)".to_string());
        *SAMPLES.lock().unwrap().entry(site).or_insert(0) += 1;
        flag.set(false);
    });
}

fn counted() {
    if IN_SAMPLER.with(Cell::get) {
        return;
    }
    let n = ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    if SAMPLING.load(Ordering::Relaxed) && n % 16 == 0 {
        sample();
    }
}

// SAFETY: defers every operation to the system allocator; only counts (and, while
// sampling, records call sites, with the system allocator's own allocations).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TOKEN: &str = "device-token-0123456789";
const BODY: &str = r#"{"patientId":"P-000123","projectId":"P001","siteId":"S01","reportData":{"q1":3,"painScore":6,"notes":"mild headache"},"timestamp":"2026-11-26T08:15:30Z"}"#;

/// A free port on 127.0.0.1 (bound and released: the server takes it next).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts a one-shard server in this process with `durability`; returns its address.
fn start(durability: Durability) -> SocketAddr {
    let dir = common::temp_dir();
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        format!("[[principals]]\nid = \"device-1\"\ntoken = \"{TOKEN}\"\nrole = \"device\"\nprojects = [\"P001\"]\n"),
    )
    .unwrap();
    let addr = free_addr();
    let overrides = Overrides {
        listen: Some(addr.to_string()),
        data_dir: Some(dir.path().join("data")),
        durability: Some(durability),
        cpus: Some(vec![0]),
        ..Overrides::default()
    };
    let config = Config::load(Some(&config_path), overrides).unwrap();
    std::thread::spawn(move || {
        let _dir = dir;
        epro_ingest::runtime::server::run(config, &[0]).unwrap();
    });
    assert!(common::wait_until(Duration::from_secs(30), || {
        TcpStream::connect(addr).is_ok_and(|mut s| {
            s.write_all(b"GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n")
                .is_ok()
                && {
                    let mut buf = [0u8; 512];
                    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"HTTP/1.1 200"))
                }
        })
    }));
    addr
}

/// `clients` keep-alive connections each send `request` `rounds` times, `depth`
/// pipelined at a time, reading every response (`response_len` bytes each, the same
/// for every one: fixed-width Date and request id from a fixed `X-Request-Id`).
fn drive(addr: SocketAddr, request: &[u8], clients: usize, rounds: usize, depth: usize) -> u64 {
    let response_len = {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = [0u8; 4096];
        s.read(&mut buf).unwrap()
    };
    let burst = request.repeat(depth);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let burst = burst.clone();
            let mut stream = TcpStream::connect(addr).unwrap();
            let mut buf = vec![0u8; response_len * depth];
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    stream.write_all(&burst).unwrap();
                    stream.read_exact(&mut buf).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (clients * rounds * depth) as u64
}

/// Write groups (one `fdatasync` each) the server has flushed so far: the count of its
/// `epro_log_group_records` histogram, read from `/metrics`.
fn groups(addr: SocketAddr) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with("epro_log_group_records_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// One measured run after a warm-up.
struct Run {
    requests: u64,
    allocations: u64,
    groups: u64,
}

fn measure(addr: SocketAddr, request: &[u8], clients: usize, depth: usize) -> Run {
    drive(addr, request, clients, 200, depth);
    let groups_before = groups(addr);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let requests = drive(addr, request, clients, 2000, depth);
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    Run {
        requests,
        // The clients' own set-up (threads, buffers) is counted too: a few per client.
        allocations: after - before,
        groups: groups(addr) - groups_before,
    }
}

#[test]
fn allocations_per_request_on_the_real_path_are_the_runtimes_few() {
    // The logger at its default level (info: an access line per request), counted like
    // the rest; its lines go to /dev/null rather than flooding the test output.
    epro_ingest::base::logger::init();
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 2).unwrap();
    let health = b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Request-Id: r\r\n\r\n".to_vec();
    let submit = format!(
        "POST /epro/submit HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nX-Request-Id: r\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes();
    let sync = start(Durability::Sync);
    let asynchronous = start(Durability::Async);
    let mut rows = Vec::new();
    for (name, addr, request) in [
        ("GET /healthz", asynchronous, &health),
        ("submit, async", asynchronous, &submit),
        ("submit, sync", sync, &submit),
    ] {
        for (clients, depth) in [(8, 1), (2, 8)] {
            let run = measure(addr, request, clients, depth);
            let n = run.allocations as f64 / run.requests as f64;
            let per_group = match run.groups {
                0 => String::new(),
                g => format!(
                    ", {:.1} requests per write group",
                    run.requests as f64 / g as f64
                ),
            };
            eprintln!(
                "{name:>14}, {clients} connections x {depth} pipelined: \
                 {n:.3} allocations per request{per_group}"
            );
            rows.push((name, depth, n));
        }
    }
    // Where they come from: a sampled pass over the sync submit (every 16th allocation's
    // first glommio or epro_ingest frame), printed for the record (README has it).
    SAMPLING.store(true, Ordering::Relaxed);
    drive(sync, &submit, 8, 300, 1);
    SAMPLING.store(false, Ordering::Relaxed);
    let samples = SAMPLES.lock().unwrap().clone();
    let total: u64 = samples.values().sum();
    let mut sites: Vec<_> = samples.into_iter().collect();
    sites.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    println!("allocation sites, sync submit, sampled ({total} samples):");
    for (site, n) in &sites {
        println!("  {:5.1}%  {site}", *n as f64 * 100.0 / total.max(1) as f64);
    }
    let ours: u64 = sites
        .iter()
        .filter(|(site, _)| site.starts_with("epro_ingest::"))
        .map(|(_, n)| n)
        .sum();
    assert!(total > 0, "nothing sampled");
    // What glommio does per read that would block (a new I/O source, boxed), about one
    // a request without pipelining, fewer with it; nothing of ours (tests/alloc.rs).
    for (name, depth, n) in rows {
        let bound = match (name, depth) {
            // With durability sync, each write group adds the boxed blocking job, its
            // source and the group's copy, and each wait for it more reactor polls
            // (timers, completions). How many that makes per request is the machine's
            // timing: 4.2-4.5 and 2.0-2.4 on this project's 2-vCPU VM (about 4 and 12
            // requests a group), 6.44 and 2.98 on another machine. So these rows catch
            // only a gross change; one more allocation per request on the path every
            // submit shares fails the async rows, and one per waiting request on the
            // durable path fails tests/alloc.rs, whose count does not depend on timing.
            ("submit, sync", 1) => 8.0,
            ("submit, sync", _) => 4.0,
            // 1.68 on a quiet machine, 1.83-2.03 under load or elsewhere (more reactor
            // polls per request); one more allocation per request would pass 2.6.
            (_, 1) => 2.5,
            _ => 1.0,
        };
        assert!(
            n <= bound,
            "{name} ({depth} pipelined): {n:.3} allocations per request, over {bound}"
        );
    }
    // This project's own sites on the sync path: the write group's copy for glommio
    // (Segment::write) and the flusher's per-group work, no more than a third.
    assert!(
        ours * 3 <= total,
        "{ours} of {total} samples in this project's code: {sites:?}"
    );
}
