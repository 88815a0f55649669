//! The Rust side of coreauth for other programs.
//!
//! - [`Client`]: logs in (password with an optional MFA code, or an API key), sends requests
//!   with the current token, and renews the token in a background task well before it
//!   expires — with jitter, bounded retries, never sending an expired token, one renewal for
//!   all concurrent callers — until logout or drop. A revoked session ends with
//!   [`Error::SessionEnded`].
//! - [`DeviceSignIn`] (`ClientBuilder::sso_device`): single sign-on for a device without a
//!   browser of its own, such as a CLI: the person opens a URL anywhere and signs in at their
//!   org's provider while the device polls for the session; an account with TOTP then answers
//!   it with [`Client::verify_mfa`].
//! - [`Verifier`] and its [`VerifyLayer`]: for services behind coreauth, a tower layer that
//!   checks session tokens offline against coreauth's JWKS and, optionally, confirms them
//!   online through `POST /token/introspect`, putting the [`Claims`] in the request.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

mod client;
pub mod clock;
mod device;
mod error;
mod renewal;
mod verify;
mod wire;

pub use client::{API_KEY_PREFIX, Client, ClientBuilder, Login};
pub use device::DeviceSignIn;
pub use error::{EndReason, Error, Result};
pub use renewal::{RenewalPolicy, SessionStatus};
pub use verify::{
    Claims, Verifier, VerifierBuilder, VerifierStats, VerifyError, VerifyLayer, VerifyService,
};

pub use coreauth_proto as proto;
pub use reqwest::Method;
pub use secrecy::{ExposeSecret, SecretString};
