//! Wire types of the coreauth HTTP API: the JSON bodies of SPEC.md, shared by the server and its
//! clients. Field names are the seeds' own (camelCase); nothing here has behaviour beyond serde,
//! but for the one rule both sides must read alike: how an `Authorization` header carries a
//! credential (`credential_from_header`).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

use std::fmt;

use serde::{Deserialize, Serialize};

mod keys;
mod mail;
mod scim;
mod sso;
pub use keys::*;
pub use mail::*;
pub use scim::*;
pub use sso::*;

/// A secret as it travels on the wire (a password, a token). Its `Debug` prints `[REDACTED]`, so
/// a stray `{:?}` of a request body cannot leak it. The server wraps it in `secrecy` at the edge.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, format = Password))]
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself: call only where it is used (hashing, sending).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Every error answer: `{"error": "<code>", "message": "<text for a person>"}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// `POST /user/authenticate`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticateRequest {
    pub email: String,
    pub password: SecretText,
    /// 0 or absent: the user's first active membership.
    #[serde(default)]
    pub selected_org: Option<i64>,
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub mfa_token_code: Option<SecretText>,
}

/// The answer of a login or a renewal.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticateResponse {
    pub token: String,
    /// Unix epoch milliseconds.
    pub expires_at: i64,
    pub user: SessionUser,
    /// The org requires a second factor this user has not enrolled: the token can only reach
    /// the enrolment calls (and `/user/me`, renewal, logout) until `POST /user/mfa/totp/confirm`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mfa_enrollment_required: bool,
    /// The account has a second factor this sign-in (single sign-on) has not proved yet: the
    /// token is good only for `POST /user/mfa/verify` with a code.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mfa_required: bool,
}

/// The user as seen through one session: `isAdmin` and `role` are of the session's org.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionUser {
    pub id: i64,
    pub uuid: String,
    pub first: String,
    pub last: String,
    pub email: String,
    pub is_active: bool,
    pub is_admin: bool,
    pub org_id: i64,
    pub role: String,
}

/// `typ` of a session token (RFC 9068's access-token type); other token kinds use other types,
/// so one can never stand in for another.
pub const SESSION_TOKEN_TYPE: &str = "at+jwt";
/// `aud` of a session token.
pub const SESSION_AUDIENCE: &str = "coreauth";

/// The claims of a session token (an EdDSA JWT of type `at+jwt`), as coreauth signs them and
/// the services behind it read them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    pub iss: String,
    pub aud: String,
    /// The user's uuid.
    pub sub: String,
    /// The user's integer id, so a check needs no lookup by uuid.
    pub uid: i64,
    pub org: i64,
    /// The role when the token was issued (introspection reports the current one).
    pub role: String,
    /// The session.
    pub sid: String,
    /// Unix epoch seconds.
    pub iat: i64,
    /// Unix epoch seconds.
    pub exp: i64,
    pub jti: String,
    /// For an OAuth client's token (client credentials): what it may do, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// For an OAuth client's token: the client (the service account's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// `GET /user/me`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    // What the member is in this org first, then how this call is made: the server renders the
    // first part once per member and appends the second (`/user/me` in `http::users`).
    pub id: i64,
    pub uuid: String,
    pub email: String,
    pub first: String,
    pub last: String,
    pub is_active: bool,
    pub org_id: i64,
    pub org_name: String,
    /// When the password expires under this org's policy (ISO 8601); null: never.
    pub password_expires_at: Option<String>,
    /// Whether the user has a second factor (TOTP) turned on.
    pub mfa_enabled: bool,
    pub is_admin: bool,
    pub is_platform_admin: bool,
    pub role: String,
    /// How this request was authenticated: `session` (a token from a login) or `api_key`.
    pub auth_method: String,
    /// The session behind the token, when there is one.
    pub session_id: Option<String>,
    /// When the session ends at the latest, whatever renewals happen (ISO 8601).
    pub session_expires_at: Option<String>,
}

/// One entry of `GET /user/orgs`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOrg {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub is_admin: bool,
    pub is_active: bool,
}

/// One entry of `GET /user/sessions`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: String,
    pub org_id: i64,
    pub client: Option<String>,
    pub address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: String,
    pub last_renewed_at: Option<String>,
    pub renew_count: i64,
    /// The absolute end of the session (login + the session cap).
    pub expires_at: String,
    /// True for the session of the token making this call.
    pub current: bool,
}

/// `POST /admin/orgs`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrgRequest {
    pub name: String,
    #[serde(default)]
    pub email_domains: Vec<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Org {
    pub id: i64,
    pub name: String,
    pub email_domains: Vec<String>,
}

/// `POST /admin/users`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUserRequest {
    pub email: String,
    pub password: SecretText,
    pub first: String,
    pub last: String,
    pub org_id: i64,
    pub role: String,
    /// An optional login name besides the email (letters, digits, `.`, `_`, `-`; no `@`).
    #[serde(default)]
    pub username: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: i64,
    pub uuid: String,
    pub email: String,
    pub first: String,
    pub last: String,
    pub is_active: bool,
    #[serde(default)]
    pub username: Option<String>,
}

/// `PATCH /admin/users/{id}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchUserRequest {
    pub first: Option<String>,
    pub last: Option<String>,
    pub is_active: Option<bool>,
    /// A new username; `""` removes it.
    pub username: Option<String>,
}

