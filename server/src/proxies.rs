//! Which address a request comes from, when proxies stand in front of the
//! edge. Pure logic over addresses and header text; no HTTP types.
//!
//! `X-Forwarded-For` is believed only from the networks of
//! `--trusted-proxies`. From a trusted peer, the list is read right to left
//! (each proxy appends the address it saw) and the first address that is not
//! itself a trusted proxy is the client. Anyone else could write anything in
//! that header, so from an untrusted peer it is ignored.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is
/// a network of one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or network (e.g. 10.0.0.0/8)"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// The client address of a request from `peer` whose `X-Forwarded-For`
/// headers, in order, are `forwarded_for`.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            // A hop that is not an address ends what can be believed; the
            // last trusted proxy's view stands.
            None => break,
            Some(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn networks() {
        let n: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains(ip("10.1.255.3")));
        assert!(n.contains(ip("::ffff:10.1.0.1")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(!n.contains(ip("::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted = nets(&["10.0.0.0/8"]);
        // Untrusted peer: its header is ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), ["198.51.100.1"], &trusted),
            ip("203.0.113.9")
        );
        // Trusted peer: the rightmost untrusted hop is the client.
        assert_eq!(
            client_ip(ip("10.0.0.2"), ["198.51.100.1"], &trusted),
            ip("198.51.100.1")
        );
        // A client forging the header only adds entries left of its own.
        assert_eq!(
            client_ip(
                ip("10.0.0.2"),
                ["1.1.1.1, 198.51.100.1, 10.0.0.3"],
                &trusted
            ),
            ip("198.51.100.1")
        );
        // Several headers read as one list, in order.
        assert_eq!(
            client_ip(ip("10.0.0.2"), ["1.1.1.1", "198.51.100.1:4000"], &trusted),
            ip("198.51.100.1")
        );
        // Garbage stops the walk at the last believable hop.
        assert_eq!(
            client_ip(ip("10.0.0.2"), ["198.51.100.1, junk, 10.0.0.5"], &trusted),
            ip("10.0.0.5")
        );
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(client_ip(ip("10.0.0.2"), [], &trusted), ip("10.0.0.2"));
        // Nothing trusted: never believed.
        assert_eq!(
            client_ip(ip("10.0.0.2"), ["198.51.100.1"], &[]),
            ip("10.0.0.2")
        );
    }
}
