//! The Rust side of coreauth for other programs.
//!
//! - [`Client`]: logs in (password with an optional MFA code, or an API key), sends requests
//!   with the current token, and renews the token in a background task well before it
//!   expires — with jitter, bounded retries, never sending an expired token, one renewal for
//!   all concurrent callers — until logout or drop. A revoked session ends with
//!   [`Error::SessionEnded`].
//! - [`Verifier`] and its [`VerifyLayer`]: for services behind coreauth, a tower layer that
//!   checks session tokens offline against coreauth's JWKS and, optionally, confirms them
//!   online through `POST /token/introspect`, putting the [`Claims`] in the request.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

mod client;
pub mod clock;
mod error;
mod renewal;
mod verify;
mod wire;

pub use client::{API_KEY_PREFIX, Client, ClientBuilder, Login};
pub use error::{EndReason, Error, Result};
pub use renewal::{RenewalPolicy, SessionStatus};
pub use verify::{
    Claims, Verifier, VerifierBuilder, VerifierStats, VerifyError, VerifyLayer, VerifyService,
};

pub use coreauth_proto as proto;
pub use reqwest::Method;
pub use secrecy::{ExposeSecret, SecretString};
