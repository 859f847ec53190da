//! Which URLs the crawler may fetch (architecture.md §10): http(s) only, and never a private,
//! loopback, link-local or otherwise non-public address — checked on the resolved addresses, so a
//! public name that resolves to 127.0.0.1 is refused too, and again at every redirect hop — unless
//! the address is in a configured allow-list (tests allow-list loopback to crawl the synthetic
//! web).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::Url;

/// Why a URL may not be fetched; the label is the `reason` of the skip metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not http or https.
    #[error("scheme {0:?} is not http(s)")]
    Scheme(String),
    /// The URL has no host.
    #[error("the URL has no host")]
    NoHost,
    /// The host did not resolve.
    #[error("cannot resolve {0}")]
    Unresolvable(String),
    /// The host resolves to an address the crawler must not reach.
    #[error("{host} resolves to {addr}, a {class} address")]
    PrivateAddress {
        /// The host.
        host: String,
        /// The refused address.
        addr: IpAddr,
        /// What kind of address it is.
        class: &'static str,
    },
}

impl Refusal {
    /// Low-cardinality label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Scheme(_) => "scheme",
            Self::NoHost => "no_host",
            Self::Unresolvable(_) => "unresolvable",
            Self::PrivateAddress { .. } => "private_address",
        }
    }
}

/// An address range `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|e| format!("{s:?}: {e}"))?,
            None => max,
        };
        if prefix > max {
            return Err(format!("{s:?}: prefix longer than {max}"));
        }
        Ok(Self { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
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

/// What kind of non-public address `ip` is, if it is one.
pub fn non_public_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_class(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if first & 0xfe00 == 0xfc00 {
                Some("unique-local")
            } else if first == 0x2001 && v6.segments()[1] == 0x0db8 {
                Some("documentation")
            } else if first == 0x0064 && v6.segments()[1] == 0xff9b {
                // NAT64 can reach any IPv4 address, private ones included.
                Some("nat64")
            } else if first & 0xffc0 == 0xfec0 {
                Some("site-local")
            } else if first == 0x2002 {
                // 6to4 embeds an IPv4 address that a relay would reach, private ones included.
                Some("6to4")
            } else if first == 0x2001 && v6.segments()[1] == 0 {
                // Teredo tunnels to an embedded IPv4 address.
                Some("teredo")
            } else if v6.segments()[..6] == [0; 6] {
                // IPv4-compatible (::a.b.c.d, deprecated): the embedded address decides.
                let [.., hi, lo] = v6.segments();
                v4_class(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
                    .or(Some("ipv4-compatible"))
            } else {
                None
            }
        }
    }
}

fn v4_class(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if v4.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if v4.is_broadcast() || v4.is_multicast() || a >= 240 {
        Some("multicast or reserved")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT")
    } else if v4.is_documentation() || (a == 198 && (b == 18 || b == 19)) {
        Some("documentation or benchmarking")
    } else {
        None
    }
}

/// The crawler's address policy.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    allow: Vec<Cidr>,
}

impl UrlPolicy {
    /// A policy that refuses every non-public address except those in `allow`.
    pub fn new(allow: Vec<Cidr>) -> Self {
        Self { allow }
    }

    /// Checks one resolved address.
    pub fn check_addr(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        match non_public_class(ip) {
            Some(class) => Err(Refusal::PrivateAddress {
                host: host.to_string(),
                addr: ip,
                class,
            }),
            None => Ok(()),
        }
    }

    /// Checks a URL: scheme, then every address its host resolves to (all must pass, so that DNS
    /// answers mixing public and private addresses are refused). Returns the addresses to connect
    /// to, which the fetcher must use so that a second lookup cannot return something else.
    pub async fn check(&self, url: &Url) -> Result<Vec<SocketAddr>, Refusal> {
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(Refusal::Scheme(other.to_string())),
        }
        let host = url.host_str().ok_or(Refusal::NoHost)?;
        let port = url.port_or_known_default().unwrap_or(80);
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| Refusal::Unresolvable(host.to_string()))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(Refusal::Unresolvable(host.to_string()));
        }
        for addr in &addrs {
            self.check_addr(host, addr.ip())?;
        }
        Ok(addrs)
    }
}

/// The IPv6 loopback, for allow-lists.
pub const IPV6_LOOPBACK: Ipv6Addr = Ipv6Addr::LOCALHOST;

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[tokio::test]
    async fn private_loopback_and_link_local_addresses_are_refused() {
        let policy = UrlPolicy::default();
        for target in [
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://localhost:8080/",
            // IPv6 forms that embed or tunnel to IPv4, and the deprecated site-local range.
            "http://[2002:a00:1::]/",
            "http://[2001:0:4136:e378::1]/",
            "http://[::127.0.0.1]/",
            "http://[fec0::1]/",
            // Loopback spelled as a decimal, hexadecimal or short IPv4 literal.
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
        ] {
            let err = policy.check(&url(target)).await.unwrap_err();
            assert_eq!(err.reason(), "private_address", "{target}: {err}");
        }
    }

    #[tokio::test]
    async fn other_schemes_and_unresolvable_hosts_are_refused() {
        let policy = UrlPolicy::default();
        for (target, reason) in [
            ("file:///etc/passwd", "scheme"),
            ("ftp://example.org/x", "scheme"),
            ("gopher://127.0.0.1:6379/_FLUSHALL", "scheme"),
            ("http://no-such-host.invalid/", "unresolvable"),
        ] {
            let err = policy.check(&url(target)).await.unwrap_err();
            assert_eq!(err.reason(), reason, "{target}: {err}");
        }
    }

    #[tokio::test]
    async fn public_addresses_pass_and_allow_lists_open_exactly_their_range() {
        let policy = UrlPolicy::default();
        assert!(policy.check(&url("http://93.184.216.34/")).await.is_ok());
        assert!(
            policy
                .check(&url("http://[2606:4700::1111]/"))
                .await
                .is_ok()
        );
        let loopback = UrlPolicy::new(vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]);
        let addrs = loopback
            .check(&url("http://127.0.0.1:8088/s/x.html"))
            .await
            .unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:8088".parse().unwrap()]);
        assert!(loopback.check(&url("http://[::1]:80/")).await.is_ok());
        assert!(loopback.check(&url("http://localhost/")).await.is_ok());
        // Allow-listing loopback does not open the private ranges.
        let err = loopback.check(&url("http://10.0.0.1/")).await.unwrap_err();
        assert_eq!(err.reason(), "private_address");
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.255.1.2".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }
}
