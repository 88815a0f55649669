//! coreauth: an authentication and session-token service.
//!
//! `domain` holds the rules, `store` the storage behind a trait, `http` the axum layer, and
//! `startup::Application` wires them together for `main` and for tests.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

pub mod audit_export;
pub mod config;
pub mod domain;
pub mod http;
pub mod startup;
pub mod store;

pub use startup::Application;
