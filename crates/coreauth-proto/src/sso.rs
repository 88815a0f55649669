//! Single sign-on: login strategy, connections and their claim mapping, claims to email
//! domains, and the browser legs of a sign-in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::SecretText;

/// `POST /user/authenticate/strategy`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyRequest {
    pub email: String,
}

/// How an email signs in: `{"strategy":"password"}` or
/// `{"strategy":"sso","provider":"oidc","orgId":…,"redirectUrl":"…"}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyResponse {
    /// `password` or `sso`.
    pub strategy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<i64>,
    /// The org's connection the email's domain signs in through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
}

/// `PUT /admin/orgs/{orgId}/sso`: sets the org's connection named `default` (SPEC §7's call;
/// `…/sso/connections` manages several).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoConfigRequest {
    /// The provider's issuer URL; its `/.well-known/openid-configuration` is read at sign-in.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretText,
    pub email_domains: Vec<String>,
    /// Create a member on first sign-in when no account exists.
    #[serde(default)]
    pub allow_jit: bool,
    /// Let the org's users also log in with a password.
    #[serde(default)]
    pub allow_password: bool,
    /// Where `returnTo` may send the browser after sign-in.
    #[serde(default)]
    pub redirect_allow_list: Vec<String>,
    /// `entra`, `adfs` or `generic` (the default).
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub claims: Option<ClaimMappingRequest>,
}

/// An org's SSO settings; the client secret is never shown.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SsoConfig {
    pub org_id: i64,
    /// The connection this call sets (named `default`).
    pub connection_id: i64,
    pub issuer: String,
    pub client_id: String,
    /// The domains that sign in through this provider: verified ones only.
    pub email_domains: Vec<String>,
    /// Domains asked for by an org admin that do nothing until a platform admin sets them.
    #[serde(default)]
    pub pending_domains: Vec<String>,
    pub allow_jit: bool,
    pub allow_password: bool,
    pub redirect_allow_list: Vec<String>,
    /// The redirect URI to register at the provider.
    pub redirect_uri: String,
}

/// `POST /user/authenticate/sso/link`: link the caller's account to their identity at an
/// org's provider.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoLinkRequest {
    pub org_id: i64,
    /// Which of the org's connections; its first when absent.
    #[serde(default)]
    pub connection_id: Option<i64>,
    /// As for `/sso/start`: where the browser goes with the token, from the allow-list.
    #[serde(default)]
    pub return_to: Option<String>,
}

/// Where to send the browser to sign in at the provider and complete the link.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SsoLinkResponse {
    pub redirect_url: String,
}

/// The query of `GET /user/authenticate/sso/start`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SsoStartQuery {
    pub org: i64,
    /// Which of the org's connections (`strategy` names it); its first when absent.
    #[serde(default)]
    pub connection: Option<i64>,
    /// Where to send the browser with the token (in the URL fragment); must be on the org's
    /// allow-list. Without it the callback answers JSON.
    #[serde(default)]
    pub return_to: Option<String>,
    #[serde(default)]
    pub client: Option<String>,
}

/// The query the provider sends to `GET /user/authenticate/sso/callback`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SsoCallbackQuery {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub iss: Option<String>,
}

/// A connection's claim mapping as an admin sends it: what is absent keeps the preset's value.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimMappingRequest {
    /// The claims tried in turn for the email (`email`, `preferred_username`, `upn`,
    /// `unique_name`, …).
    #[serde(default)]
    pub email_claims: Option<Vec<String>>,
    /// Take the email without `email_verified: true`; it must still be in one of the
    /// connection's verified domains.
    #[serde(default)]
    pub trust_unverified_email: Option<bool>,
    /// The claim holding the user's groups.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Group → `admin` or `member`; the highest matched wins, at every sign-in.
    #[serde(default)]
    pub role_mapping: Option<BTreeMap<String, String>>,
    /// `admin`, `member`, or `none`: the role when no group matches (`none` refuses).
    #[serde(default)]
    pub default_role: Option<String>,
}

/// A connection's claim mapping.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMapping {
    pub email_claims: Vec<String>,
    pub trust_unverified_email: bool,
    pub groups_claim: Option<String>,
    pub role_mapping: BTreeMap<String, String>,
    /// `admin`, `member` or `none`.
    pub default_role: String,
}

/// `POST /admin/orgs/{orgId}/sso/connections` and `PUT …/connections/{connectionId}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoConnectionRequest {
    /// Unique in the org, e.g. `staff` or `subsidiary`.
    pub name: String,
    /// `entra`, `adfs` or `generic` (the default): the claim mapping's defaults.
    #[serde(default)]
    pub preset: Option<String>,
    /// OpenID Connect: the provider's issuer URL (empty for SAML).
    #[serde(default)]
    pub issuer: String,
    /// OpenID Connect (empty for SAML).
    #[serde(default)]
    pub client_id: String,
    /// OpenID Connect (empty for SAML).
    #[serde(default)]
    pub client_secret: SecretText,
    /// Makes this a SAML 2.0 connection: the identity provider, and what its answers must be.
    #[serde(default)]
    pub saml: Option<SamlConnectionRequest>,
    pub email_domains: Vec<String>,
    #[serde(default)]
    pub allow_jit: bool,
    #[serde(default)]
    pub allow_password: bool,
    #[serde(default)]
    pub redirect_allow_list: Vec<String>,
    #[serde(default)]
    pub claims: Option<ClaimMappingRequest>,
}

