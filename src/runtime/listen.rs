//! One server per listen address. glommio's listeners always set `SO_REUSEPORT`, so a
//! second server of the same user on the same port (with another data directory) would
//! bind without error, join the first one's group and take part of its connections
//! into another log. So before binding, a server claims its address: an abstract Unix
//! socket named after it (`@epro-ingest/listen/<ip>:<port>`, gone with the process,
//! whatever way it ends), and it refuses to start beside any listening TCP socket whose
//! address overlaps its own (the same address, or a wildcard `0.0.0.0`/`::` on either
//! side of the same port: the kernel hands the more specific listener the connections
//! to its address), whoever holds it. With port 0 the kernel picks a port no listener
//! has; the claim is then taken on the port it gave, right after binding.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};

/// A claimed address: held as long as this value (and the process) lives.
pub struct Claim {
    _socket: UnixListener,
}

/// Claims `addr` (a port other than 0) before it is bound, and checks that no listener
/// overlaps it.
pub fn claim_before_bind(addr: SocketAddr) -> Result<Claim, String> {
    let claim = claim(addr)?;
    if let Some(other) = overlapping_listener(addr) {
        return Err(format!(
            "cannot listen on {addr}: the port is in use: another process listens on \
             {other}, which overlaps it, and a second server would share its connections \
             (SO_REUSEPORT). One server per listen address: choose another address with \
             --listen"
        ));
    }
    Ok(claim)
}

/// Claims `addr` as bound (after a bind to port 0 gave its port), so that no later
/// server joins it.
pub fn claim(addr: SocketAddr) -> Result<Claim, String> {
    let name = format!("epro-ingest/listen/{addr}");
    let unix = UnixAddr::from_abstract_name(name.as_bytes())
        .map_err(|e| format!("claiming {addr}: {e}"))?;
    match UnixListener::bind_addr(&unix) {
        Ok(socket) => Ok(Claim { _socket: socket }),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "cannot listen on {addr}: another epro-ingest server (pid {}) listens there; \
             a second one would share its connections (SO_REUSEPORT). One server per \
             listen address: choose another address with --listen",
            holder(&unix).map_or("unknown".to_string(), |pid| pid.to_string())
        )),
        Err(e) => Err(format!("claiming {addr} (abstract socket @{name}): {e}")),
    }
}

/// The pid of the process holding a claim, from the peer credentials of a connection.
fn holder(unix: &UnixAddr) -> Option<i32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let stream = UnixStream::connect_addr(unix).ok()?;
    let creds = getsockopt(&stream.as_fd(), PeerCredentials).ok()?;
    Some(creds.pid())
}

/// A listening TCP socket (of any process in this network namespace) whose address
/// overlaps `addr`, from `/proc/net/tcp` and `/proc/net/tcp6`.
fn overlapping_listener(addr: SocketAddr) -> Option<SocketAddr> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(listener)
                .collect::<Vec<_>>()
        })
        .find(|other| other.port() == addr.port() && overlaps(other.ip(), addr.ip()))
}

/// The local address of a `/proc/net/tcp{,6}` line in state LISTEN (`0A`).
fn listener(line: &str) -> Option<SocketAddr> {
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let state = fields.nth(1)?;
    if state != "0A" {
        return None;
    }
    let (ip, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // Each 32-bit word is printed as the number the kernel holds in memory.
    let mut bytes = Vec::with_capacity(16);
    for word in 0..ip.len() / 8 {
        let value = u32::from_str_radix(&ip[8 * word..8 * word + 8], 16).ok()?;
        bytes.extend_from_slice(&value.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Whether connections to one address could reach a listener on the other (same port).
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (a, b) = (plain(a), plain(b));
    a.is_unspecified() || b.is_unspecified() || a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_sockets_of_both_tables() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0";
        assert_eq!(listener(v4), Some("127.0.0.1:8080".parse().unwrap()));
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(listener(&established), None);
        let v6 = "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0";
        assert_eq!(listener(v6), Some("[::]:8080".parse().unwrap()));
    }

    #[test]
    fn wildcards_overlap_every_address_of_their_port() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(overlaps(ip("0.0.0.0"), ip("127.0.0.1")));
        assert!(overlaps(ip("127.0.0.1"), ip("::")));
        assert!(overlaps(ip("::ffff:127.0.0.1"), ip("127.0.0.1")));
        assert!(!overlaps(ip("127.0.0.1"), ip("127.0.0.2")));
    }
}
