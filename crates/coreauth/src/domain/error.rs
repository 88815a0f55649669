//! The domain's one error type: its variants are the spec's error codes, so the HTTP layer maps
//! each to a status and `{"error", "message"}` in one place (`http::error`).

use std::time::Duration;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("the email or password is incorrect")]
    InvalidCredentials,
    #[error("this account needs a one-time code from its authenticator app")]
    MfaRequired,
    #[error("the one-time code is wrong or was already used")]
    MfaInvalid,
    #[error("your org requires a second factor: enrol with POST /user/mfa/totp/enroll first")]
    MfaEnrollmentRequired,
    #[error("the user is not an active member of the selected org")]
    NoActiveOrg,
    #[error("the password has expired and must be changed")]
    PasswordExpired,
    #[error(
        "confirm your email address first: follow the link sent to it, or ask for a new one \
         with POST /user/email/verify/resend"
    )]
    EmailUnverified,
    #[error("a valid session token or API key is required")]
    Unauthenticated,
    #[error("you are not allowed to do this")]
    Forbidden,
    /// `Forbidden`, with what the caller may do instead.
    #[error("{0}")]
    ForbiddenBecause(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("too many attempts, try again later")]
    RateLimited { retry_after: Duration },
    #[error("the service is busy, try again shortly")]
    Overloaded { retry_after: Duration },
    #[error("the database is unavailable")]
    Unavailable,
    #[error("{0}")]
    Sso(SsoFailure),
    /// A remote integration's endpoint gave no token; the text says why, never what it
    /// answered.
    #[error("the integration's portal gave no token: {0}")]
    IntegrationUnavailable(String),
    /// A mailed link's token cannot be used.
    #[error("{0}")]
    Link(LinkRefusal),
    /// Unexpected failures: logged with the request id, never shown to the caller.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    /// The spec's machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::MfaRequired => "mfa_required",
            Self::MfaInvalid => "mfa_invalid",
            Self::MfaEnrollmentRequired => "mfa_enrollment_required",
            Self::NoActiveOrg => "no_active_org",
            Self::PasswordExpired => "password_expired",
            Self::EmailUnverified => "email_unverified",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden | Self::ForbiddenBecause(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Invalid(_) => "invalid_request",
            Self::RateLimited { .. } => "rate_limited",
            Self::Overloaded { .. } => "overloaded",
            Self::Unavailable => "unavailable",
            Self::Sso(failure) => failure.code(),
            Self::IntegrationUnavailable(_) => "integration_unavailable",
            Self::Link(refusal) => refusal.code(),
            Self::Internal(_) => "internal_error",
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

pub type DomainResult<T> = Result<T, DomainError>;

impl From<StoreError> for DomainError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Conflict(message) => Self::Conflict(message),
            StoreError::Unstorable(message) => Self::invalid(message),
            StoreError::Unavailable => Self::Unavailable,
            StoreError::Internal(message) => Self::Internal(message),
        }
    }
}

/// Why a mailed link's token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    #[error("this link is not valid")]
    Unknown,
    #[error("this link was already used")]
    Used,
    #[error("this link has expired; ask for a new one")]
    Expired,
    #[error("a newer link was sent since this one: use the newest")]
    Superseded,
}

impl LinkRefusal {
    pub fn code(self) -> &'static str {
        match self {
            Self::Unknown => "token_invalid",
            Self::Used => "token_used",
            Self::Expired => "token_expired",
            Self::Superseded => "token_superseded",
        }
    }
}

/// Why a single sign-on did not complete, in terms a person can act on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SsoFailure {
    /// The detail goes to the audit trail only: the issuer is an org admin's choice, and the
    /// reason a fetch failed would map the network behind coreauth for anyone who asks.
    #[error("the org's identity provider could not be reached")]
    IdpUnreachable(String),
    #[error("the identity provider answered with an error: {0}")]
    ProviderError(String),
    #[error("the sign-in was cancelled or consent was denied at the identity provider")]
    Denied,
    #[error("this sign-in link is unknown or was already used; start again")]
    StateInvalid,
    #[error("this sign-in took too long; start again")]
    StateExpired,
    #[error("the identity provider's token could not be verified")]
    InvalidToken,
    #[error("the identity provider has not verified this email address")]
    EmailUnverified,
    #[error("this email address is not in a domain the org signs in with")]
    DomainMismatch,
    #[error(
        "there is no active account for this email in the org, and the org does not create accounts on first sign-in"
    )]
    NoAccount,
    #[error("this org signs in through its identity provider; use single sign-on")]
    SsoRequired,
    #[error(
        "an account with this email exists but is not linked to this identity provider: sign in with its password, then link it (POST /user/authenticate/sso/link)"
    )]
    NotLinked,
    #[error("the identity provider asserted another identity than the account being linked")]
    LinkMismatch,
    #[error("this sign-in was started in another browser; start again from this one")]
    BrowserMismatch,
    #[error("the identity provider asserted no email address in the claims this connection reads")]
    EmailMissing,
    #[error("none of your groups at the identity provider gives a role in this org")]
    NoRole,
    #[error(
        "the domain's TXT records do not hold this org's verification value; publish it and try again"
    )]
    DomainNotProven,
    /// As for `IdpUnreachable`, the detail goes to the audit trail only.
    #[error("the domain's DNS could not be reached; try again later")]
    DnsUnreachable(String),
    #[error("the sign-in in the browser is not finished yet; ask again in a few seconds")]
    AuthorizationPending,
    #[error("this device code is unknown, expired or already used; start again")]
    ExpiredToken,
    #[error("{0}")]
    Saml(SamlRefusal),
}