/// A SAML connection's identity provider: by its metadata (pasted, or a URL read once when the
/// connection is saved), or field by field; fields given override the metadata's.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SamlConnectionRequest {
    /// The IdP's metadata XML (an `EntityDescriptor`).
    #[serde(default)]
    pub metadata_xml: Option<String>,
    /// Where to read the IdP's metadata (ADFS: `https://adfs.example/FederationMetadata/2007-06/FederationMetadata.xml`).
    #[serde(default)]
    pub metadata_url: Option<String>,
    /// The IdP's entity id.
    #[serde(default)]
    pub entity_id: Option<String>,
    /// The IdP's single sign-on URL for the HTTP-Redirect binding.
    #[serde(default)]
    pub sso_url: Option<String>,
    /// The IdP's signing certificates, PEM or base64 DER: several while it rolls its key over.
    /// Only these are trusted.
    #[serde(default)]
    pub certificates: Option<Vec<String>>,
    /// The NameID format to ask for, e.g. `urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress`.
    #[serde(default)]
    pub name_id_format: Option<String>,
    /// The assertion must be signed itself (default true).
    #[serde(default)]
    pub want_assertions_signed: Option<bool>,
    /// The whole response must be signed (default false).
    #[serde(default)]
    pub want_response_signed: Option<bool>,
    /// How far the IdP's clock may be off, in seconds (default 120, at most 600).
    #[serde(default)]
    pub clock_skew_seconds: Option<u32>,
    /// Accept sign-ins the IdP starts unasked (default false): nothing binds them to the
    /// browser, so anyone's browser can be made to post one (login CSRF). Their `RelayState`
    /// may name a `returnTo` on the allow-list. The replay cache still refuses a second use.
    #[serde(default)]
    pub allow_idp_initiated: bool,
    /// The attribute holding the first name (the preset's by default).
    #[serde(default)]
    pub first_name_attribute: Option<String>,
    /// The attribute holding the last name (the preset's by default).
    #[serde(default)]
    pub last_name_attribute: Option<String>,
}

/// A SAML connection's settings as shown, with what to register at the IdP.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SamlConnection {
    /// The IdP's single sign-on URL.
    pub sso_url: String,
    /// The IdP certificates trusted (base64 DER).
    pub certificates: Vec<String>,
    pub name_id_format: Option<String>,
    pub want_assertions_signed: bool,
    pub want_response_signed: bool,
    pub clock_skew_seconds: u32,
    pub allow_idp_initiated: bool,
    pub first_name_attribute: Option<String>,
    pub last_name_attribute: Option<String>,
    pub metadata_url: Option<String>,
    /// coreauth's entity id for this connection (also the URL of its SP metadata).
    pub sp_entity_id: String,
    /// The assertion consumer service URL to register at the IdP.
    pub acs_url: String,
    /// The certificate (base64 DER) an IdP encrypts assertions to (also in the SP metadata).
    pub sp_certificate: Option<String>,
}

/// One of an org's SSO connections; the client secret is never shown.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SsoConnection {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub preset: String,
    pub issuer: String,
    pub client_id: String,
    /// The connection's domains the org has verified: these sign in through it.
    pub email_domains: Vec<String>,
    /// Its domains still pending verification: they do nothing yet.
    pub pending_domains: Vec<String>,
    pub claims: ClaimMapping,
    pub allow_jit: bool,
    pub allow_password: bool,
    pub redirect_allow_list: Vec<String>,
    /// The redirect URI to register at the provider (OpenID Connect).
    pub redirect_uri: String,
    /// `oidc` or `saml`.
    pub protocol: String,
    /// For a SAML connection: its settings; `issuer` is then the IdP's entity id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<SamlConnection>,
}

/// `POST /admin/orgs/{orgId}/domains`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainClaimRequest {
    pub domain: String,
}

/// The DNS record that proves a claim.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationRecord {
    /// `TXT`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where to publish it: the domain itself.
    pub name: String,
    /// `coreauth-verification=<token>`.
    pub value: String,
}

/// An org's claim to an email domain.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainClaim {
    pub org_id: i64,
    pub domain: String,
    /// `pending` or `verified`.
    pub status: String,
    pub verification_record: VerificationRecord,
    pub created_at: i64,
    pub verified_at: Option<i64>,
    /// `dns` or `platform-admin`.
    pub verified_by: Option<String>,
}

/// `POST /user/authenticate/sso/device`: a device without a browser of its own (a CLI) asks to
/// sign in through the SSO connection of `email`'s domain.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoDeviceRequest {
    pub email: String,
    /// Shown to the person confirming the sign-in, and kept with the session.
    #[serde(default)]
    pub client: Option<String>,
}

/// What the device shows its user (`userCode`, `verificationUri`) and polls with
/// (`deviceCode`, every `interval` seconds, for `expiresIn` seconds at most).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SsoDeviceStart {
    /// A secret: only the device that asked holds it.
    pub device_code: SecretText,
    /// Short, to compare by eye: the page at `verificationUri` shows it too.
    pub user_code: String,
    pub verification_uri: String,
    /// `verificationUri` with the user code in it.
    pub verification_uri_complete: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// `POST /user/authenticate/sso/device/token`: `200` with the session once the person signed
/// in (once only); `400 authorization_pending` until then; `400 expired_token` for a code
/// unknown, expired or already used; `403` with the sign-in's refusal (e.g.
/// `sso_account_not_linked`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoDeviceTokenRequest {
    pub device_code: SecretText,
}

/// `POST /admin/users/{userId}/sso-identities`: a platform admin links an account to its
/// identity at a connection's provider (`subject`: the provider's `sub` for the person).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoIdentityLink {
    pub connection_id: i64,
    pub subject: String,
}

/// An account's link to an identity at one of an org's providers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SsoIdentity {
    pub org_id: i64,
    pub issuer: String,
    pub subject: String,
    pub user_id: i64,
    /// Unix epoch milliseconds.
    pub created_at: i64,
}