/// `POST /admin/orgs/{orgId}/members`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddMemberRequest {
    pub user_id: i64,
    pub role: String,
}

/// `PATCH /admin/orgs/{orgId}/members/{userId}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchMemberRequest {
    pub role: Option<String>,
    pub is_active: Option<bool>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    pub user_id: i64,
    pub org_id: i64,
    pub role: String,
    pub is_active: bool,
}

/// `POST /authheader/delete`: the full key as `text` (as the seed says), or the `token` that
/// `/authheader/list` shows for it, or the key's `id` (seed 004; unknown fields are ignored).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeleteAuthHeaderRequest {
    #[serde(default)]
    pub text: Option<SecretText>,
    #[serde(default)]
    pub id: Option<String>,
}

/// `{"message": "Success"}`, the seed's answer to a delete.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBody {
    pub message: String,
}

/// One entry of the audit trail (`GET /admin/audit`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: String,
    /// ISO 8601.
    pub time: String,
    pub event: String,
    /// `success` or `failure`.
    pub outcome: String,
    pub reason: Option<String>,
    pub org_id: Option<i64>,
    pub actor_user_id: Option<i64>,
    pub subject_user_id: Option<i64>,
    pub subject: Option<String>,
    pub address: Option<String>,
    pub user_agent: Option<String>,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

/// `GET /admin/audit`: a page of events, newest first; pass `nextCursor` as `cursor` for more.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

/// The filters of `GET /admin/audit`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditQuery {
    pub org_id: Option<i64>,
    pub user_id: Option<i64>,
    pub event: Option<String>,
    /// ISO 8601, inclusive.
    pub since: Option<String>,
    /// ISO 8601, exclusive.
    pub until: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// `POST /user/login` (seed 004): `username` is the user's username (`john.doe`) or email.
/// Unknown fields are ignored, as by
/// `/user/authenticate`: a client written from the seed may send more than it names.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JwtLoginRequest {
    pub username: String,
    pub password: SecretText,
    /// The TOTP (or a recovery) code, for a user with a second factor.
    #[serde(default, rename = "mfaTokenCode")]
    pub mfa_token_code: Option<SecretText>,
}

/// The answer of `POST /user/login`, in the seed's PascalCase.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JwtLoginResponse {
    /// The user's uuid.
    pub id: String,
    /// When the user was created (ISO 8601).
    pub created: String,
    /// The username, or the email for a user without one.
    pub username: String,
    pub email: String,
    pub firstname: String,
    pub lastname: String,
    pub token: String,
    /// ISO 8601; null when the org's policy never expires passwords.
    pub password_expiration: Option<String>,
}

/// `POST /user/password`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: SecretText,
    pub new_password: SecretText,
}

/// `POST /user/password/expired` (no token).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpiredPasswordRequest {
    pub email: String,
    pub password: SecretText,
    pub new_password: SecretText,
    #[serde(default)]
    pub selected_org: Option<i64>,
    /// Required when the user has a second factor, as at login.
    #[serde(default)]
    pub mfa_token_code: Option<SecretText>,
}

