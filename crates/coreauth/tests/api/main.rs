//! Integration tests: the real service on an ephemeral port, spoken to over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod apikeys;
mod audit;
mod bad_input;
mod binary;
mod cli;
mod helpers;
mod introspect;
mod login;
mod ops;
mod sessions;
mod tokens;
