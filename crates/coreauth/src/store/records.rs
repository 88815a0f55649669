//! The store's vocabulary: what it is given to write and what it reads back. Plain data, shared
//! by every layer above; what the records mean (validation, rules, rendering) is the domain's,
//! in `impl` blocks beside the rules that use them.

use std::sync::Arc;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

mod email;
mod scim;
pub use email::*;
pub use scim::*;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRecord {
    pub id: i64,
    pub uuid: String,
    pub email: String,
    pub first: String,
    pub last: String,
    pub is_active: bool,
    pub is_platform_admin: bool,
    /// Absent for users who only sign in through SSO.
    pub password_hash: Option<String>,
    pub password_set_at: Option<i64>,
    pub must_change_password: bool,
    pub created_at: i64,
    /// The org the account was created in (`None` only for accounts that never had one):
    /// account-wide administration belongs to its admins and to platform admins.
    pub home_org_id: Option<i64>,
    /// The org of the user's newest session, where a login without `selectedOrg` goes when the
    /// home membership is inactive.
    pub last_org_id: Option<i64>,
    /// The optional login name besides the email.
    pub username: Option<String>,
    /// A service account (acts only through API keys), not a person.
    pub is_service: bool,
    /// When the email address was proven (a mailed link followed); `None`: unproven.
    pub email_verified_at: Option<i64>,
}

/// A user to create, already validated.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub uuid: String,
    /// The address as given (trimmed), and its lookup key (`Email::key`).
    pub email: String,
    pub email_key: String,
    pub first: String,
    pub last: String,
    pub password_hash: Option<String>,
    pub is_platform_admin: bool,
    pub created_at: i64,
    /// The org the user joins on creation, and as what: their home org.
    pub membership: Option<(i64, Role)>,
    /// The identity `(issuer, subject)` at that org's SSO provider that created the account
    /// (just-in-time provisioning), linked in the same transaction.
    pub sso_identity: Option<(String, String)>,
    /// The login name and its lookup key (`Username::key`).
    pub username: Option<(String, String)>,
    /// A service account: it has no email (its `email_key` is `service:<uuid>`) and no password.
    pub is_service: bool,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub first: Option<String>,
    pub last: Option<String>,
    pub is_active: Option<bool>,
    /// `Some(None)` removes the username; `Some(Some((name, key)))` sets it.
    pub username: Option<Option<(String, String)>>,
}

/// A member's role in one org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    /// As stored, and as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    pub fn from_stored(stored: &str) -> Option<Self> {
        [Self::Admin, Self::Member]
            .into_iter()
            .find(|role| role.as_str() == stored)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRecord {
    pub id: i64,
    pub name: String,
    pub email_domains: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRecord {
    pub user_id: i64,
    pub org_id: i64,
    pub org_name: String,
    pub role: Role,
    pub is_active: bool,
}

/// A change to a membership; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct MembershipPatch {
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: i64,
    pub org_id: i64,
    /// How the session was opened: `password` or `sso`.
    pub method: String,
    pub client: Option<String>,
    pub address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: i64,
    /// The absolute end: login + the session cap. No renewal goes past it.
    pub expires_at: i64,
    /// The expiry of the newest token issued for it; past this the session is dead in practice.
    pub token_expires_at: i64,
    pub last_renewed_at: Option<i64>,
    pub renew_count: i64,
    pub revoked_at: Option<i64>,
    /// Set while the session may only enrol a second factor the org requires.
    pub restriction: Option<String>,
}

/// Renewals of one session not yet written: how many, the newest token's expiry and when the
/// last one was made (epoch ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    pub session_id: String,
    pub count: i64,
    pub token_expires_at: i64,
    pub renewed_at: i64,
}

/// A session with what every request needs to know about its user and membership, read in one
/// query.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// Shared with the session cache and the request's `Principal`: a cache hit copies no text.
    pub session: Arc<SessionRecord>,
    pub user_uuid: Arc<str>,
    pub user_active: bool,
    pub is_platform_admin: bool,
    pub role: Role,
    pub membership_active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: i64,
    pub public_id: String,
    pub user_id: i64,
    pub org_id: i64,
    pub name: String,
    pub prefix: String,
    /// Space-separated scope names (`domain::scopes::Scopes`).
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_address: Option<String>,
    /// The key that replaced this one in a rotation (its public id), and when.
    pub replaced_by: Option<String>,
    pub replaced_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub public_id: String,
    pub user_id: i64,
    pub org_id: i64,
    pub name: String,
    pub prefix: String,
    pub key_hash: Vec<u8>,
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// A service account: a user of kind `service` living in one org, acting through its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRecord {
    pub user_id: i64,
    /// Its public id.
    pub uuid: String,
    pub org_id: i64,
    pub name: String,
    pub role: Role,
    pub is_active: bool,
    pub created_at: i64,
}

/// A key with what authenticating it needs to know about its owner, read in one query.
#[derive(Debug, Clone)]
pub struct ApiKeyContext {
    /// Shared with the session cache: a cache hit copies no text.
    pub key: Arc<ApiKeyRecord>,
    pub user_uuid: Arc<str>,
    pub user_active: bool,
    pub role: Role,
    pub membership_active: bool,
}