/// `POST /admin/users/{id}/password`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetPasswordRequest {
    pub new_password: SecretText,
    #[serde(default)]
    pub must_change: bool,
    /// Also delete every API key of the user (default: keys stay, as static integrations
    /// depend on them).
    #[serde(default)]
    pub revoke_api_keys: bool,
}

/// The query of `POST /admin/users/{id}/sessions/revoke`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeSessionsQuery {
    /// Also delete the user's API keys (in the same scope as the sessions).
    #[serde(default)]
    pub api_keys: bool,
}

/// An org's password policy (`PUT`/`GET /admin/orgs/{orgId}/password-policy`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordPolicy {
    pub min_length: u32,
    /// 0: passwords never expire.
    pub max_age_days: u32,
    pub history_count: u32,
    pub reject_common: bool,
    /// Every member must use a second factor; false when absent.
    #[serde(default)]
    pub require_mfa: bool,
    /// Members sign in only once their email address is proven; false when absent.
    #[serde(default)]
    pub require_verified_email: bool,
}

/// `POST /user/mfa/totp/enroll`: what an authenticator app needs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TotpEnrollment {
    /// The shared secret, base32 (for typing in by hand).
    pub secret: String,
    pub otpauth_url: String,
    /// The otpauth URL as a QR code: `data:image/svg+xml;base64,…`.
    pub qr_code: String,
}

/// `POST /user/mfa/totp/confirm`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    pub code: SecretText,
}

/// The answer of a confirmation: single-use recovery codes, shown this once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// `DELETE /user/mfa/totp`: a current code or the password.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisableTotpRequest {
    #[serde(default)]
    pub code: Option<SecretText>,
    #[serde(default)]
    pub password: Option<SecretText>,
}

/// `PUT /admin/orgs/{orgId}/integrations/{name}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrationConfig {
    /// `HS256` (with `secret`, shared with the portal) or `EdDSA` (coreauth's own key); absent
    /// for a remote integration.
    #[serde(default)]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub secret: Option<SecretText>,
    /// The tokens' `aud`; absent for a remote integration.
    #[serde(default)]
    pub audience: Option<String>,
    /// `iss` of the tokens; coreauth's issuer when absent.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The portal mints the tokens itself: coreauth asks this endpoint for one instead of
    /// signing it (no `algorithm`, `secret`, `audience` or `issuer` then).
    #[serde(default)]
    pub remote: Option<RemoteIntegrationConfig>,
    /// At most 3600. A remote integration's tokens expire when its answer says, or after this.
    pub lifetime_seconds: u32,
    /// User fields to include: email, name, firstName, lastName, userId, orgId, role (for a
    /// remote integration: fields of the JSON body sent to its endpoint).
    #[serde(default)]
    pub claims: Vec<String>,
    /// Static claims added to every token (or to the remote endpoint's body).
    #[serde(default)]
    pub custom_claims: serde_json::Map<String, serde_json::Value>,
    /// Whether a caller authenticated by an API key may mint tokens.
    #[serde(default)]
    pub allow_api_keys: bool,
}

/// Where a remote integration's tokens come from: coreauth POSTs the user's fields as JSON to
/// `url`, with `apiKey` in the `apiKeyHeader` header, and returns the token it answers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteIntegrationConfig {
    /// `https` (plain `http` only to a loopback address the operator allowed in
    /// `COREAUTH_SSO_ALLOWED_NETWORKS`, for tests).
    pub url: String,
    /// Sealed at rest, never shown again.
    pub api_key: SecretText,
    /// Default `x-api-key`.
    #[serde(default)]
    pub api_key_header: Option<String>,
    /// Default 5, at most 30.
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
    /// Where the token is in the JSON answer (a field, or a dotted path like `data.token`);
    /// default `token`.
    #[serde(default)]
    pub token_field: Option<String>,
    /// Where its expiry is (epoch seconds or milliseconds, or RFC 3339), if the answer says;
    /// default `expiresAt`.
    #[serde(default)]
    pub expires_at_field: Option<String>,
}

