//! SAML 2.0 sign-in against a real IdP: the npm package `saml-idp` (its SAML from `samlp`,
//! signatures from `xml-crypto`), started per test on a loopback port, its sign-in form driven
//! over HTTP with a cookie jar, as a browser would.
//!
//! Needs the `saml` feature and the IdP's packages: `scripts/test` installs them, sets
//! `COREAUTH_TEST_SAML_IDP_DIR` and runs `cargo test --features saml --test saml`, on SQLite
//! and again on PostgreSQL (with `COREAUTH_TEST_POSTGRES_URL`). Without the directory these
//! tests fail rather than pass silently.
//!
//! `harness` starts the IdP and plays the browser; `sign_in` holds what a user sees,
//! `refusals` one test for each response coreauth must refuse, with its code and audit event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod harness;
mod refusals;
mod sign_in;
