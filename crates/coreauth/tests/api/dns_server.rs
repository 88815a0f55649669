//! An authoritative DNS server in the test process, for domain-verification tests: real DNS
//! over UDP and TCP on one ephemeral port of 127.0.0.1, serving zones whose TXT records a test
//! changes while it runs.
//!
//! Built from hickory-server's own `Catalog` and `InMemoryZoneHandler`, not a hand-written
//! `RequestHandler`: the zone handler's records sit behind its own lock and can be changed
//! through a shared `Arc` after the catalog holds it (`records_mut`), so the answers, REFUSED
//! for names under no zone, NXDOMAIN and NODATA with the zone's SOA, AA set, are an
//! authoritative server's and not our idea of one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

/// TTL of the records served, and the zones' negative TTL: long, so a test that sees a change
/// at once shows the resolver does not cache, not that the records expired.
const TTL: u32 = 3600;
/// How long a TCP connection may sit idle before the server closes it.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// A character-string carries at most 255 bytes; longer values are split, as in a zone file.
const CHARACTER_STRING_MAX: usize = 255;

/// A running server; dropping it stops it (the server's tasks are aborted and its sockets
/// closed).
pub struct TestDns {
    /// Where it answers, over UDP and TCP alike.
    pub address: SocketAddr,
    zones: Vec<Arc<InMemoryZoneHandler>>,
    _server: Server<Catalog>,
}

impl TestDns {
    /// Authoritative for `zones` (e.g. `"acme.example"`), each holding only its SOA and NS.
    pub async fn start(zones: &[&str]) -> TestDns {
        let mut catalog = Catalog::new();
        let mut handlers = Vec::new();
        for zone in zones {
            let origin = fqdn(zone);
            let handler = Arc::new(zone_handler(&origin));
            catalog.upsert(
                LowerName::new(&origin),
                vec![handler.clone() as Arc<dyn ZoneHandler>],
            );
            handlers.push(handler);
        }

        // TCP first on an ephemeral port, then UDP on the same number: a free TCP port is no
        // promise for UDP, so a few tries.
        let (udp, tcp) = 'bind: {
            for _ in 0..20 {
                let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let address = tcp.local_addr().unwrap();
                if let Ok(udp) = UdpSocket::bind(address).await {
                    break 'bind (udp, tcp);
                }
            }
            panic!("no port on 127.0.0.1 free for both UDP and TCP");
        };
        let address = udp.local_addr().unwrap();

        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, 64);
        TestDns {
            address,
            zones: handlers,
            _server: server,
        }
    }

    /// `"ip:port"`, as `TxtResolver::new` and `COREAUTH_DNS_SERVERS` take it.
    pub fn servers(&self) -> String {
        self.address.to_string()
    }

    /// Replaces every TXT record at `name` (the apex or a name under it) with one record per
    /// value; values longer than 255 bytes are split into several character-strings.
    pub async fn set_txt(&self, name: &str, values: &[&str]) {
        let name = fqdn(name);
        let mut rrset = RecordSet::with_ttl(name.clone(), RecordType::TXT, TTL);
        for value in values {
            let mut chunks: Vec<&[u8]> = value.as_bytes().chunks(CHARACTER_STRING_MAX).collect();
            if chunks.is_empty() {
                chunks.push(b""); // a TXT record has at least one character-string
            }
            let record = Record::from_rdata(name.clone(), TTL, RData::TXT(TXT::from_bytes(chunks)));
            rrset.insert(record, 0);
        }
        let mut records = self.zone_of(&name).records_mut().await;
        let key = RrKey::new(LowerName::new(&name), RecordType::TXT);
        if values.is_empty() {
            records.remove(&key);
        } else {
            records.insert(key, Arc::new(rrset));
        }
    }

    /// Removes every TXT record at `name`; a name left with no records no longer exists.
    pub async fn remove_txt(&self, name: &str) {
        self.set_txt(name, &[]).await;
    }

    fn zone_of(&self, name: &Name) -> &InMemoryZoneHandler {
        let name = LowerName::new(name);
        self.zones
            .iter()
            .filter(|zone| zone.origin().zone_of(&name))
            .max_by_key(|zone| zone.origin().num_labels())
            .unwrap_or_else(|| panic!("{name} is under none of this server's zones"))
    }
}

fn fqdn(name: &str) -> Name {
    let mut name = Name::from_ascii(name).unwrap();
    name.set_fqdn(true);
    name
}

fn zone_handler(origin: &Name) -> InMemoryZoneHandler {
    let ns = Name::from_ascii("ns")
        .unwrap()
        .append_domain(origin)
        .unwrap();
    let hostmaster = Name::from_ascii("hostmaster")
        .unwrap()
        .append_domain(origin)
        .unwrap();
    let soa = SOA::new(ns.clone(), hostmaster, 1, 3600, 600, 86_400, TTL);
    let mut handler =
        InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    assert!(handler.upsert_mut(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)), 1));
    let ns_record = Record::from_rdata(
        origin.clone(),
        TTL,
        RData::NS(hickory_server::proto::rr::rdata::NS(ns)),
    );
    assert!(handler.upsert_mut(ns_record, 1));
    handler
}
