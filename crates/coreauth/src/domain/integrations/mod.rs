//! Integration tokens (SPEC §10): a signed-in user asks for a short-lived token that signs them
//! in to a third-party portal (productboard, Qrvey, …). Each org configures its integrations by
//! name. Most are JWTs coreauth signs, whose audience and `typ` are the integration's, never
//! coreauth's, so an integration token can never stand in for a session token; a remote one
//! (`remote.rs`) is minted by the portal's own API.

mod remote;

pub use crate::store::records::{
    IntegrationAlgorithm, IntegrationKind, IntegrationRecord, RemoteEndpoint,
};
pub use remote::{
    DEFAULT_EXPIRES_AT_FIELD, DEFAULT_HEADER, DEFAULT_TIMEOUT_SECS, MAX_TIMEOUT_SECS, RemoteRequest,
};

use std::collections::BTreeSet;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::audit::NewAuditEvent;
use super::clock::to_millis;
use super::error::{DomainError, DomainResult};
use super::secrets::SecretBox;
use super::session::Principal;
use super::tokens::{SESSION_AUDIENCE, TokenSigner};
use crate::remote_tokens::RemoteTokens;
use crate::store::Store;

pub const MAX_LIFETIME_SECS: u32 = 3600;
const MIN_SECRET_BYTES: usize = 32;
/// Names the `/user/authenticate/...` routes already use.
const RESERVED_NAMES: [&str; 4] = ["logout", "strategy", "sso", "renew"];
/// Claims coreauth sets itself, and the names its session tokens and the user fields use: a
/// custom claim may be none of them, so identity in an integration token always comes from
/// the caller and an integration token never looks like a session token.
const RESERVED_CLAIMS: [&str; 13] = [
    "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "uid", "org", "sid", "typ", "scope", "amr",
];
/// The user fields an integration may put in its tokens.
pub const USER_FIELDS: [&str; 7] = [
    "email",
    "name",
    "firstName",
    "lastName",
    "userId",
    "orgId",
    "role",
];

impl IntegrationAlgorithm {
    pub fn parse(text: &str) -> DomainResult<Self> {
        Self::from_stored(text)
            .ok_or_else(|| DomainError::invalid("algorithm must be HS256 or EdDSA"))
    }
}

/// What an admin sends to configure an integration: a JWT one (`algorithm`, `secret`,
/// `audience`, `issuer`) or a remote one.
#[derive(Debug)]
pub struct IntegrationRequest {
    pub algorithm: Option<String>,
    pub secret: Option<String>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub remote: Option<RemoteRequest>,
    pub lifetime_secs: u32,
    pub claims: Vec<String>,
    pub custom_claims: Map<String, Value>,
    pub allow_api_keys: bool,
}

/// A minted token.
pub struct Minted {
    pub token: String,
    pub expires_at: i64,
}

pub struct Integrations {
    store: Arc<dyn Store>,
    secrets: Arc<SecretBox>,
    signer: Arc<TokenSigner>,
    remote: RemoteTokens,
}

fn binding(org_id: i64, name: &str) -> String {
    format!("integration:{org_id}:{name}")
}

fn check_name(name: &str) -> DomainResult<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(DomainError::invalid(
            "an integration name is 1-64 letters, digits, '-' or '_'",
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(DomainError::invalid(format!("'{name}' is reserved")));
    }
    Ok(())
}