/// An event about to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    pub occurred_at: i64,
    /// What happened, as `area.verb`: `login.succeeded`, `apikey.deleted`, …
    pub event: String,
    pub success: bool,
    /// For failures: the error code (`invalid_credentials`, …).
    pub reason: Option<String>,
    pub org_id: Option<i64>,
    pub actor_user_id: Option<i64>,
    pub subject_user_id: Option<i64>,
    /// What the event is about beyond a user: a session id, a key id, an org.
    pub subject: Option<String>,
    pub address: Option<String>,
    pub user_agent: Option<String>,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub event: NewAuditEvent,
}

/// What to look for in the trail; `before` is the cursor (the id of the last event seen).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub org_id: Option<i64>,
    pub user_id: Option<i64>,
    pub event: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub before: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: u32,
    /// 0: passwords never expire (the default).
    pub max_age_days: u32,
    /// How many previous passwords may not be reused (0: no check).
    pub history_count: u32,
    pub reject_common: bool,
    /// Every member must use a second factor (TOTP); members without one can only enrol.
    pub require_mfa: bool,
    /// Members sign in only once their address is proven (a mailed link followed).
    pub require_verified_email: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationAlgorithm {
    /// HMAC-SHA-256 with a secret shared with the portal.
    Hs256,
    /// Ed25519 with coreauth's own key (the portal verifies with `/.well-known/jwks.json`).
    EdDsa,
}

impl IntegrationAlgorithm {
    /// As stored, and as the API and JOSE name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::EdDsa => "EdDSA",
        }
    }

    pub fn from_stored(stored: &str) -> Option<Self> {
        [Self::Hs256, Self::EdDsa]
            .into_iter()
            .find(|algorithm| algorithm.as_str() == stored)
    }
}

/// How an integration's tokens are made.
#[derive(Debug, Clone, PartialEq)]
pub enum IntegrationKind {
    /// coreauth signs a JWT for the portal.
    Jwt {
        algorithm: IntegrationAlgorithm,
        audience: String,
        issuer: Option<String>,
    },
    /// coreauth asks the portal's own API for one (stored with algorithm `remote`).
    Remote(RemoteEndpoint),
}

/// Where a remote integration's tokens come from, and how to read its answer (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteEndpoint {
    pub url: String,
    /// The request header that carries the API key.
    pub api_key_header: String,
    pub timeout_secs: u32,
    /// Dotted path to the token in the JSON answer (`token`, `data.token`).
    pub token_field: String,
    /// Dotted path to its expiry, if the answer says when.
    pub expires_at_field: String,
}

/// An integration as configured (the secret only ever sealed).
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationRecord {
    pub org_id: i64,
    pub name: String,
    pub kind: IntegrationKind,
    /// HS256: the shared secret; remote: the API key.
    pub sealed_secret: Option<String>,
    pub lifetime_secs: u32,
    pub claims: Vec<String>,
    pub custom_claims: Map<String, Value>,
    pub allow_api_keys: bool,
}

/// An Ed25519 signing key as stored: the 32-byte seed and its key id. Published from
/// `created_at`, signs from `activates_at` until a later key activates, verifies until
/// `retired_at` (when its seed is erased). No `Debug`: it holds the private key.
#[derive(Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub algorithm: String,
    pub seed: Zeroizing<Vec<u8>>,
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
}

/// A new password hash for a user, with what else changes with it.
#[derive(Debug, Clone)]
pub struct PasswordChange {
    pub user_id: i64,
    pub new_hash: String,
    /// The hash the change was decided against; if it changed meanwhile the store refuses
    /// (`Conflict`), so two concurrent changes cannot both win. `None`: no check (admin reset).
    pub expected_hash: Option<String>,
    pub must_change: bool,
    pub now: i64,
    /// Sessions of the user are revoked, except this one (the caller's own).
    pub keep_session: Option<String>,
    /// The user's API keys are deleted too, in the same transaction (`details.keysDeleted`).
    pub delete_api_keys: bool,
    /// The password-reset token (its SHA-256) the change uses up, in the same transaction: a
    /// token no longer usable, or another user's, refuses the change (`Conflict`). Every
    /// other reset token of the user still out is superseded by any change.
    pub consumes_token: Option<Vec<u8>>,
}

/// A user's TOTP enrolment as stored.
#[derive(Debug, Clone)]
pub struct TotpRecord {
    pub sealed_secret: String,
    pub confirmed_at: Option<i64>,
    pub last_used_step: Option<i64>,
}

/// One of an org's SSO connections as stored (the client secret sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoConnectionRecord {
    /// 0 for a connection not stored yet.
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    /// `entra`, `adfs` or `generic`: where the claim mapping's defaults came from.
    pub preset: String,
    pub issuer: String,
    pub client_id: String,
    pub sealed_client_secret: String,
    pub claims: ClaimMapping,
    /// The domains that sign in through this connection; each counts only while the org's
    /// claim to it is verified (`DomainClaimRecord`).
    pub email_domains: Vec<String>,
    pub allow_jit: bool,
    pub allow_password: bool,
    pub redirect_allow_list: Vec<String>,
    /// Set for a SAML connection (whose `issuer` is then the IdP's entity id, and whose client
    /// id and secret are empty); `None` for OpenID Connect.
    pub saml: Option<SamlSettings>,
}

