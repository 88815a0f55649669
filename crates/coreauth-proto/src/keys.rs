//! API keys (seed 004's auth headers), their rotation, and service accounts.

use serde::{Deserialize, Serialize};

/// `POST /authheader/add` (seed 004; unknown fields are ignored), and the keys of a service
/// account (`POST /admin/orgs/{orgId}/service-accounts/{id}/keys`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddAuthHeaderRequest {
    pub name: String,
    /// Unix epoch milliseconds; absent: the key does not expire (a key made with a key expires
    /// with it at the latest).
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// What the key may do (`read`, `keys:read`, `keys:write`, `users:read`, `users:write`,
    /// `org:read`, `org:write`, `audit:read`, `tokens:introspect`, `integrations:mint`);
    /// absent: the caller's own, which for a session is all of them. Never more than the
    /// caller's.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The same as `scopes: ["read"]`.
    #[serde(default)]
    pub read_only: bool,
}

/// The answer of `POST /authheader/add`: the only time the full key is shown.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthHeaderCreated {
    pub id: String,
    pub name: String,
    pub token: String,
    pub created: String,
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Whether every scope only reads.
    pub read_only: bool,
}

/// One entry of `GET /authheader/list`: `token` is only the key's first characters.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthHeader {
    pub id: String,
    pub name: String,
    pub token: String,
    pub created: String,
    pub last_used: Option<String>,
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub read_only: bool,
    /// `active`; `rotating` (replaced, working until `expiresAt`); or `expired`.
    #[serde(default)]
    pub state: String,
    /// The id of the key that replaced this one in a rotation.
    #[serde(default)]
    pub replaced_by: Option<String>,
    pub user_id: i64,
}

/// `POST /authheader/{id}/rotate` (and a service account's key's `…/rotate`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotateAuthHeaderRequest {
    /// How long the old key keeps working: default 86400 (24 h), at most 604800 (7 days); 0
    /// ends it now.
    #[serde(default)]
    pub overlap_seconds: Option<u64>,
    /// The new key's expiry (epoch ms); absent: as long a life as the old key was given.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// The answer of a rotation: the new key in full (shown this once), and the old one as it
/// now stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotatedAuthHeader {
    pub key: AuthHeaderCreated,
    pub replaced: AuthHeader,
}

/// `POST /admin/orgs/{orgId}/service-accounts`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateServiceAccountRequest {
    pub name: String,
    /// `admin` or `member`, as for a person.
    pub role: String,
}

/// `PATCH /admin/orgs/{orgId}/service-accounts/{id}`: `isActive: false` stops every key of it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchServiceAccountRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// A service account: an org's identity for its integrations, acting through its keys.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccount {
    /// Its public id (a uuid); also `clientId` at `POST /oauth/token`.
    pub id: String,
    pub name: String,
    pub org_id: i64,
    pub role: String,
    pub is_active: bool,
    pub created: String,
}
