//! Reaching an org's OpenID provider: its discovery document (reused for a while, and not asked
//! again for a short while after it failed), the HTTP client that fetches it and its tokens, and
//! the networks that client may reach.
//!
//! The issuer is chosen by an org admin and fetched on an anonymous request (`/sso/start`), so
//! without a fence any org admin could make coreauth probe its own network (SSRF). Loopback,
//! private, link-local and other non-public addresses are refused unless the operator names
//! them (`COREAUTH_SSO_ALLOWED_NETWORKS`, e.g. for an on-premises ADFS), for the issuer and for
//! every endpoint the discovery document names; host names are checked where they resolve,
//! in the client's own resolver, so a name that resolves to an allowed address at configuration
//! and to a private one at sign-in (DNS rebinding) is refused too.
//!
//! Errors are the reason, as text: the caller (`domain::sso`) keeps it for the audit trail and
//! tells the person only that the provider could not be reached.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use openidconnect::IssuerUrl;
use openidconnect::core::CoreProviderMetadata;
use time::OffsetDateTime;
use url::{Host, Url};

/// How long a provider's discovery document (and its JWKS) is reused.
const METADATA_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a provider whose discovery failed is not asked again: a dead or refused issuer
/// costs one fetch per this period, however often anonymous callers start a sign-in.
const FAILURE_BACKOFF: Duration = Duration::from_secs(30);

/// Which addresses outbound requests (to identity providers, and remote integrations'
/// endpoints) may reach: public unicast ones,
/// and those in the networks the operator allowed.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    allowed: Vec<IpNet>,
}

impl NetworkPolicy {
    /// From a comma-separated list of CIDRs (`10.20.0.0/16, 127.0.0.1/32`); a bare address is
    /// a network of one.
    pub fn parse(list: &str) -> Result<Self, String> {
        Ok(Self {
            allowed: crate::config::parse_networks(list)?,
        })
    }

    pub fn permits(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        is_public(address) || self.allowed.iter().any(|net| net.contains(&address))
    }

