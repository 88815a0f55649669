//! What protects the service from its clients: request bodies read whole under a deadline and a
//! minimum rate before anything else (408 when too slow), then a bound on requests in flight
//! (503 with `Retry-After` past it, rather than an unbounded queue) and a deadline per request
//! (stuck calls get 408), security headers on every answer (a strict CSP on HTML pages), and
//! CORS, off unless origins are allowed by a setting.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::MAX_BODY_BYTES;
use super::error::error_response;

/// The limits, from the settings.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    /// The longest reading a request body may take (never more than `request_timeout`).
    pub body_timeout: Duration,
    /// Bytes a second a body must keep arriving at after its first second; 0: no minimum.
    pub body_min_rate: u64,
    /// Origins allowed to call from a browser (CORS); empty: none.
    pub cors_allowed_origins: Vec<String>,
    /// The proxies whose forwarding headers name the client (`client_address`).
    pub trusted_proxies: super::client_address::TrustedProxies,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            body_min_rate: 500,
            cors_allowed_origins: Vec::new(),
            trusted_proxies: super::client_address::TrustedProxies::default(),
        }
    }
}

#[derive(Clone)]
pub struct Guard {
    in_flight: Arc<Semaphore>,
    timeout: Duration,
}

impl Guard {
    pub fn new(limits: &HttpLimits) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            timeout: limits.request_timeout,
        }
    }
}

/// Middleware: admits a request only while fewer than the limit are in flight, and gives it a
/// deadline.
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let Ok(_permit) = guard.in_flight.clone().try_acquire_owned() else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight, try again shortly".into(),
            Some(1),
        );
    };
    match tokio::time::timeout(guard.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error_response(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request took too long".into(),
            None,
        ),
    }
}

/// How reading a body is bounded: by a total time, and by a rate it must keep up after a
/// grace period.
#[derive(Clone, Copy)]
pub struct BodyDeadline {
    total: Duration,
    min_rate: u64,
}

/// Time a body gets before its rate counts: a client waiting for `100 Continue`, or a
/// body sent in a second packet, must not be cut off for the round trip.
const BODY_GRACE: Duration = Duration::from_secs(1);

impl BodyDeadline {
    pub fn new(limits: &HttpLimits) -> Self {
        Self {
            total: limits.body_timeout.min(limits.request_timeout),
            min_rate: limits.body_min_rate,
        }
    }

    /// When the next bytes of a body must have arrived, `received` bytes into it: the grace
    /// period plus the time `received` bytes take at the minimum rate (as Apache's
    /// `mod_reqtimeout` `MinRate`), and never past the total.
    fn after(&self, start: Instant, received: usize) -> Instant {
        let total = start + self.total;
        if self.min_rate == 0 {
            return total;
        }
        let earned = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        total.min(start + BODY_GRACE.min(self.total) + earned)
    }
}

enum BodyError {
    TooSlow,
    TooLarge,
    Broken,
}

/// Middleware, outside `guard`: reads the whole body before the request may take a permit,
/// so a client trickling its body holds only its own connection, never a slot that token
/// checks need. Requests without a body (every GET) go straight through.
pub async fn read_body(
    State(deadline): State<BodyDeadline>,
    request: Request,
    next: Next,
) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match read_within(body, deadline).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(error) => {
            let mut response = match error {
                BodyError::TooSlow => error_response(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body arrived too slowly".into(),
                    None,
                ),
                BodyError::TooLarge => error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than 64 KiB".into(),
                    None,
                ),
                BodyError::Broken => error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request body could not be read".into(),
                    None,
                ),
            };
            // The rest of the body is unread: the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

async fn read_within(mut body: Body, deadline: BodyDeadline) -> Result<Bytes, BodyError> {
    let declared = body.size_hint().exact();
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let start = Instant::now();
    // Most bodies are one frame: kept as it came, copied only when a second one follows.
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut received = 0;
    loop {
        let next = tokio::time::timeout_at(deadline.after(start, received), body.frame());
        let frame = match next.await {
            Err(_) => return Err(BodyError::TooSlow),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received += data.len();
        if received > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            None => joined.extend_from_slice(&data),
            Some(earlier) => {
                joined.reserve(declared.map_or(received, |n| n as usize));
                joined.extend_from_slice(&earlier);
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

/// A page may load only what this server serves; nothing may frame it.
const HTML_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'; object-src 'none'";

/// Middleware: security headers on every answer.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    // Answers carry tokens and personal data: no cache may keep them.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if is_html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(HTML_CSP),
        );
    }
    response
}

/// CORS for the allowed origins, or none at all.
pub fn cors(limits: &HttpLimits) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = limits
        .cors_allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim().trim_end_matches('/')).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600)),
    )
}
