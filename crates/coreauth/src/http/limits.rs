//! What protects the service from its clients: a bound on requests in flight (503 with
//! `Retry-After` past it, rather than an unbounded queue), a deadline per request (slow clients
//! and stuck calls get 408), security headers on every answer (a strict CSP on HTML pages), and
//! CORS, off unless origins are allowed by a setting.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::error_response;

/// The limits, from the settings.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    /// Origins allowed to call from a browser (CORS); empty: none.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(30),
            cors_allowed_origins: Vec::new(),
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
