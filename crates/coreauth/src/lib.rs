//! coreauth: an authentication and session-token service.
//!
//! `domain` holds the rules, `store` the storage behind a trait, `http` the axum layer, and
//! `startup::Application` wires them together for `main` and for tests. `hash_pool` (the
//! threads argon2 runs on), `oidc_client` (how identity providers are reached), `remote_tokens`
//! (how remote integrations' endpoints are asked for tokens), `dns` (the TXT look-ups that
//! prove an org owns an email domain) and `mail_transport` (SMTP, or the outbox folder) are
//! machinery the domain uses; none knows of it.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

pub mod audit_export;
pub mod cache;
pub mod config;
pub mod dns;
pub mod domain;
pub mod hash_pool;
pub mod http;
pub mod mail_transport;
pub mod oidc_client;
pub mod remote_tokens;
pub mod startup;
pub mod store;

pub use startup::Application;
