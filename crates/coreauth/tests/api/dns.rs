//! `coreauth::dns::TxtResolver` against a real authoritative server in this process
//! (`dns_server::TestDns`): what a domain-verification check will see as records are
//! published, changed and removed, and when the DNS does not answer.

use std::time::{Duration, Instant};

use coreauth::dns::{LookupFailure, TxtResolver};
use tokio::net::UdpSocket;

use crate::dns_server::TestDns;

async fn server_and_resolver() -> (TestDns, TxtResolver) {
    let dns = TestDns::start(&["acme.example", "other.example"]).await;
    let resolver = TxtResolver::new(Some(&dns.servers())).unwrap();
    (dns, resolver)
}

#[tokio::test]
async fn a_record_just_published_is_seen_changed_and_gone() {
    let (dns, resolver) = server_and_resolver().await;
    // Asked before it exists: the "none" answer must not be remembered either.
    assert_eq!(resolver.txt("acme.example").await, Ok(vec![]));

    dns.set_txt("acme.example", &["coreauth-verification=first"])
        .await;
    assert_eq!(
        resolver.txt("acme.example").await,
        Ok(vec!["coreauth-verification=first".to_owned()])
    );

    // The zone's TTLs are an hour: a cache would still answer "first".
    dns.set_txt(
        "acme.example",
        &["v=spf1 -all", "coreauth-verification=second"],
    )
    .await;
    let mut values = resolver.txt("acme.example").await.unwrap();
    values.sort();
    assert_eq!(values, ["coreauth-verification=second", "v=spf1 -all"]);

    dns.remove_txt("acme.example").await;
    assert_eq!(resolver.txt("acme.example").await, Ok(vec![]));
}

#[tokio::test]
async fn names_are_exact_and_fully_qualified() {
    let (dns, resolver) = server_and_resolver().await;
    dns.set_txt("_coreauth.acme.example", &["coreauth-verification=sub"])
        .await;
    dns.set_txt("other.example", &["coreauth-verification=other"])
        .await;

    assert_eq!(
        resolver.txt("_coreauth.acme.example.").await,
        Ok(vec!["coreauth-verification=sub".to_owned()])
    );
    // Case does not matter in DNS names.
    assert_eq!(
        resolver.txt("OTHER.Example").await,
        Ok(vec!["coreauth-verification=other".to_owned()])
    );
    // A subdomain's record is not the apex's, nor the apex's a subdomain's.
    assert_eq!(resolver.txt("acme.example").await, Ok(vec![]));
    // A name that does not exist in the zone (NXDOMAIN) is "no records" too.
    assert_eq!(resolver.txt("nothing.acme.example").await, Ok(vec![]));
    // Gone from a subdomain, the name itself no longer exists.
    dns.remove_txt("_coreauth.acme.example").await;
    assert_eq!(resolver.txt("_coreauth.acme.example").await, Ok(vec![]));
}

#[tokio::test]
async fn a_name_under_no_zone_of_the_server_is_a_failure_not_an_absence() {
    // An authoritative server refuses names outside its zones, as a recursive resolver that
    // will not serve us would: that is the DNS failing to answer, and a check must not read
    // it as "the record is not there".
    let (_dns, resolver) = server_and_resolver().await;
    let started = Instant::now();
    let failure = resolver.txt("elsewhere.test").await.unwrap_err();
    let LookupFailure::Unreachable(reason) = failure else {
        panic!("{failure:?}");
    };
    assert!(
        reason.contains("REFUSED") || reason.contains("Refused"),
        "{reason}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an answer, not a timeout"
    );
}

#[tokio::test]
async fn long_values_come_back_whole() {
    let (dns, resolver) = server_and_resolver().await;
    // 600 bytes: three character-strings, one UDP answer.
    let long = format!("coreauth-verification={}", "x".repeat(578));
    assert_eq!(long.len(), 600);
    dns.set_txt("acme.example", &[&long]).await;
    assert_eq!(resolver.txt("acme.example").await, Ok(vec![long.clone()]));

    // Three records of 1,500 bytes: too big for one UDP answer, so the answer comes over TCP.
    let big: Vec<String> = ['a', 'b', 'c']
        .into_iter()
        .map(|c| format!("{c}={}", c.to_string().repeat(1498)))
        .collect();
    let big_refs: Vec<&str> = big.iter().map(String::as_str).collect();
    dns.set_txt("acme.example", &big_refs).await;
    let mut values = resolver.txt("acme.example").await.unwrap();
    values.sort();
    assert_eq!(values, big);
}

/// A look-up that must fail as `Unreachable`, and how long it took.
async fn unreachable(resolver: &TxtResolver) -> Duration {
    let started = Instant::now();
    let failure = resolver.txt("acme.example").await;
    assert!(
        matches!(failure, Err(LookupFailure::Unreachable(_))),
        "{failure:?}"
    );
    started.elapsed()
}

#[tokio::test]
async fn a_dns_that_does_not_answer_is_unreachable_within_seconds() {
    // A UDP socket that reads nothing and replies to nothing, with no TCP listener on its port.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let silent_resolver =
        TxtResolver::new(Some(&silent.local_addr().unwrap().to_string())).unwrap();
    // A port nobody listens on (the resolver's UDP sockets are not connected, so the ICMP
    // "port unreachable" is not seen: this waits out the timeout too).
    let closed_port = UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let closed_resolver = TxtResolver::new(Some(&closed_port.to_string())).unwrap();
    // A server that answered and then stopped.
    let (dns, stopped_resolver) = server_and_resolver().await;
    dns.set_txt("acme.example", &["coreauth-verification=up"])
        .await;
    assert_eq!(
        stopped_resolver.txt("acme.example").await,
        Ok(vec!["coreauth-verification=up".to_owned()])
    );
    drop(dns);

    // At the same time, so the test costs one timeout, not three.
    let times = tokio::join!(
        unreachable(&silent_resolver),
        unreachable(&closed_resolver),
        unreachable(&stopped_resolver),
    );
    // Two tries of 3 s at most, and some slack for a loaded machine.
    for elapsed in [times.0, times.1, times.2] {
        assert!(elapsed < Duration::from_secs(9), "{elapsed:?}");
    }
    drop(silent);
}