/// An integration as configured; the secret is never shown.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Integration {
    pub name: String,
    /// Absent for a remote integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Absent for a remote integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    pub issuer: Option<String>,
    /// Present for a remote integration only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteIntegration>,
    pub lifetime_seconds: u32,
    pub claims: Vec<String>,
    pub custom_claims: serde_json::Map<String, serde_json::Value>,
    pub allow_api_keys: bool,
    /// An HS256 secret, or a remote integration's API key, is set.
    pub has_secret: bool,
}

/// A remote integration's endpoint as configured (its API key is never shown).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteIntegration {
    pub url: String,
    pub api_key_header: String,
    pub timeout_seconds: u32,
    pub token_field: String,
    pub expires_at_field: String,
}

/// `POST /user/authenticate/{name}`: a token for a third-party portal.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationToken {
    pub token: String,
    /// Unix epoch milliseconds.
    pub expires_at: i64,
}

/// `POST /token/introspect` (RFC 7662): is this token or API key good now, and whose is it?
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectRequest {
    pub token: SecretText,
    /// RFC 7662's hint (`access_token`, `api_key`); the prefix of the token decides anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type_hint: Option<String>,
}

/// The answer of `POST /token/introspect`, in RFC 7662's names. An invalid, expired or revoked
/// token is just `{"active": false}`; every other field is then absent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntrospectResponse {
    pub active: bool,
    /// The user's uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The user's integer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<i64>,
    /// The role the credential acts with now (which may differ from the one in the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The session behind a session token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Unix epoch seconds: the token's `exp`, or an expiring API key's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Unix epoch seconds: the token's `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// `session` or `api_key` (the `authMethod` of `GET /user/me`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

/// The credential in an `Authorization` value: after `Bearer ` (any case), or the whole value
/// when it has no scheme (the seeds send a bare token). Other schemes (`Basic …`) are not ours.
pub fn credential_from_header(value: &str) -> Option<&str> {
    let value = value.trim();
    let credential = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None if value.eq_ignore_ascii_case("bearer") => return None,
        None => value,
    };
    (!credential.is_empty()).then_some(credential)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn secret_text_never_prints_its_value() {
        let req = AuthenticateRequest {
            email: "a@example.com".into(),
            password: SecretText::new("hunter2-canary"),
            ..Default::default()
        };
        let printed = format!("{req:?}");
        assert!(!printed.contains("hunter2-canary"), "{printed}");
        assert!(printed.contains("[REDACTED]"));
    }

    #[test]
    fn authenticate_request_reads_the_seed_example() {
        let body = r#"{"email":"string","password":"string","selectedOrg":0,"client":"core-client","mfaTokenCode":null}"#;
        let req: AuthenticateRequest = serde_json::from_str(body).expect("seed body parses");
        assert_eq!(req.email, "string");
        assert_eq!(req.selected_org, Some(0));
        assert_eq!(req.client.as_deref(), Some("core-client"));
        assert!(req.mfa_token_code.is_none());
    }

    #[test]
    fn bearer_and_bare_values_are_accepted() {
        assert_eq!(credential_from_header("Bearer abc"), Some("abc"));
        assert_eq!(credential_from_header("bearer   abc "), Some("abc"));
        assert_eq!(credential_from_header("BEARER abc"), Some("abc"));
        assert_eq!(credential_from_header("abc"), Some("abc"));
        assert_eq!(credential_from_header(" cak_123 "), Some("cak_123"));
    }

    #[test]
    fn other_schemes_and_empty_values_are_not() {
        assert_eq!(credential_from_header("Basic dXNlcjpwdw=="), None);
        assert_eq!(credential_from_header("Bearer "), None);
        assert_eq!(credential_from_header(""), None);
        assert_eq!(credential_from_header("Bearer a b"), Some("a b"));
    }

    #[test]
    fn an_inactive_introspection_answer_is_only_active_false() {
        let body = serde_json::to_string(&IntrospectResponse::default()).unwrap();
        assert_eq!(body, r#"{"active":false}"#);
        let req: IntrospectRequest = serde_json::from_str(r#"{"token":"t-canary"}"#).unwrap();
        assert!(!format!("{req:?}").contains("t-canary"));
    }
}
