//! The client's one error type. A session that cannot go on is `SessionEnded` with the reason,
//! so a caller can tell "log in again" from "try again later".

use std::fmt;

/// Why a session can no longer be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// `logout()` was called.
    LoggedOut,
    /// coreauth refused the token (`403 unauthenticated`): the session was logged out
    /// elsewhere, revoked by an admin, or its user or membership deactivated; or the API key
    /// was deleted.
    Revoked,
    /// The token ran out before it could be renewed (the session reached its maximum lifetime,
    /// or the machine was asleep past the renewal window).
    Expired,
    /// Renewing kept failing (network or server errors) until the token was too close to its
    /// expiry to be sent; the last failure is kept.
    RenewalFailed(String),
    /// coreauth refused to renew for another reason (`status`, `code`).
    Refused { status: u16, code: String },
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LoggedOut => f.write_str("logged out"),
            Self::Revoked => f.write_str("the session was revoked or logged out elsewhere"),
            Self::Expired => f.write_str("the token expired before it could be renewed"),
            Self::RenewalFailed(last) => write!(f, "renewing kept failing: {last}"),
            Self::Refused { status, code } => {
                write!(f, "coreauth refused to renew ({status} {code})")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The session is over; log in again.
    #[error("the session has ended: {0}")]
    SessionEnded(EndReason),
    /// coreauth answered with its error body `{"error": code, "message": message}`.
    #[error("coreauth answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The request did not get an answer (connection refused, timeout, …).
    #[error("cannot reach coreauth: {0}")]
    Network(#[from] reqwest::Error),
    /// A device sign-in (`ClientBuilder::sso_device`) was not finished at the provider before
    /// its code ran out, or coreauth no longer knows the code (`400 expired_token`): start a
    /// new one.
    #[error("the sign-in was not finished in time: start it again")]
    SignInExpired,
    /// An answer that is not what the API promises.
    #[error("unexpected answer from coreauth: {0}")]
    Protocol(String),
    /// The client was set up wrongly (bad server URL, not inside a tokio runtime, …).
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The API's error code (`invalid_credentials`, `mfa_required`, …) when coreauth sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// coreauth's answer to a bad, expired or revoked credential.
    pub(crate) fn is_unauthenticated(&self) -> bool {
        matches!(self, Self::Api { status: 403, code, .. } if code == "unauthenticated")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
