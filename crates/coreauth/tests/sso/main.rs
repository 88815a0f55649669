//! Single sign-on against a real OpenID provider: the npm package `oidc-provider`, started per
//! test on a loopback port (`tests/sso-provider/provider.mjs`), its login and consent pages
//! driven over HTTP with a cookie jar, as a browser would.
//!
//! Run by `scripts/test`, which installs Node's packages and sets `COREAUTH_TEST_OIDC_DIR`;
//! without it these tests fail rather than pass silently. `scripts/test` runs them on SQLite,
//! then again on PostgreSQL (with `COREAUTH_TEST_POSTGRES_URL`, as for `tests/api`).
//!
//! `harness` starts the provider and plays the browser; `sign_in` holds the sign-in's defences
//! (state, nonce, browser binding, key rotation, linking), `enterprise` Entra- and ADFS-shaped
//! identities, claim mapping, several connections and the cross-org takeover, `hand_off` the
//! documentation's and a device's SSO sign-in, `cli` `coreauth login --sso`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod cli;
mod enterprise;
mod hand_off;
mod harness;
mod provisioned;
mod sign_in;
