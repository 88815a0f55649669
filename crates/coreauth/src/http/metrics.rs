//! Prometheus metrics, kept in a registry owned by the app (no global recorder, so two apps
//! can run in one test process): requests by route and status, latency by route, logins by
//! outcome, what the session cache holds and whether it serves, and the mail queue.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cache::SessionCache;
use crate::domain::mail::delivery::DeliveryStats;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    outcome: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    logins: Family<LoginLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Reads the session cache's figures at each scrape.
struct CacheCollector(Arc<SessionCache>);

impl std::fmt::Debug for CacheCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CacheCollector")
            .field(&self.0.stats())
            .finish()
    }
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let counters = [
            (
                "session_cache_hits",
                "Session, API key and profile lookups answered from memory",
                stats.hits,
            ),
            (
                "session_cache_misses",
                "Lookups that read the database (none counted while the cache is off)",
                stats.misses,
            ),
            (
                "session_cache_refreshes",
                "Entries in use read again in the background before their TTL ended",
                stats.refreshes,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "session_cache_entries",
                "Sessions, API keys and profiles held",
                i64::try_from(stats.entries).unwrap_or(i64::MAX),
            ),
            (
                "session_cache_suspended",
                "1 while changes made by other instances cannot be heard and nothing is cached",
                i64::from(stats.suspended),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// The mail worker's figures, read at each scrape from what it keeps in memory: a scrape never
/// counts the queue in the database (the worker does, every few seconds).
#[derive(Debug)]
struct MailCollector(Arc<DeliveryStats>);

impl Collector for MailCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = self.0.figures();
        let counters = [
            (
                "mail_sent",
                "Messages this instance handed to the mail server (or the outbox)",
                figures.sent,
            ),
            (
                "mail_failed",
                "Attempts to send a message that failed on this instance (each retry counts)",
                figures.failed,
            ),
            (
                "mail_given_up",
                "Messages this instance gave up on (refused, out of retries, or unreadable)",
                figures.given_up,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "mail_queue_waiting",
                "Queued messages not sent yet, of every instance",
                figures.waiting,
            ),
            (
                "mail_queue_retrying",
                "Of those, the ones whose last attempt failed",
                figures.retrying,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// The registry, with the figures of `cache` and of the mail worker read at each scrape.
    pub fn new(cache: Arc<SessionCache>, mail: Arc<DeliveryStats>) -> Self {
        let mut registry = Registry::with_prefix("coreauth");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            latency.clone(),
        );
        registry.register(
            "logins",
            "Login attempts by outcome (success or the error code)",
            logins.clone(),
        );
        registry.register_collector(Box::new(CacheCollector(cache)));
        registry.register_collector(Box::new(MailCollector(mail)));
        Self {
            registry,
            requests,
            latency,
            logins,
        }
    }

    pub fn count_login(&self, outcome: &str) {
        self.logins
            .get_or_create(&LoginLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The Prometheus/OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Middleware: counts and times every request under its route template (not its raw path, so
/// ids do not explode the label set).
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics
        .latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