impl Integrations {
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<SecretBox>,
        signer: Arc<TokenSigner>,
        remote: RemoteTokens,
    ) -> Self {
        Self {
            store,
            secrets,
            signer,
            remote,
        }
    }

    pub async fn configure(
        &self,
        caller: &Principal,
        org_id: i64,
        name: &str,
        request: IntegrationRequest,
        now: OffsetDateTime,
    ) -> DomainResult<IntegrationRecord> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        check_name(name)?;
        if request.lifetime_secs == 0 || request.lifetime_secs > MAX_LIFETIME_SECS {
            return Err(DomainError::invalid(format!(
                "lifetimeSeconds must be between 1 and {MAX_LIFETIME_SECS}"
            )));
        }
        let claims: BTreeSet<String> = request.claims.into_iter().collect();
        if let Some(unknown) = claims.iter().find(|c| !USER_FIELDS.contains(&c.as_str())) {
            return Err(DomainError::invalid(format!(
                "unknown claim '{unknown}'; choose from {}",
                USER_FIELDS.join(", ")
            )));
        }
        if let Some(reserved) = request
            .custom_claims
            .keys()
            .find(|k| RESERVED_CLAIMS.contains(&k.as_str()) || USER_FIELDS.contains(&k.as_str()))
        {
            return Err(DomainError::invalid(format!(
                "custom claim '{reserved}' is reserved: identity claims come from the caller"
            )));
        }
        if request.custom_claims.len() > 50
            || Value::Object(request.custom_claims.clone())
                .to_string()
                .len()
                > 8192
        {
            return Err(DomainError::invalid(
                "custom claims are limited to 50 entries and 8 KiB",
            ));
        }
        // Last: a remote endpoint's name is looked up, and secrets are sealed.
        let (kind, sealed_secret) = match request.remote {
            Some(remote) => {
                if request.algorithm.is_some()
                    || request.secret.is_some()
                    || request.audience.is_some()
                    || request.issuer.is_some()
                {
                    return Err(DomainError::invalid(
                        "a remote integration's tokens come from its endpoint: give no \
                         algorithm, secret, audience or issuer",
                    ));
                }
                let (endpoint, api_key) = remote::parse(remote, self.remote.policy()).await?;
                let sealed = self
                    .secrets
                    .seal(api_key.expose_secret().as_bytes(), &binding(org_id, name))?;
                (IntegrationKind::Remote(endpoint), Some(sealed))
            }
            None => self.jwt_kind(
                org_id,
                name,
                request.algorithm,
                request.secret,
                request.audience,
                request.issuer,
            )?,
        };
        let configured = match &kind {
            IntegrationKind::Jwt {
                algorithm,
                audience,
                ..
            } => json!({"algorithm": algorithm.as_str(), "audience": audience}),
            IntegrationKind::Remote(endpoint) => json!({"remote": remote::audited(endpoint)}),
        };
        let record = IntegrationRecord {
            org_id,
            name: name.to_owned(),
            kind,
            sealed_secret,
            lifetime_secs: request.lifetime_secs,
            claims: claims.into_iter().collect(),
            custom_claims: request.custom_claims,
            allow_api_keys: request.allow_api_keys,
        };
        let mut details = configured;
        details["lifetimeSeconds"] = json!(record.lifetime_secs);
        details["claims"] = json!(record.claims);
        let audit = NewAuditEvent::new("integration.configured", now)
            .by(caller)
            .org(org_id)
            .subject(format!("integration:{name}"))
            .details(details);
        self.store
            .save_integration(&record, to_millis(now), &audit)
            .await?;
        Ok(record)
    }

    /// A JWT integration's algorithm, audience and issuer, and its sealed secret (HS256).
    fn jwt_kind(
        &self,
        org_id: i64,
        name: &str,
        algorithm: Option<String>,
        secret: Option<String>,
        audience: Option<String>,
        issuer: Option<String>,
    ) -> DomainResult<(IntegrationKind, Option<String>)> {
        let algorithm = IntegrationAlgorithm::parse(algorithm.as_deref().unwrap_or_default())?;
        let sealed_secret = match (algorithm, secret) {
            (IntegrationAlgorithm::Hs256, Some(secret)) if secret.len() >= MIN_SECRET_BYTES => {
                Some(
                    self.secrets
                        .seal(secret.as_bytes(), &binding(org_id, name))?,
                )
            }
            (IntegrationAlgorithm::Hs256, _) => {
                return Err(DomainError::invalid(format!(
                    "HS256 needs a secret of at least {MIN_SECRET_BYTES} bytes"
                )));
            }
            (IntegrationAlgorithm::EdDsa, None) => None,
            (IntegrationAlgorithm::EdDsa, Some(_)) => {
                return Err(DomainError::invalid(
                    "EdDSA tokens are signed with coreauth's own key: give no secret",
                ));
            }
        };
        let audience = audience.unwrap_or_default();
        let audience = audience.trim();
        if audience.is_empty() || audience.len() > 200 {
            return Err(DomainError::invalid("audience must be 1-200 characters"));
        }
        let issuer = issuer
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty());
        if issuer.as_ref().is_some_and(|i| i.len() > 200) {
            return Err(DomainError::invalid(
                "issuer must be at most 200 characters",
            ));
        }
        if self.is_coreauths(audience) || issuer.as_deref().is_some_and(|i| self.is_coreauths(i)) {
            return Err(DomainError::invalid(
                "coreauth's own issuer and audience are reserved for its session tokens",
            ));
        }
        let kind = IntegrationKind::Jwt {
            algorithm,
            audience: audience.to_owned(),
            issuer,
        };
        Ok((kind, sealed_secret))
    }

    /// Whether `value` is an issuer or audience of coreauth's session tokens.
    fn is_coreauths(&self, value: &str) -> bool {
        value.eq_ignore_ascii_case(SESSION_AUDIENCE) || value == self.signer.issuer()
    }

    pub async fn list(
        &self,
        caller: &Principal,
        org_id: i64,
    ) -> DomainResult<Vec<IntegrationRecord>> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        Ok(self.store.integrations_of(org_id).await?)
    }

    pub async fn remove(
        &self,
        caller: &Principal,
        org_id: i64,
        name: &str,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let audit = NewAuditEvent::new("integration.deleted", now)
            .by(caller)
            .org(org_id)
            .subject(format!("integration:{name}"));
        if self.store.delete_integration(org_id, name, &audit).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound("integration"))
        }
    }

    /// A token for the caller to hand to the integration's portal.
    pub async fn mint(
        &self,
        caller: &Principal,
        name: &str,
        now: OffsetDateTime,
    ) -> DomainResult<Minted> {
        let integration = self
            .store
            .integration(caller.org_id, name)
            .await?
            .ok_or(DomainError::NotFound("integration"))?;
        if !caller.method.is_person() && !integration.allow_api_keys {
            return Err(DomainError::Forbidden);
        }
        let user = self
            .store
            .user_by_id(caller.user_id)
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        let mut fields = integration.custom_claims.clone();
        for field in &integration.claims {
            let value = match field.as_str() {
                "email" => json!(user.email),
                "name" => json!(format!("{} {}", user.first, user.last).trim()),
                "firstName" => json!(user.first),
                "lastName" => json!(user.last),
                "userId" => json!(user.id),
                "orgId" => json!(caller.org_id),
                "role" => json!(caller.role.as_str()),
                _ => continue,
            };
            fields.insert(field.clone(), value);
        }
        let issued = NewAuditEvent::new("integration.token_issued", now)
            .by(caller)
            .subject_user(caller.user_id)
            .subject(format!("integration:{name}"));
        let lifetime_end = now.unix_timestamp() + i64::from(integration.lifetime_secs);
        let (token, expires_at, details) = match &integration.kind {
            IntegrationKind::Jwt {
                algorithm,
                audience,
                issuer,
            } => {
                let issuer = issuer
                    .clone()
                    .unwrap_or_else(|| format!("{}/integrations/{name}", self.signer.issuer()));
                fields.insert("iss".into(), json!(issuer));
                fields.insert("sub".into(), json!(user.uuid));
                fields.insert("aud".into(), json!(audience));
                fields.insert("iat".into(), json!(now.unix_timestamp()));
                fields.insert("exp".into(), json!(lifetime_end));
                fields.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
                let claims = Value::Object(fields);
                let token = self.sign(*algorithm, &integration, &claims, now)?;
                let expires_at = lifetime_end * 1000;
                let details = json!({ "audience": audience, "expiresAt": expires_at });
                (token, expires_at, details)
            }
            IntegrationKind::Remote(endpoint) => {
                let sealed = integration
                    .sealed_secret
                    .as_deref()
                    .ok_or_else(|| DomainError::internal("remote integration without a key"))?;
                let key = self.secrets.open(sealed, &binding(caller.org_id, name))?;
                let answer = self
                    .remote
                    .fetch(endpoint, &key.plaintext, &Value::Object(fields))
                    .await;
                match answer {
                    Ok(answer) => {
                        let expires_at = answer.expires_at.unwrap_or(lifetime_end * 1000);
                        let details = json!({ "remote": true, "expiresAt": expires_at });
                        (answer.token, expires_at, details)
                    }
                    Err(failure) => {
                        let message = failure.to_string();
                        let audit = NewAuditEvent::new("integration.token_failed", now)
                            .by(caller)
                            .subject_user(caller.user_id)
                            .subject(format!("integration:{name}"))
                            .failed(failure.reason())
                            .details(json!({ "message": message }));
                        self.store.record_audit(&audit).await?;
                        return Err(DomainError::IntegrationUnavailable(message));
                    }
                }
            }
        };
        self.store.record_audit(&issued.details(details)).await?;
        Ok(Minted { token, expires_at })
    }

    /// A JWT integration's token: EdDSA with coreauth's integration key, or HS256 with the
    /// integration's own secret.
    fn sign(
        &self,
        algorithm: IntegrationAlgorithm,
        integration: &IntegrationRecord,
        claims: &Value,
        now: OffsetDateTime,
    ) -> DomainResult<String> {
        match algorithm {
            IntegrationAlgorithm::EdDsa => self.signer.sign_integration(claims, now),
            IntegrationAlgorithm::Hs256 => {
                let sealed = integration
                    .sealed_secret
                    .as_deref()
                    .ok_or_else(|| DomainError::internal("HS256 integration without a secret"))?;
                let secret = self
                    .secrets
                    .open(sealed, &binding(integration.org_id, &integration.name))?;
                let mut header = Header::new(Algorithm::HS256);
                header.typ = Some("JWT".into());
                jsonwebtoken::encode(
                    &header,
                    claims,
                    &EncodingKey::from_secret(&secret.plaintext),
                )
                .map_err(DomainError::internal)
            }
        }
    }
}
