//! Login strategy discovery and single sign-on through an org's connections, OpenID Connect or
//! SAML 2.0 (Azure AD/Entra and ADFS speak both): OpenID's authorization code with PKCE (S256),
//! `state` and `nonce`, or SAML's request id, bound to a short-lived, single-use server-side
//! record and to the browser that started it. An org may have several connections (Entra for
//! staff, ADFS for a subsidiary), each with its own email domains, which count only once the
//! org's claim to them is verified.
//!
//! `settings` holds who may configure connections, `domains` the claims to email domains and
//! their proof, `token` the OpenID provider's side of a callback, `saml` SAML's connections and
//! responses, `complete` how a sign-on ends for both, `claims` what asserted claims mean under a
//! connection's mapping, `accounts` which account an identity signs in as, `identities` the
//! links a platform admin manages, `hand_off` the sign-ons for coreauth's own documentation and
//! for devices, and `crate::oidc_client` the reaching of the provider itself.

use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{CoreAuthenticationFlow, CoreProviderMetadata};
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge, Scope};
use time::OffsetDateTime;

use super::audit::NewAuditEvent;
use super::auth::{Auth, IssuedToken};
use super::clock::to_millis;
use super::email::Email;
use super::error::{DomainError, DomainResult, SsoFailure};
use super::origin::RequestOrigin;
use super::secrets::SecretBox;
use super::session::Principal;
use super::throttle::{Subject, Throttle};
use crate::dns::TxtResolver;
use crate::oidc_client::{NetworkPolicy, Providers};
use crate::store::{SsoConnectionRecord, SsoLoginRecord, Store};

mod accounts;
mod claims;
mod complete;
mod domains;
mod hand_off;
mod identities;
mod saml;
mod settings;
mod token;

pub use crate::store::records::{ClaimMapping, DomainClaimRecord, SsoIdentityRecord};
pub use claims::{MappingRequest, Preset};
pub use domains::verification_record;
use hand_off::HandOff;
pub use hand_off::{DEVICE_INTERVAL, DeviceStart, PendingDevice};
pub use saml::{ACS_PATH, SamlPost, SamlRequest};
pub use settings::{ConnectionView, DEFAULT_CONNECTION, SsoRequest, allowed_return};

/// Where an OpenID provider sends the browser back.
pub const CALLBACK_PATH: &str = "/user/authenticate/sso/callback";

/// How long a started login may take to come back.
const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);

/// What a sign-on in flight is bound to: the browser that started it (a hash of the secret in
/// its cookie), or, for a link, the account that started it from a password session.
enum Binding {
    Browser(String),
    Account(i64),
}

/// Where an email signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    Password,
    Sso {
        org_id: i64,
        connection_id: i64,
        /// `oidc` or `saml`.
        provider: &'static str,
        redirect_url: String,
    },
}

/// Where a finished sign-on's session goes.
pub enum SsoOutcome {
    /// To the browser: as JSON, or to `return_to` with the token in the fragment.
    Caller {
        issued: IssuedToken,
        return_to: Option<String>,
    },
    /// To the API documentation's cookie.
    Docs(IssuedToken),
    /// To the device that asked for it (`start_device`); the browser only hears it is done.
    Device { client: Option<String> },
}

/// The provider's answer at the callback.
#[derive(Debug, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    /// The secret the starting browser was given (`SsoStart::browser_secret`), from its cookie.
    pub browser_secret: Option<String>,
}

/// A started sign-on: where to send the browser, and the secret it must bring back to the
/// callback (kept in a cookie), which binds the sign-on to this browser: a callback URL
/// completed from anywhere else fails (login CSRF, code injection).
pub struct SsoStart {
    pub url: String,
    pub state: String,
    pub browser_secret: String,
    /// The path the provider sends the browser back to (the cookie is sent there only).
    pub return_path: &'static str,
}

/// 256 random bits, URL-safe.
fn random_secret() -> DomainResult<String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(DomainError::internal)?;
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        secret,
    ))
}

