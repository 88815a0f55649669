//! The client and the verifying layer against the real coreauth router, on loopback, with the
//! server's clock and the client's moved together (no sleeping for expiry).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod layer;
mod renewal;
mod retries;
mod support;
