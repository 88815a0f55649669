//! TXT look-ups, for an org's proof that it owns an email domain.
//!
//! An org claims a domain such as `acme.example`; coreauth hands it a token and believes the
//! claim once the domain's apex carries the TXT record `coreauth-verification=<token>`. Only
//! whoever controls the domain's DNS can publish that, which is what makes it a proof.
//!
//! The resolver is tuned for that check rather than for browsing: an admin publishes the record
//! and presses "verify" straight away, so answers are not cached (a cached "no such record" or
//! last week's value would fail a proof that is already good), and a DNS that does not answer
//! is reported within seconds as [`LookupFailure::Unreachable`], never as "no record", so a
//! resolver outage is not mistaken for a failed proof.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::rdata::TXT;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::{Resolver, TokioResolver};

/// How long one query waits for an answer: long enough for a distant authoritative server,
/// short enough that the admin pressing "verify" hears back while still looking at the page.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Queries sent again after the first fails (a lost UDP packet is common, two in a row rare):
/// a DNS that answers nothing costs at most (1 + RETRIES) × TIMEOUT.
const RETRIES: usize = 1;
/// Where queries go when the system's configuration cannot be read or names no server: the
/// C library's own default (resolv.conf(5)), rather than a public resolver that would learn
/// every domain our orgs claim without the operator having chosen it.
const FALLBACK_SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);

/// Looks up TXT records: through the servers named (host:port list), or the system's resolver
/// configuration. Cheap to clone: clones share one resolver and its connections.
#[derive(Clone)]
pub struct TxtResolver {
    resolver: TokioResolver,
}

/// Why a look-up gave no answer, as opposed to answering that there is no record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupFailure {
    /// The DNS could not answer: no reply in time, a refused connection, or an error code such
    /// as SERVFAIL or REFUSED. The text says which, for logs and the audit trail; it is no
    /// verdict on the domain, and the check may be tried again later.
    Unreachable(String),
    /// The name is not a plausible domain name, so it was not asked about at all.
    InvalidName,
}

impl fmt::Display for LookupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupFailure::Unreachable(reason) => write!(f, "the DNS could not answer: {reason}"),
            LookupFailure::InvalidName => f.write_str("not a valid domain name"),
        }
    }
}

impl std::error::Error for LookupFailure {}

impl fmt::Debug for TxtResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxtResolver").finish_non_exhaustive()
    }
}

impl TxtResolver {
    /// `servers`: comma-separated `ip:port` (`127.0.0.1:5353`, `[::1]:53`; a bare IP means
    /// port 53), each asked over UDP and, for long answers or when UDP fails, TCP. `None` or
    /// blank: the system's configuration (`/etc/resolv.conf`), or 127.0.0.1:53 if that cannot
    /// be read. Needs no runtime; look-ups need a tokio one.
    pub fn new(servers: Option<&str>) -> Result<Self, String> {
        let config = match servers.map(str::trim).filter(|list| !list.is_empty()) {
            Some(list) => ResolverConfig::from_name_servers(parse_servers(list)?),
            None => system_config(),
        };
        let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = options();
        let resolver = builder.build().map_err(|e| format!("DNS resolver: {e}"))?;
        Ok(Self { resolver })
    }

    /// Every TXT record at `name`, each as one string: a record's character-strings joined,
    /// since a value longer than 255 bytes is published as several. No such name, or no TXT
    /// there: `Ok(vec![])`. `name` is taken as fully qualified (no search domains).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, LookupFailure> {
        let name = fqdn(name)?;
        match self.resolver.txt_lookup(name).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(joined(txt)),
                    _ => None,
                })
                .collect()),
            // NXDOMAIN, or the name exists without TXT: an answer, and the answer is "none".
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(LookupFailure::Unreachable(reason(&e))),
        }
    }
}

fn parse_servers(list: &str) -> Result<Vec<NameServerConfig>, String> {
    list.split(',')
        .map(|entry| {
            let entry = entry.trim();
            let address = entry
                .parse::<SocketAddr>()
                .or_else(|_| entry.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| format!("DNS server {entry:?} is not ip:port"))?;
            Ok(name_server(address))
        })
        .collect()
}

fn name_server(address: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = address.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = address.port();
    NameServerConfig::new(address.ip(), true, vec![udp, tcp])
}

fn system_config() -> ResolverConfig {
    // Only the servers are taken from the system: its search domains never apply (names are
    // fully qualified) and its timeouts are replaced by ours in `options`.
    let fallback = || ResolverConfig::from_name_servers(vec![name_server(FALLBACK_SERVER)]);
    match hickory_resolver::system_conf::read_system_conf() {
        Ok((config, _)) if !config.name_servers().is_empty() => config,
        Ok(_) => {
            tracing::warn!(
                "the system's resolver configuration names no DNS server; using {FALLBACK_SERVER}"
            );
            fallback()
        }
        Err(e) => {
            tracing::warn!(error = %e, "the system's resolver configuration cannot be read; using {FALLBACK_SERVER}");
            fallback()
        }
    }
}

fn options() -> ResolverOpts {
    let mut options = ResolverOpts::default();
    options.timeout = TIMEOUT;
    options.attempts = RETRIES;
    // No cache: a proof is checked right after the record is published (or removed), and a
    // check is rare enough that asking every time costs nothing. A zero TTL cap as well, so a
    // response never outlives its own look-up whatever the cache does with capacity zero.
    options.cache_size = 0;
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
    // /etc/hosts holds no TXT records, and a proof must come from the DNS.
    options.use_hosts_file = ResolveHosts::Never;
    // Some networks drop or mangle large UDP answers; the proof must not depend on that.
    options.try_tcp_on_error = true;
    options.preserve_intermediates = false;
    options
}

