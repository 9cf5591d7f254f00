//! Which address a request really came from: the connection's peer, or — when the peer
//! is a proxy this process trusts (`--trusted-proxies`) — the client that proxy names in
//! `X-Forwarded-For`.
//!
//! The balancer trusts the proxies in front of it and passes on one address, the
//! client's, in `X-Forwarded-For`; an app server trusts the balancer (loopback by
//! default, the balancer hosts when scaled out) and reads that address. A header from
//! any other peer is ignored: anybody can write one.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client behind a request from `peer`: walking `X-Forwarded-For` from the right
    /// (the hop nearest us) past the proxies we trust, the first address we do not; the
    /// peer itself when it is not trusted or names nobody. A malformed entry stops the
    /// walk at the last address that was believed.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.into_iter().rev() {
            let Ok(address) = hop.parse::<IpAddr>() else {
                break;
            };
            client = canonical(address);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// An IPv4 address as itself, not as `::ffff:a.b.c.d` (how a dual-stack listener sees it).
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// A `--trusted-proxies` entry: a network (`10.0.0.0/8`) or one address.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is neither an address nor a network such as 10.0.0.0/8"))
}

/// Whether `address` is on the public internet: what a real client's address is, and
/// what the load simulator's virtual users get.
pub fn is_public(address: IpAddr) -> bool {
    match canonical(address) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            // Global unicast is 2000::/3; within it 2001:db8::/32 is documentation.
            (first & 0xe000) == 0x2000 && !(first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(&X_FORWARDED_FOR, HeaderValue::from_str(value).expect("value"));
        }
        headers
    }

    fn loopback_and_ten() -> TrustedProxies {
        TrustedProxies::new(
            ["127.0.0.0/8", "::1", "10.0.0.0/8"]
                .into_iter()
                .map(|text| parse_network(text).expect("network"))
                .collect(),
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = loopback_and_ten();
        assert_eq!(
            trusted.client(ip("203.0.113.9"), &headers(&["1.2.3.4"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_peer_names_the_client_and_trusted_hops_are_skipped() {
        let trusted = loopback_and_ten();
        assert_eq!(trusted.client(ip("127.0.0.1"), &headers(&["1.2.3.4"])), ip("1.2.3.4"));
        // A spoofed entry on the left is not believed: 5.6.7.8 is the first untrusted hop.
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &headers(&["9.9.9.9, 5.6.7.8, 10.1.1.1"])),
            ip("5.6.7.8")
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &headers(&["9.9.9.9", "10.1.1.1"])),
            ip("9.9.9.9")
        );
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), &headers(&["1.2.3.4"])),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn nothing_or_garbage_leaves_the_last_believed_address() {
        let trusted = loopback_and_ten();
        assert_eq!(trusted.client(ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"));
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &headers(&["1.2.3.4, nonsense"])),
            ip("127.0.0.1")
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &headers(&["nonsense, 10.0.0.2"])),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn networks_parse_with_or_without_a_prefix() {
        assert!(parse_network("10.0.0.0/8").is_ok());
        assert!(parse_network("::1").is_ok());
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("lan").is_err());
    }

    #[test]
    fn public_addresses_are_told_from_the_rest() {
        for public in ["8.8.8.8", "81.2.69.160", "2a00:1450:4001::1"] {
            assert!(is_public(ip(public)), "{public}");
        }
        for private in [
            "10.1.2.3",
            "192.168.0.1",
            "127.0.0.1",
            "100.64.0.1",
            "240.0.0.1",
            "::1",
            "2001:db8::1",
            "fe80::1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
    }
}