    /// Whether `url` may be plain `http`: only to a loopback address the operator listed (the
    /// tests' local servers); everything else coreauth sends a secret to must be `https`.
    pub fn allows_plain_http(&self, url: &Url) -> bool {
        let address = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return false,
        };
        address.is_loopback() && self.allowed.iter().any(|net| net.contains(&address))
    }

    /// Refuses a URL whose host is an address this policy does not permit (names are checked
    /// when they resolve, by `PolicedResolver`).
    pub(crate) fn check_url(&self, url: &Url) -> Result<(), String> {
        let address = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(Host::Domain(_)) => return Ok(()),
            None => return Err(format!("{url} has no host")),
        };
        if self.permits(address) {
            Ok(())
        } else {
            Err(format!("{address} is on a network coreauth may not reach"))
        }
    }

    /// Refuses an issuer on a network that is not permitted: its address, or every address its
    /// name resolves to now (a name that does not resolve is left to fail at sign-in).
    pub async fn check_issuer(&self, issuer: &Url) -> Result<(), String> {
        self.check_destination(issuer, "the issuer").await
    }

    /// Refuses `url` (`what`, as the message names it) on a network that is not permitted, as
    /// `check_issuer` does: checked at configuration so an admin hears of it then; the
    /// resolver checks again at every request.
    pub async fn check_destination(&self, url: &Url, what: &str) -> Result<(), String> {
        let refused = |detail: String| {
            format!(
                "{what} is refused: {detail} (an operator may allow it with \
                 COREAUTH_SSO_ALLOWED_NETWORKS)"
            )
        };
        self.check_url(url).map_err(refused)?;
        if let Some(Host::Domain(name)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            if let Ok(addresses) = tokio::net::lookup_host((name, port)).await {
                let addresses: Vec<SocketAddr> = addresses.collect();
                if !addresses.is_empty() && !addresses.iter().any(|a| self.permits(a.ip())) {
                    return Err(refused(format!(
                        "{name} resolves to a network coreauth may not reach"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Whether an address is public unicast: not loopback, private (RFC 1918, ULA), link-local,
/// shared (CGNAT), documentation, benchmarking, multicast, broadcast or unspecified.
fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// The HTTP client's resolver: the system's, keeping only the addresses the policy permits.
struct PolicedResolver(Arc<NetworkPolicy>);

impl reqwest::dns::Resolve for PolicedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let permitted: Vec<SocketAddr> = found.filter(|a| policy.permits(a.ip())).collect();
            if permitted.is_empty() {
                return Err(format!(
                    "{} resolves to no address coreauth may reach",
                    name.as_str()
                )
                .into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(permitted.into_iter());
            Ok(addresses)
        })
    }
}

/// The identity providers coreauth talks to.
pub struct Providers {
    http: reqwest::Client,
    policy: Arc<NetworkPolicy>,
    metadata: Mutex<HashMap<String, (CoreProviderMetadata, OffsetDateTime)>>,
    failures: Mutex<HashMap<String, OffsetDateTime>>,
}

/// A client whose names resolve only to addresses `policy` permits, and that follows no
/// redirect (an endpoint must answer, not send coreauth elsewhere: SSRF hygiene).
pub(crate) fn policed_client(policy: &Arc<NetworkPolicy>) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(PolicedResolver(policy.clone())))
}

impl Providers {
    pub fn new(policy: NetworkPolicy) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let http = policed_client(&policy)
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            policy,
            metadata: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    /// The client for every request to a provider (token exchange, userinfo).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A document an admin pointed coreauth at (a SAML IdP's metadata): at most `limit` bytes,
    /// fetched under the same network policy as the providers.
    pub async fn fetch_document(&self, url: &Url, limit: usize) -> Result<String, String> {
        self.policy.check_url(url)?;
        let mut response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > limit {
                return Err(format!("{url} answered more than {limit} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| format!("{url} answered something other than text"))
    }

    /// The issuer's discovery document: the one read less than `METADATA_TTL` ago unless
    /// `fresh`; none while the last attempt failed less than `FAILURE_BACKOFF` ago. Every
    /// endpoint it names that coreauth fetches must be on a permitted network.
    pub async fn metadata(
        &self,
        issuer: &str,
        fresh: bool,
        now: OffsetDateTime,
    ) -> Result<CoreProviderMetadata, String> {
        if !fresh
            && let Ok(cache) = self.metadata.lock()
            && let Some((metadata, at)) = cache.get(issuer)
            && now - *at < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        if let Ok(failures) = self.failures.lock()
            && let Some(at) = failures.get(issuer)
            && now - *at < FAILURE_BACKOFF
        {
            return Err("not asked again yet: the last attempt failed moments ago".into());
        }
        match self.discover(issuer).await {
            Ok(metadata) => {
                if let Ok(mut cache) = self.metadata.lock() {
                    cache.insert(issuer.to_owned(), (metadata.clone(), now));
                }
                if let Ok(mut failures) = self.failures.lock() {
                    failures.remove(issuer);
                }
                Ok(metadata)
            }
            Err(error) => {
                if let Ok(mut failures) = self.failures.lock() {
                    failures.insert(issuer.to_owned(), now);
                }
                Err(error)
            }
        }
    }

    async fn discover(&self, issuer: &str) -> Result<CoreProviderMetadata, String> {
        let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(|e| e.to_string())?;
        self.policy.check_url(issuer_url.url())?;
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &self.http)
            .await
            .map_err(|e| e.to_string())?;
        let fetched = [
            metadata.token_endpoint().map(|u| u.url()),
            metadata.userinfo_endpoint().map(|u| u.url()),
            Some(metadata.jwks_uri().url()),
        ];
        for url in fetched.into_iter().flatten() {
            self.policy.check_url(url)?;
        }
        Ok(metadata)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass_unless_allowed() {
        let none = NetworkPolicy::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!none.permits(refused.parse().unwrap()), "{refused}");
        }
        for public in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(none.permits(public.parse().unwrap()), "{public}");
        }
        let lab = NetworkPolicy::parse("10.20.0.0/16, 127.0.0.1").unwrap();
        assert!(lab.permits("10.20.3.4".parse().unwrap()));
        assert!(lab.permits("127.0.0.1".parse().unwrap()));
        assert!(!lab.permits("10.21.0.1".parse().unwrap()));
        assert!(!lab.permits("127.0.0.2".parse().unwrap()));
        assert!(NetworkPolicy::parse("not a network").is_err());
    }

    #[test]
    fn urls_with_refused_address_hosts_are_refused() {
        let none = NetworkPolicy::default();
        for url in [
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "https://10.0.0.1/x",
        ] {
            assert!(none.check_url(&Url::parse(url).unwrap()).is_err(), "{url}");
        }
        assert!(
            none.check_url(&Url::parse("https://login.example.com/").unwrap())
                .is_ok()
        );
    }
}
