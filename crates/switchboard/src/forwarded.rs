//! The client address behind trusted reverse proxies (`--trusted-proxies`). A connection from
//! a proxy in the list carries its client's address in `Forwarded: for=` (RFC 7239) or, when
//! that header is absent, `X-Forwarded-For`; each proxy on the way appends the address it got
//! the request from. The client is the rightmost address that is not itself a trusted proxy:
//! what is left of it was written by the client or an untrusted hop and proves nothing, so a
//! client cannot pick the address it is counted under by sending the header itself. From an
//! untrusted peer the headers are ignored and the peer is the client.
//!
//! The standalone server uses the address for the per-IP cap (`per_ip`) and its logs;
//! nothing else reads the headers.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// The client address of a request as the standalone server determined it (the peer, or the
/// forwarded client behind a trusted proxy), in the request's extensions for the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

/// A block of addresses, e.g. `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a block does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IP address.
    #[error("{0:?} is not an IP address or a block such as 10.0.0.0/8")]
    Address(String),
    /// The prefix length is not a number within the address's bits.
    #[error("{block:?}: the prefix length must be 0 to {max}")]
    Prefix {
        /// The block as given.
        block: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// Bits are set past the prefix length (`10.1.0.0/8`), which usually means a typo.
    #[error("{block:?} has host bits set: did you mean {network}/{prefix}?")]
    HostBits {
        /// The block as given.
        block: String,
        /// The network the prefix gives.
        network: IpAddr,
        /// The prefix length.
        prefix: u8,
    },
}

impl Cidr {
    /// Parses `address/prefix`, or one address (a block of one).
    pub fn parse(text: &str) -> Result<Self, CidrError> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| CidrError::Address(text.to_owned()))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|&prefix| prefix <= max)
                .ok_or_else(|| CidrError::Prefix {
                    block: text.to_owned(),
                    max,
                })?,
        };
        let cidr = Self { network, prefix };
        let masked = cidr.masked(network);
        if masked != network {
            return Err(CidrError::HostBits {
                block: text.to_owned(),
                network: masked,
                prefix,
            });
        }
        Ok(cidr)
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && self.masked(ip) == self.network
    }

    /// `ip` with the bits past the prefix cleared.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((v4.to_bits() & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((v6.to_bits() & mask).into())
            }
        }
    }
}

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    blocks: Vec<Cidr>,
}

impl TrustedProxies {
    /// Parses a comma-separated list of blocks; empty entries are skipped.
    pub fn parse(list: &str) -> Result<Self, CidrError> {
        let blocks = list
            .split(',')
            .filter(|entry| !entry.trim().is_empty())
            .map(Cidr::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self { blocks })
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.blocks.iter().any(|block| block.contains(ip))
    }