fn sha256_hex(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The name of the cookie that carries a sign-on's browser secret: its own for each sign-on
/// (from its state), so that sign-ons started in two tabs do not overwrite each other's.
pub fn binding_cookie(state: &str) -> String {
    format!("coreauth_sso_{}", &sha256_hex(state)[..16])
}

pub struct Sso {
    store: Arc<dyn Store>,
    secrets: Arc<SecretBox>,
    auth: Arc<Auth>,
    throttle: Arc<Throttle>,
    providers: Providers,
    dns: TxtResolver,
    public_url: String,
}

/// A failed sign-on, with what its audit event records of the assertion.
struct Refusal {
    error: DomainError,
    details: serde_json::Value,
}

impl From<crate::store::StoreError> for Refusal {
    fn from(error: crate::store::StoreError) -> Self {
        DomainError::from(error).into()
    }
}

impl From<DomainError> for Refusal {
    fn from(error: DomainError) -> Self {
        Self {
            error,
            details: serde_json::json!({}),
        }
    }
}

fn sealed_binding(org_id: i64) -> String {
    format!("sso:{org_id}")
}

fn failure(kind: SsoFailure) -> DomainError {
    DomainError::Sso(kind)
}

/// What the audit trail keeps of a failure: for an unreachable provider the reason, which the
/// caller is never told.
fn failure_detail(error: &DomainError) -> String {
    match error {
        DomainError::Sso(SsoFailure::IdpUnreachable(detail)) => detail.clone(),
        other => other.to_string(),
    }
}

impl Sso {
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<SecretBox>,
        auth: Arc<Auth>,
        throttle: Arc<Throttle>,
        public_url: String,
        networks: NetworkPolicy,
        dns: TxtResolver,
    ) -> DomainResult<Self> {
        Ok(Self {
            store,
            secrets,
            auth,
            throttle,
            providers: Providers::new(networks).map_err(DomainError::internal)?,
            dns,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Forgets sign-ons in flight that were used or have expired: each anonymous start stores
    /// one, and nothing else ever deletes them.
    pub async fn prune(&self, now: OffsetDateTime) -> DomainResult<u64> {
        Ok(self.store.prune_sso_logins(to_millis(now)).await?)
    }

    /// Where browsers reach coreauth.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The redirect URI to register at the provider.
    pub fn callback_url(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.public_url)
    }

    /// Password or SSO for this email, by its domain alone (the connection holding it in the
    /// org that verified it): the answer is the same whether or not the user exists.
    pub async fn strategy(
        &self,
        email: &str,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<Strategy> {
        self.count_anonymous(origin, Subject::Lookup, now).await?;
        let Some((org_id, connection_id)) = self.connection_for_email(email).await? else {
            return Ok(Strategy::Password);
        };
        let saml = self
            .store
            .sso_connection(connection_id)
            .await?
            .is_some_and(|c| c.saml.is_some());
        Ok(Strategy::Sso {
            org_id,
            connection_id,
            provider: if saml { "saml" } else { "oidc" },
            redirect_url: format!(
                "{}/user/authenticate/sso/start?org={org_id}&connection={connection_id}",
                self.public_url
            ),
        })
    }

    async fn provider(
        &self,
        issuer: &str,
        fresh: bool,
        now: OffsetDateTime,
    ) -> DomainResult<CoreProviderMetadata> {
        self.providers
            .metadata(issuer, fresh, now)
            .await
            .map_err(|detail| failure(SsoFailure::IdpUnreachable(detail)))
    }

    /// Counts an anonymous call against the caller's address, as `subject` (`Subject::Lookup`
    /// for look-ups, `Subject::Traffic` for sign-ins it starts).
    async fn count_anonymous(
        &self,
        origin: &RequestOrigin,
        subject: fn(std::net::IpAddr) -> Subject<'static>,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        if let Some(address) = origin.address {
            self.throttle.attempt(&[subject(address)], now).await?;
        }
        Ok(())
    }

    /// The org and connection `email`'s domain signs in through, by its domain alone.
    async fn connection_for_email(&self, email: &str) -> DomainResult<Option<(i64, i64)>> {
        let email = Email::parse(email)?;
        Ok(self
            .store
            .sso_connection_for_domain(email.domain().as_str())
            .await?)
    }

    /// The connection a sign-on goes through: the one named, which must be the org's, or
    /// the org's first.
    async fn connection_of(
        &self,
        org_id: i64,
        connection_id: Option<i64>,
    ) -> DomainResult<SsoConnectionRecord> {
        let found = match connection_id {
            Some(id) => self
                .store
                .sso_connection(id)
                .await?
                .filter(|c| c.org_id == org_id),
            None => self.store.sso_connections(org_id).await?.into_iter().next(),
        };
        found.ok_or(DomainError::NotFound("SSO connection"))
    }

    /// Starts a login: records state, nonce and PKCE verifier, and answers the provider's
    /// authorization URL to send the browser to.
    /// Anonymous, and each start stores a row: counted against the caller's address like a
    /// login attempt.
    pub async fn start(
        &self,
        org_id: i64,
        connection_id: Option<i64>,
        return_to: Option<String>,
        client: Option<String>,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<SsoStart> {
        self.count_anonymous(origin, Subject::Traffic, now).await?;
        let connection = self.connection_of(org_id, connection_id).await?;
        self.start_in_browser(&connection, return_to, client, HandOff::Caller, now)
            .await
    }

    /// A sign-on bound to the browser that starts it (a secret for its cookie).
    async fn start_in_browser(
        &self,
        connection: &SsoConnectionRecord,
        return_to: Option<String>,
        client: Option<String>,
        hand_off: HandOff,
        now: OffsetDateTime,
    ) -> DomainResult<SsoStart> {
        let browser_secret = random_secret()?;
        let binding = Binding::Browser(sha256_hex(&browser_secret));
        let (url, state) = self
            .begin(connection, return_to, client, binding, hand_off, now)
            .await?;
        Ok(SsoStart {
            url,
            state,
            browser_secret,
            return_path: if connection.saml.is_some() {
                ACS_PATH
            } else {
                CALLBACK_PATH
            },
        })
    }

    /// Starts a sign-on that links the caller's account to the identity the provider asserts
    /// (when its email is the account's): the caller proves the account by having opened this
    /// session with its password, so an existing account is never adopted on the provider's
    /// word alone.
    pub async fn start_link(
        &self,
        caller: &Principal,
        org_id: i64,
        connection_id: Option<i64>,
        return_to: Option<String>,
        now: OffsetDateTime,
    ) -> DomainResult<String> {
        if caller
            .session
            .as_ref()
            .is_none_or(|s| !s.opened_with_password())
        {
            return Err(DomainError::ForbiddenBecause(
                "link an account from a session opened with its password".into(),
            ));
        }
        match self.store.membership(caller.user_id, org_id).await? {
            Some(m) if m.is_active => {}
            _ => return Err(DomainError::Forbidden),
        }
        let client = Some("sso-link".to_owned());
        let binding = Binding::Account(caller.user_id);
        let connection = self.connection_of(org_id, connection_id).await?;
        let (url, _) = self
            .begin(
                &connection,
                return_to,
                client,
                binding,
                HandOff::Caller,
                now,
            )
            .await?;
        Ok(url)
    }

    /// Records a sign-on in flight; answers the provider URL and the state.
    async fn begin(
        &self,
        connection: &SsoConnectionRecord,
        return_to: Option<String>,
        client: Option<String>,
        binding: Binding,
        hand_off: HandOff,
        now: OffsetDateTime,
    ) -> DomainResult<(String, String)> {
        let (link_user_id, browser_binding) = match binding {
            Binding::Browser(hash) => (None, Some(hash)),
            Binding::Account(user_id) => (Some(user_id), None),
        };
        let org_id = connection.org_id;
        if let Some(target) = return_to.as_deref()
            && !allowed_return(target, &connection.redirect_allow_list)
        {
            return Err(DomainError::invalid(
                "returnTo is not on this org's redirect allow-list",
            ));
        }
        let created_at = to_millis(now);
        let ttl = i64::try_from(LOGIN_TTL.as_millis()).unwrap_or(i64::MAX);
        let mut login = SsoLoginRecord {
            state: String::new(),
            org_id,
            connection_id: connection.id,
            nonce: String::new(),
            sealed_pkce_verifier: String::new(),
            return_to,
            client: client.map(|c| c.chars().take(100).collect()),
            created_at,
            expires_at: created_at + ttl,
            link_user_id,
            browser_binding,
            hand_off: hand_off.stored(),
        };
        if let Some(settings) = &connection.saml {
            // SAML: the request id is the state; the IdP echoes it as InResponseTo.
            let (url, request_id) = self.saml_redirect(connection, settings)?;
            login.state = request_id.clone();
            self.store.create_sso_login(&login).await?;
            return Ok((url, request_id));
        }
        let metadata = match self.provider(&connection.issuer, false, now).await {
            Ok(metadata) => metadata,
            Err(error) => {
                let audit = NewAuditEvent::new("sso.login", now)
                    .org(org_id)
                    .failed(error.code())
                    .details(serde_json::json!({
                        "connectionId": connection.id,
                        "detail": failure_detail(&error),
                    }));
                self.store.record_audit(&audit).await?;
                return Err(error);
            }
        };
        let oidc = self.client(connection, metadata)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = oidc
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        login.state = state.secret().clone();
        login.nonce = nonce.secret().clone();
        login.sealed_pkce_verifier = self.secrets.seal(
            verifier.secret().as_bytes(),
            &format!("sso-login:{}", state.secret()),
        )?;
        self.store.create_sso_login(&login).await?;
        Ok((url.to_string(), state.secret().clone()))
    }
}