/// `name` as a fully qualified name, or `InvalidName` if it is not a plausible domain name.
fn fqdn(name: &str) -> Result<Name, LookupFailure> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if !plausible(bare) {
        return Err(LookupFailure::InvalidName);
    }
    let mut name = Name::from_ascii(bare).map_err(|_| LookupFailure::InvalidName)?;
    name.set_fqdn(true);
    Ok(name)
}

/// Letters, digits, hyphens and underscores (`_dmarc`-style labels), 1 to 63 to a label and
/// 253 in all, no label starting or ending with a hyphen, and a last label that is not all
/// digits, so an IP address is not taken for a name. Internationalised names come as their
/// ASCII (`xn--`) form: Unicode is refused rather than converted here, where an error in the
/// conversion would look like a missing record.
fn plausible(name: &str) -> bool {
    fn label_ok(label: &str) -> bool {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(label_ok)
        && name
            .rsplit('.')
            .next()
            .is_some_and(|last| !last.bytes().all(|b| b.is_ascii_digit()))
}

/// One record's character-strings as one value, joined as bytes before decoding so that a
/// UTF-8 character split across two strings survives. Bytes that are not UTF-8 become U+FFFD:
/// such a value can never equal a token coreauth issued, which is all it is compared with.
fn joined(txt: &TXT) -> String {
    let bytes: Vec<u8> = txt
        .txt_data
        .iter()
        .flat_map(|s| s.iter().copied())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn reason(error: &NetError) -> String {
    match error {
        NetError::Timeout => format!("no answer within {}s", TIMEOUT.as_secs()),
        NetError::Dns(DnsError::ResponseCode(code)) => format!("the DNS server answered {code}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn plausible_names_are_taken_as_fully_qualified() {
        for name in [
            "acme.example",
            "acme.example.",
            "ACME.Example",
            "_coreauth.acme.example",
            "xn--bcher-kva.example",
            "a-b.c1.example",
            "localhost",
            "1password.com",
        ] {
            let fq = fqdn(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(fq.is_fqdn(), "{name}");
            assert_eq!(
                fq.to_ascii().trim_end_matches('.'),
                name.trim_end_matches('.')
            );
        }
    }

    #[test]
    fn implausible_names_are_refused_before_any_query() {
        let long_label = format!("{}.example", "a".repeat(64));
        let long_name = format!("{}example", "abcdefghi.".repeat(25)); // 257 bytes
        for name in [
            "",
            ".",
            "..",
            "acme..example",
            ".acme.example",
            "acme.example..",
            "-acme.example",
            "acme-.example",
            "acme example",
            "acme.example/path",
            "user@acme.example",
            "acme.example:53",
            "bücher.example",
            "acme\\.example",
            "acme.example\0",
            "*.acme.example",
            "127.0.0.1",
            "::1",
            "[::1]",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert_eq!(fqdn(name), Err(LookupFailure::InvalidName), "{name:?}");
        }
        // 63-byte labels and 253 bytes in all are the limits, not past them.
        let longest = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(longest.len(), 253);
        assert!(fqdn(&longest).is_ok());
    }

    #[test]
    fn a_record_split_into_character_strings_is_one_value() {
        let txt = TXT::from_bytes(vec![b"coreauth-verification=", b"abc", "\u{e9}".as_bytes()]);
        assert_eq!(joined(&txt), "coreauth-verification=abc\u{e9}");
        // A two-byte character cut between two strings is still one character.
        let e_acute = "\u{e9}".as_bytes();
        let txt = TXT::from_bytes(vec![b"x", &e_acute[..1], &e_acute[1..]]);
        assert_eq!(joined(&txt), "x\u{e9}");
    }

    #[test]
    fn servers_are_ip_port_lists() {
        assert!(TxtResolver::new(Some("127.0.0.1:5353")).is_ok());
        assert!(TxtResolver::new(Some(" 127.0.0.1:5353 , [::1]:53,10.0.0.1")).is_ok());
        assert!(
            TxtResolver::new(Some("  ")).is_ok(),
            "blank is the system's"
        );
        assert!(TxtResolver::new(None).is_ok());
        for bad in [
            "dns.example:53",
            "127.0.0.1:",
            "127.0.0.1:99999",
            "127.0.0.1:53,",
            "::1:53:x",
        ] {
            let error = TxtResolver::new(Some(bad)).unwrap_err();
            assert!(error.contains("is not ip:port"), "{bad}: {error}");
        }
        let servers = parse_servers("127.0.0.1:5353").unwrap();
        assert_eq!(servers[0].ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(servers[0].connections.iter().all(|c| c.port == 5353));
        assert_eq!(servers[0].connections.len(), 2, "UDP and TCP");
    }

    #[tokio::test]
    async fn an_invalid_name_fails_without_asking() {
        // Nothing listens on port 9 (discard) here, and nothing is sent: the name is refused
        // first, so this returns at once instead of waiting out the timeout.
        let resolver = TxtResolver::new(Some("127.0.0.1:9")).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            resolver.txt("not a name").await,
            Err(LookupFailure::InvalidName)
        );
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