    /// The client address of a request that `peer` sent with `headers`: `peer` itself unless it
    /// is trusted, else the rightmost forwarded address that is not a trusted proxy. An entry
    /// that is not an address (`unknown`, an obfuscated name) ends the walk at the last address
    /// known: nothing left of it can be attributed.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for entry in forwarded_for(headers).iter().rev() {
            match parse_node(entry) {
                Some(ip) => {
                    client = ip;
                    if !self.contains(ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }
}

/// The forwarded addresses, nearest the client first: the `for=` of every `Forwarded` element,
/// or, without that header, the entries of `X-Forwarded-For`; every header line in order.
fn forwarded_for(headers: &HeaderMap) -> Vec<String> {
    let lines = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let forwarded = lines("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|line| line.split(','))
            .map(|element| {
                element
                    .split(';')
                    .find_map(|pair| {
                        let (name, value) = pair.trim().split_once('=')?;
                        name.eq_ignore_ascii_case("for").then(|| value.to_owned())
                    })
                    .unwrap_or_default()
            })
            .collect();
    }
    lines("x-forwarded-for")
        .iter()
        .flat_map(|line| line.split(','))
        .map(str::to_owned)
        .collect()
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`, quoted or not.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn blocks_parse_at_their_edges() {
        assert!(
            Cidr::parse("10.0.0.0/8")
                .unwrap()
                .contains(ip("10.255.1.2"))
        );
        assert!(!Cidr::parse("10.0.0.0/8").unwrap().contains(ip("11.0.0.1")));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("203.0.113.9"))
        );
        assert!(Cidr::parse("192.0.2.7").unwrap().contains(ip("192.0.2.7")));
        assert!(
            !Cidr::parse("192.0.2.7/32")
                .unwrap()
                .contains(ip("192.0.2.8"))
        );
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains(ip("2001:db8:ffff::1"))
        );
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(!Cidr::parse("::/0").unwrap().contains(ip("10.0.0.1")));
        // An IPv4-mapped address is its IPv4 address.
        assert!(
            Cidr::parse("127.0.0.0/8")
                .unwrap()
                .contains(ip("::ffff:127.0.0.1"))
        );
        assert_eq!(
            Cidr::parse("10.0.0.0/33"),
            Err(CidrError::Prefix {
                block: "10.0.0.0/33".into(),
                max: 32
            })
        );
        assert!(Cidr::parse("2001:db8::/129").is_err());
        assert!(Cidr::parse("10.0.0.0/").is_err());
        assert!(Cidr::parse("10.0.0.0/-1").is_err());
        assert!(matches!(
            Cidr::parse("proxy.internal"),
            Err(CidrError::Address(_))
        ));
        let typo = Cidr::parse("10.1.0.0/8").unwrap_err();
        assert!(typo.to_string().contains("10.0.0.0/8"), "{typo}");
    }

    #[test]
    fn lists_skip_empty_entries_and_fail_on_any_bad_one() {
        let list = TrustedProxies::parse(" 10.0.0.0/8, ,192.168.0.0/16 ").unwrap();
        assert!(list.contains(ip("192.168.4.4")) && list.contains(ip("10.9.9.9")));
        assert!(!list.contains(ip("172.16.0.1")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse("10.0.0.0/8,nope").is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let sent = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("forwarded", "for=198.51.100.2"),
        ]);
        assert_eq!(proxies.client(ip("203.0.113.5"), &sent), ip("203.0.113.5"));
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_address() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let peer = ip("10.0.0.2");
        // A client that forged an entry: the proxy appended the real address after it.
        let forged = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.9")]);
        assert_eq!(proxies.client(peer, &forged), ip("203.0.113.7"));
        // Header lines count in order, as one list.
        let split = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.7:5555"),
        ]);
        assert_eq!(proxies.client(peer, &split), ip("203.0.113.7"));
        // Every hop trusted: the farthest one.
        let internal = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(proxies.client(peer, &internal), ip("10.1.1.1"));
        // No header: the proxy itself.
        assert_eq!(proxies.client(peer, &HeaderMap::new()), peer);
        // Garbage ends the walk at the last known address.
        let garbage = headers(&[("x-forwarded-for", "203.0.113.7, junk, 10.3.3.3")]);
        assert_eq!(proxies.client(peer, &garbage), ip("10.3.3.3"));
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_its_forms_parse() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let peer = ip("10.0.0.2");
        let both = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("forwarded", "for=192.0.2.60;proto=http;by=10.0.0.2"),
        ]);
        assert_eq!(proxies.client(peer, &both), ip("192.0.2.60"));
        let v6 = headers(&[(
            "forwarded",
            r#"For="[2001:db8:cafe::17]:4711", for=10.0.0.5"#,
        )]);
        assert_eq!(proxies.client(peer, &v6), ip("2001:db8:cafe::17"));
        let hidden = headers(&[("forwarded", "for=192.0.2.60, for=_hidden")]);
        assert_eq!(proxies.client(peer, &hidden), peer);
        let quoted = headers(&[("forwarded", r#"for="192.0.2.43:47011""#)]);
        assert_eq!(proxies.client(peer, &quoted), ip("192.0.2.43"));
    }
}
