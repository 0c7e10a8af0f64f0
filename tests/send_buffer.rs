//! Clients that send requests and never read their responses hold a bounded amount of
//! kernel memory: each connection's `SO_SNDBUF` (`limits.send_buffer_bytes`) caps the
//! Send-Q the server's side of it may reach, read here from `/proc/net/tcp`.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

const CLIENTS: usize = 100;

/// Every server-side socket's Send-Q (bytes sent but not acknowledged) on `port`.
/// Only the server's ends of `clients`' connections count: another test's client may
/// be given this server's port number as its own ephemeral port.
fn send_queues(port: u16, clients: &[u16]) -> Vec<u64> {
    let mut queues = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().unwrap();
            let remote_port = fields[2].rsplit(':').next().unwrap();
            let ours = u16::from_str_radix(remote_port, 16).is_ok_and(|p| clients.contains(&p));
            // State 01: established; tx_queue:rx_queue in hex.
            if u16::from_str_radix(local_port, 16) == Ok(port) && ours && fields[3] == "01" {
                let tx = fields[4].split(':').next().unwrap();
                queues.push(u64::from_str_radix(tx, 16).unwrap());
            }
        }
    }
    queues
}

/// 100 clients each pipeline 10,000 requests (over a megabyte of responses) and read
/// none; returns the server side's Send-Q of every connection once most have stalled
/// with at least `send_buffer` queued.
fn stalled_send_queues(server: &Server, send_buffer: u64) -> Vec<u64> {
    let request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".repeat(10_000);
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let s = TcpStream::connect(server.addr).unwrap();
            s.set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            s
        })
        .collect();
    std::thread::scope(|scope| {
        for mut client in &clients {
            let request = &request;
            // The write stalls once the server stops reading: that is the point.
            scope.spawn(move || {
                let _ = client.write_all(request);
            });
        }
    });
    // The server works through the requests as the kernel lets it write: wait until
    // most connections have stalled with a full buffer.
    let began = Instant::now();
    let ports: Vec<u16> = clients
        .iter()
        .map(|c| c.local_addr().unwrap().port())
        .collect();
    let mut queues = send_queues(server.addr.port(), &ports);
    while queues.iter().filter(|&&q| q >= send_buffer).count() < CLIENTS / 2
        && began.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(100));
        queues = send_queues(server.addr.port(), &ports);
    }
    drop(clients);
    queues
}

/// What `SO_SNDBUF` lets the kernel queue: it doubles the value for its bookkeeping and
/// lets a write overshoot by about one more; autotuning, by contrast, lets a
/// connection reach close to a megabyte here.
fn bound(send_buffer: u64) -> u64 {
    4 * send_buffer
}

fn check(queues: &[u64], send_buffer: u64) {
    assert_eq!(queues.len(), CLIENTS, "{queues:?}");
    let (max, total): (u64, u64) = (*queues.iter().max().unwrap(), queues.iter().sum());
    eprintln!(
        "send_buffer_bytes = {send_buffer}: Send-Q max {max} B, total {total} B over {CLIENTS} \
         clients that never read"
    );
    assert!(
        max <= bound(send_buffer),
        "Send-Q of {max} B on one connection"
    );
    // Most really stalled with their buffer full: the bound is what held them.
    let full = queues.iter().filter(|&&q| q >= send_buffer).count();
    assert!(full >= CLIENTS / 2, "only {full} stalled: {queues:?}");
}

#[test]
fn clients_that_never_read_hold_a_bounded_send_queue() {
    let config = format!(
        "{}\n[limits]\nsend_buffer_bytes = 16384\n",
        common::DEVICE_CONFIG
    );
    let server = Server::start(&config, &[]);
    check(&stalled_send_queues(&server, 16384), 16384);
}

/// The default applies without a `[limits]` line.
#[test]
fn the_default_send_buffer_bounds_too() {
    let server = Server::start(common::DEVICE_CONFIG, &[]);
    check(&stalled_send_queues(&server, 32768), 32768);
}