/// What a SAML connection knows of its identity provider and requires of its answers (stored
/// as JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SamlSettings {
    /// The certificate (base64 DER) of the key IdPs encrypt assertions to, made with the
    /// connection; its private key sealed like client secrets.
    #[serde(default)]
    pub sp_certificate: Option<String>,
    #[serde(default)]
    pub sealed_sp_key: Option<String>,
    /// Where the browser is sent with the AuthnRequest (HTTP-Redirect binding).
    pub sso_url: String,
    /// The IdP's signing certificates (base64 DER), several during a key rollover: only these
    /// are trusted, never one a message carries.
    pub certificates: Vec<String>,
    /// Asked for in the AuthnRequest's NameIDPolicy, e.g.
    /// `urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress`.
    pub name_id_format: Option<String>,
    /// The assertion must carry its own signature.
    pub want_assertions_signed: bool,
    /// The response must be signed as a whole.
    pub want_response_signed: bool,
    pub clock_skew_seconds: u32,
    /// Responses the IdP sends unasked (IdP-initiated) are accepted.
    pub allow_idp_initiated: bool,
    /// The attributes that hold the first and last name.
    pub first_name_attribute: Option<String>,
    pub last_name_attribute: Option<String>,
    /// Where the IdP's metadata was read from, if from a URL.
    pub metadata_url: Option<String>,
}

/// Which of a provider's claims say who someone is and what they may do (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMapping {
    /// The claims tried in turn for the email address.
    pub email_claims: Vec<String>,
    /// Take the email without `email_verified: true` (Entra and ADFS never send it); it still
    /// has to be in one of the connection's verified domains.
    pub trust_unverified_email: bool,
    /// The claim holding the user's groups (a string or an array of strings).
    pub groups_claim: Option<String>,
    /// Group → `admin` or `member`; the highest role matched wins.
    pub role_mapping: std::collections::BTreeMap<String, String>,
    /// The role when no group matches (`None`: the sign-in is refused), or always when the
    /// mapping is empty.
    pub default_role: Option<String>,
}

/// An org's claim to an email domain.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DomainClaimRecord {
    pub org_id: i64,
    pub domain: String,
    /// Published as the TXT record `coreauth-verification=<token>` to prove the domain.
    pub token: String,
    pub created_at: i64,
    pub verified_at: Option<i64>,
    /// `dns` or `platform-admin`.
    pub verified_by: Option<String>,
}

/// An SSO login between its start and its callback.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SsoLoginRecord {
    pub state: String,
    pub org_id: i64,
    pub connection_id: i64,
    pub nonce: String,
    #[sqlx(rename = "pkce_verifier")]
    pub sealed_pkce_verifier: String,
    pub return_to: Option<String>,
    pub client: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// The user linking their account, who started this sign-on from a password session.
    pub link_user_id: Option<i64>,
    /// SHA-256 (hex) of the secret in the starting browser's cookie; `None` for a link.
    pub browser_binding: Option<String>,
    /// Where the callback hands the session, for a sign-on coreauth started for itself:
    /// `docs`, or `device:<id>`.
    pub hand_off: Option<String>,
}

/// An account's link to an identity at one of an org's providers.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SsoIdentityRecord {
    pub org_id: i64,
    pub issuer: String,
    pub subject: String,
    pub user_id: i64,
    pub created_at: i64,
}

/// A device sign-in (a CLI's), from its request to the device taking the session.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SsoDeviceRecord {
    /// SHA-256 (hex) of the device code.
    pub id: String,
    /// SHA-256 (hex) of the user code.
    pub user_code: String,
    pub org_id: i64,
    pub connection_id: i64,
    pub client: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// The session, sealed, once the person signed in.
    pub sealed_session: Option<String>,
    /// The refusal's code, when the sign-in was refused.
    pub refusal: Option<String>,
    pub taken_at: Option<i64>,
}

/// Previous hashes kept per user, enough for the strictest `historyCount`.
pub const PASSWORD_HISTORY_KEPT: i64 = 24;

/// What a guess that proved right settles in the throttle (`domain::throttle::Guess`): a
/// counter deleted (the account's failures) and one given back an attempt (the address's
/// failures, never below zero). Empty: nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThrottleSettlement {
    pub clear: Option<String>,
    pub refund: Option<String>,
}

/// What an admin change revoked along with it, for the caller's information.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revoked {
    pub sessions: u64,
}

/// What `/user/me` and a renewal show about a member, read together (`Store::member`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub user: UserRecord,
    pub org: OrgRecord,
    /// The org's policy, or the defaults when it has none.
    pub policy: PasswordPolicy,
    /// Whether the user has a confirmed second factor.
    pub mfa_enabled: bool,
}
