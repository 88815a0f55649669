//! The admin side of SCIM provisioning: an org's directory tokens and its groups → role table.
//! (The SCIM protocol itself, under `/scim/v2/`, speaks RFC 7643/7644's own JSON.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /admin/orgs/{orgId}/scim/tokens`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateScimTokenRequest {
    /// What the token is for (`Entra ID provisioning`).
    pub name: String,
}

/// A directory's token as lists show it (never the token).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScimToken {
    pub id: String,
    pub name: String,
    pub created: String,
    /// When it was last presented (to the minute); absent: never.
    pub last_used: Option<String>,
}

/// The answer of `POST /admin/orgs/{orgId}/scim/tokens`: the only time the token is shown.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScimTokenCreated {
    pub id: String,
    pub name: String,
    pub created: String,
    /// The bearer token the directory presents (`scim_…`).
    pub token: String,
    /// The SCIM service's base URL, as directories ask for it ("Tenant URL").
    pub base_url: String,
}

/// `GET`/`PUT /admin/orgs/{orgId}/group-roles`: which role each directory group gives, matched
/// against a SCIM group's `displayName` or `externalId`, and against the groups an SSO provider
/// asserts for connections that map none of their own.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRoles {
    /// Group name → `admin` or `member`.
    pub groups: BTreeMap<String, String>,
}
