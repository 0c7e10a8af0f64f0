//! Reverse proxies the server trusts (`trusted_proxies`) and the client a trusted
//! proxy names in `X-Forwarded-For`, for the access log.

use std::net::IpAddr;

use super::Config;

/// An IP network: an address and how many of its leading bits a member shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `fd00::/8`, or one address.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr.parse::<IpAddr>().ok()?, Some(bits.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let as_v6 = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6, |v4| v4.to_ipv6_mapped()),
        };
        let extra = if self.addr.is_ipv4() { 96 } else { 0 };
        let bits = u32::from(self.bits) + extra;
        let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
        u128::from(as_v6(self.addr)) & mask == u128::from(as_v6(ip)) & mask
    }
}

impl Config {
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }

    /// The client a trusted proxy's `X-Forwarded-For` names: the rightmost address
    /// that is not itself a trusted proxy (entries to its left are the client's to
    /// write, and may be forged). `None` when the chain holds no valid one.
    pub fn forwarded_client(&self, chain: &[u8]) -> Option<IpAddr> {
        let chain = std::str::from_utf8(chain).ok()?;
        for entry in chain.rsplit(',') {
            let ip = entry.trim().parse::<IpAddr>().ok()?;
            if !self.is_trusted_proxy(ip) {
                return Some(ip);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses_in_either_family() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.200.1.2")) && !net.contains(ip("11.0.0.1")));
        // A v4 client seen on a dual-stack socket.
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "fd00::/129", "host", "10.0.0.0/x", ""] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}
