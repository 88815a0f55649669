//! SCIM's own errors (RFC 7644 §3.12): an HTTP status, and for 400s and 409s a `scimType`
//! directories act on (`invalidFilter`, `uniqueness`, …). Domain and store errors map onto them.

use crate::domain::error::DomainError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

pub type ScimResult<T> = Result<T, ScimError>;

impl ScimError {
    fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidFilter"), detail)
    }

    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidSyntax"), detail)
    }

    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidValue"), detail)
    }

    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidPath"), detail)
    }

    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::new(400, Some("noTarget"), detail)
    }

    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::new(400, Some("mutability"), detail)
    }

    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some("uniqueness"), detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(404, None, format!("no such {what}"))
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(403, None, detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            401,
            None,
            "a valid SCIM bearer token of the org is required",
        )
    }

    pub fn not_implemented(detail: impl Into<String>) -> Self {
        Self::new(501, None, detail)
    }
}

impl From<DomainError> for ScimError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::NotFound(what) => Self::not_found(what),
            DomainError::Conflict(message) => Self::uniqueness(message),
            DomainError::Invalid(message) => Self::invalid_value(message),
            DomainError::Forbidden => Self::forbidden("not permitted"),
            DomainError::ForbiddenBecause(message) => Self::forbidden(message),
            DomainError::Unauthenticated => Self::unauthorized(),
            DomainError::Unavailable => Self::new(
                503,
                None,
                "the service is unavailable for a moment; try again",
            ),
            other => {
                tracing::error!(error = %other, "SCIM request failed");
                Self::new(500, None, "an internal error occurred")
            }
        }
    }
}

impl From<StoreError> for ScimError {
    fn from(error: StoreError) -> Self {
        DomainError::from(error).into()
    }
}
