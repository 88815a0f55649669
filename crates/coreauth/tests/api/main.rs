//! Integration tests: the real service on an ephemeral port, spoken to over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod apikeys;
mod audit;
mod bad_input;
mod binary;
mod cache;
mod cli;
mod connections;
mod dns;
mod dns_server;
mod docs;
mod domains;
mod helpers;
mod hostile_input;
mod integrations;
mod introspect;
mod limits;
mod login;
mod login_paths;
mod mail_queue;
mod mfa;
mod oauth;
mod ops;
mod passwords;
mod proxies;
mod scopes;
mod service_accounts;
mod sessions;
mod signing_keys;
mod sqlite_faults;
mod sso;
mod tenancy;
mod throttle;
mod tokens;
mod usernames;
