//! Where a request came from: its address, user agent and request id, recorded with sessions
//! and audit events and counted against by the throttle.

use std::net::IpAddr;

/// Where a request came from, recorded with the session.
#[derive(Debug, Clone, Default)]
pub struct RequestOrigin {
    /// The peer's address, kept as it came: most requests never write it anywhere, so it is
    /// only turned into text where it is stored (`address_text`).
    pub address: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The `x-request-id` of the request, to tie audit events to log lines.
    pub request_id: Option<String>,
}

impl RequestOrigin {
    /// The address as it is stored in sessions, audit events and API key records.
    pub fn address_text(&self) -> Option<String> {
        self.address.map(|a| a.to_string())
    }
}
