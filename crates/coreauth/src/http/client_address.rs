//! Which address a request comes from. Behind a load balancer the socket's peer is the
//! balancer, and the client is in `Forwarded` (RFC 7239) or `X-Forwarded-For`; but anyone can
//! send those headers, so they are believed only from the peers named in
//! `COREAUTH_TRUSTED_PROXIES`, and only as far as the chain of trusted proxies goes: the client
//! is the right-most address that is not a trusted proxy (everything to its left was written by
//! the client itself, or by proxies we know nothing about).
//!
//! The address found here is what the audit trail records, what "first use from a new
//! address" compares and what the per-address limits count (`extract::origin_of` reads it).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, header};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The client's address as this request's chain of trusted proxies tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The peers whose forwarding headers are believed: none by default.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

/// An IPv4-mapped IPv6 address is the IPv4 address (a dual-stack listener reports them so).
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// One hop of a forwarding header: an address, with or without a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`); `None` for RFC 7239's `unknown` and obfuscated `_names`.
fn hop_address(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    // `[2001:db8::1]` without a port.
    text.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
        .map(canonical)
}

/// The `for=` hops of every `Forwarded` header, left to right; `None` when there is none.
fn forwarded_hops(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let values: Vec<&str> = headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return None;
    }
    let hops = values
        .iter()
        .flat_map(|value| value.split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, value)| hop_address(value))
        })
        .collect();
    Some(hops)
}

/// The hops of every `X-Forwarded-For` header, left to right.
fn x_forwarded_for_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(hop_address)
        .collect()
}

impl TrustedProxies {
    /// From a comma-separated list of CIDRs (`10.0.0.0/8, 192.0.2.10`); a bare address is a
    /// network of one.
    pub fn parse(list: &str) -> Result<Self, String> {
        Ok(Self {
            networks: crate::config::parse_networks(list)?,
        })
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(&address))
    }

    /// The client of a request from `peer` with these headers: `peer` itself unless it is a
    /// trusted proxy; otherwise the right-most hop of `Forwarded` (or, without it,
    /// `X-Forwarded-For`) that is not one, stopping at a hop that names no address (the
    /// nearest trusted proxy is then the best we know).
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops = forwarded_hops(headers).unwrap_or_else(|| x_forwarded_for_hops(headers));
        for hop in hops.into_iter().rev() {
            match hop {
                Some(address) => {
                    client = address;
                    if !self.trusts(address) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }
}

/// Middleware: records the request's client address (`ClientAddress`) for `origin_of`.
pub async fn resolve(
    axum::extract::State(proxies): axum::extract::State<Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    if let Some(peer) = peer {
        let client = proxies.client_of(peer, request.headers());
        request.extensions_mut().insert(ClientAddress(client));
    }
    next.run(request).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let none = TrustedProxies::default();
        let spoofed = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=198.51.100.1"),
        ]);
        assert_eq!(none.client_of(ip("192.0.2.1"), &spoofed), ip("192.0.2.1"));
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            proxies.client_of(ip("192.0.2.1"), &spoofed),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn the_client_is_the_right_most_hop_that_is_not_a_trusted_proxy() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        // The client wrote the left-most entry itself; the balancer appended the real one.
        let chain = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.1.2.3")]);
        assert_eq!(
            proxies.client_of(ip("127.0.0.1"), &chain),
            ip("203.0.113.7")
        );
        let split = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert_eq!(proxies.client_of(ip("10.0.0.5"), &split), ip("203.0.113.7"));
        // Nothing forwarded: the proxy itself.
        assert_eq!(
            proxies.client_of(ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5")
        );
        // Only trusted hops: the left-most of them.
        let inside = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.2.3")]);
        assert_eq!(proxies.client_of(ip("10.0.0.5"), &inside), ip("10.9.9.9"));
    }

    #[test]
    fn forwarded_is_read_with_ports_quotes_and_ipv6_and_wins_over_x_forwarded_for() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let both = headers(&[
            (
                "forwarded",
                "for=198.51.100.1;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1",
            ),
            ("x-forwarded-for", "203.0.113.99"),
        ]);
        assert_eq!(
            proxies.client_of(ip("10.0.0.5"), &both),
            ip("2001:db8:cafe::17")
        );
        let with_port = headers(&[("forwarded", "for=\"192.0.2.60:8080\"")]);
        assert_eq!(
            proxies.client_of(ip("10.0.0.5"), &with_port),
            ip("192.0.2.60")
        );
        // An obfuscated or unknown hop: the nearest trusted proxy is all we know.
        let hidden = headers(&[("forwarded", "for=198.51.100.1, for=_hidden, for=10.1.1.1")]);
        assert_eq!(proxies.client_of(ip("10.0.0.5"), &hidden), ip("10.1.1.1"));
        let garbage = headers(&[("x-forwarded-for", "not an address")]);
        assert_eq!(proxies.client_of(ip("10.0.0.5"), &garbage), ip("10.0.0.5"));
    }

    #[test]
    fn ipv4_mapped_peers_are_their_ipv4_address() {
        let proxies = TrustedProxies::parse("127.0.0.1").unwrap();
        let chain = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            proxies.client_of(ip("::ffff:127.0.0.1"), &chain),
            ip("203.0.113.7")
        );
        assert!(TrustedProxies::parse("not-a-network").is_err());
    }
}