/// Why coreauth refused a SAML response. Each has its own code, so that an admin reading the
/// audit trail tells a misconfigured IdP from an attack.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SamlRefusal {
    #[error("the SAML response is not well-formed: {0}")]
    Malformed(String),
    #[error("the SAML response holds a DOCTYPE or an entity declaration, which SAML never needs")]
    Doctype,
    #[error("the SAML response holds more than one assertion, or a signature over something else")]
    Wrapping,
    #[error("the SAML response is not signed as this connection requires")]
    Unsigned,
    #[error("the SAML response is signed with a certificate this connection does not trust")]
    UntrustedCertificate,
    #[error("the SAML response's signature does not verify")]
    BadSignature,
    #[error("the SAML assertion is not meant for this service (Audience)")]
    WrongAudience,
    #[error("the SAML assertion is outside its validity period (NotBefore / NotOnOrAfter)")]
    Expired,
    #[error("the SAML response is addressed to another service (Destination / Recipient)")]
    WrongDestination,
    #[error("the SAML assertion comes from another identity provider (Issuer)")]
    WrongIssuer,
    #[error("the SAML response answers no sign-in started here (InResponseTo); start again")]
    UnknownRequest,
    #[error("this SAML assertion was used before")]
    Replayed,
    #[error("this connection does not accept sign-ins its identity provider starts unasked")]
    IdpInitiated,
    #[error("the identity provider refused the sign-in (its status: {0})")]
    IdpStatus(String),
    #[error("{0}")]
    Unsupported(String),
    /// The detail goes to the audit trail only.
    #[error("the SAML response could not be verified")]
    Invalid(String),
}

impl SamlRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "saml_malformed",
            Self::Doctype => "saml_doctype",
            Self::Wrapping => "saml_wrapping",
            Self::Unsigned => "saml_unsigned",
            Self::UntrustedCertificate => "saml_untrusted_certificate",
            Self::BadSignature => "saml_signature_invalid",
            Self::WrongAudience => "saml_audience",
            Self::Expired => "saml_expired",
            Self::WrongDestination => "saml_destination",
            Self::WrongIssuer => "saml_issuer",
            Self::UnknownRequest => "saml_unknown_request",
            Self::Replayed => "saml_replayed",
            Self::IdpInitiated => "saml_idp_initiated",
            Self::IdpStatus(_) => "saml_idp_refused",
            Self::Unsupported(_) => "saml_unsupported",
            Self::Invalid(_) => "saml_invalid",
        }
    }
}

impl SsoFailure {
    pub fn code(&self) -> &'static str {
        match self {
            Self::IdpUnreachable(_) => "idp_unreachable",
            Self::ProviderError(_) => "idp_error",
            Self::Denied => "sso_denied",
            Self::StateInvalid => "sso_state_invalid",
            Self::StateExpired => "sso_state_expired",
            Self::InvalidToken => "sso_invalid_token",
            Self::EmailUnverified => "sso_email_unverified",
            Self::DomainMismatch => "sso_domain_mismatch",
            Self::NoAccount => "sso_no_account",
            Self::SsoRequired => "sso_required",
            Self::NotLinked => "sso_account_not_linked",
            Self::LinkMismatch => "sso_link_mismatch",
            Self::BrowserMismatch => "sso_browser_mismatch",
            Self::EmailMissing => "sso_email_missing",
            Self::NoRole => "sso_no_role",
            Self::DomainNotProven => "domain_not_verified",
            Self::DnsUnreachable(_) => "dns_unreachable",
            Self::AuthorizationPending => "authorization_pending",
            Self::ExpiredToken => "expired_token",
            Self::Saml(refusal) => refusal.code(),
        }
    }
}
