//! An org's SSO connections: who may set them, which email domains they serve (each counts
//! only once the org's claim to it is verified: an org admin's additions stay pending until
//! proven by DNS or approved by a platform admin), and where a sign-in may return to.

use time::OffsetDateTime;
use url::Url;

use super::claims::{MappingRequest, Preset};
use super::domains::new_claim;
use super::saml::SamlRequest;
use super::{Sso, sealed_binding};
use crate::domain::audit::NewAuditEvent;
use crate::domain::clock::to_millis;
use crate::domain::email::EmailDomain;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::org::Name;
use crate::domain::session::Principal;
use crate::store::{DomainClaimRecord, SsoConnectionRecord};

/// A connection as an admin sends it.
#[derive(Debug)]
pub struct SsoRequest {
    pub name: String,
    pub preset: String,
    pub mapping: MappingRequest,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub email_domains: Vec<String>,
    pub allow_jit: bool,
    pub allow_password: bool,
    pub redirect_allow_list: Vec<String>,
    /// Set for a SAML connection, whose `issuer`, `client_id` and `client_secret` stay empty.
    pub saml: Option<SamlRequest>,
}

/// A connection, with which of its domains count.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    pub connection: SsoConnectionRecord,
    pub verified_domains: Vec<String>,
    pub pending_domains: Vec<String>,
}

impl ConnectionView {
    /// The connection, with its domains split by the org's claims to them (`held`).
    fn of(connection: SsoConnectionRecord, held: &[DomainClaimRecord]) -> Self {
        let (verified_domains, pending_domains) =
            connection.email_domains.iter().cloned().partition(|d| {
                held.iter()
                    .any(|c| &c.domain == d && c.verified_at.is_some())
            });
        Self {
            connection,
            verified_domains,
            pending_domains,
        }
    }
}

/// The name `PUT /admin/orgs/{orgId}/sso` gives the connection it sets.
pub const DEFAULT_CONNECTION: &str = "default";

const MAX_ALLOW_LIST: usize = 50;

/// How long a `returnTo` may be: it is stored with the login in flight.
const MAX_RETURN_TO: usize = 2048;

/// Whether `return_to` is on the allow-list: same scheme, host and port as an entry, and a path
/// under the entry's path, whole segments only (`/cb` admits `/cb/x`, not `/cbevil`). A target
/// that is long, holds a control character or a fragment (the token goes there) is refused.
pub fn allowed_return(return_to: &str, allow_list: &[String]) -> bool {
    if return_to.len() > MAX_RETURN_TO
        || return_to.chars().any(char::is_control)
        || return_to.contains('#')
    {
        return false;
    }
    let Ok(target) = Url::parse(return_to) else {
        return false;
    };
    allow_list
        .iter()
        .filter_map(|e| Url::parse(e).ok())
        .any(|entry| {
            entry.scheme() == target.scheme()
                && entry.host_str() == target.host_str()
                && entry.port_or_known_default() == target.port_or_known_default()
                && under_path(target.path(), entry.path())
                && target.username().is_empty()
                && target.password().is_none()
        })
}

/// Whether `path` is `base` or below it by whole segments.
fn under_path(path: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    match path.strip_prefix(base) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl Sso {
    /// Creates a connection (`connection_id` `None`) or replaces one of the org's.
    pub async fn save_connection(
        &self,
        caller: &Principal,
        org_id: i64,
        connection_id: Option<i64>,
        mut request: SsoRequest,
        now: OffsetDateTime,
    ) -> DomainResult<ConnectionView> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let existing = match connection_id {
            Some(id) => Some(self.connection_of(org_id, Some(id)).await?),
            None => None,
        };
        let name = Name::parse("name", &request.name, false)?;
        if name.as_str().len() > 100 {
            return Err(DomainError::invalid("name must be at most 100 characters"));
        }
        let preset = Preset::parse(&request.preset)?;
        let mapping = std::mem::take(&mut request.mapping);
        let claims = if request.saml.is_some() {
            mapping.apply_to_saml(preset)?
        } else {
            mapping.apply_to(preset)?
        };
        let (issuer, client_id, sealed_client_secret, saml) = match request.saml.take() {
            Some(saml) => {
                if !request.issuer.is_empty()
                    || !request.client_id.is_empty()
                    || !request.client_secret.is_empty()
                {
                    return Err(DomainError::invalid(
                        "a SAML connection takes no issuer, clientId or clientSecret: the IdP is in saml",
                    ));
                }
                let kept = existing.as_ref().and_then(|c| c.saml.as_ref());
                let (entity_id, settings) = self.saml_settings(saml, preset, org_id, kept).await?;
                (entity_id, String::new(), String::new(), Some(settings))
            }
            None => {
                let (issuer, client_id) = self.oidc_provider(&request).await?;
                let sealed = self
                    .secrets
                    .seal(request.client_secret.as_bytes(), &sealed_binding(org_id))?;
                (issuer, client_id, sealed, None)
            }
        };
        let mut domains = request
            .email_domains
            .iter()
            .map(|d| EmailDomain::parse(d).map(|d| d.as_str().to_owned()))
            .collect::<DomainResult<Vec<_>>>()?;
        domains.sort();
        domains.dedup();
        if domains.is_empty() || domains.len() > 100 {
            return Err(DomainError::invalid("give 1-100 email domains"));
        }
        if request.redirect_allow_list.len() > MAX_ALLOW_LIST
            || request
                .redirect_allow_list
                .iter()
                .any(|e| !Url::parse(e).is_ok_and(|u| matches!(u.scheme(), "https" | "http")))
        {
            return Err(DomainError::invalid(format!(
                "redirectAllowList holds at most {MAX_ALLOW_LIST} absolute http(s) URLs"
            )));
        }
        let claims_to_add = self.vet_domains(caller, org_id, &domains, now).await?;
        let record = SsoConnectionRecord {
            id: existing.map_or(0, |c| c.id),
            org_id,
            name: name.as_str().to_owned(),
            preset: preset.as_str().to_owned(),
            issuer,
            client_id,
            sealed_client_secret,
            claims,
            email_domains: domains,
            allow_jit: request.allow_jit,
            allow_password: request.allow_password,
            redirect_allow_list: request.redirect_allow_list,
            saml,
        };
        let audit = NewAuditEvent::new("sso.configured", now)
            .by(caller)
            .org(org_id)
            .details(serde_json::json!({
                "connectionId": connection_id,
                "name": record.name,
                "preset": record.preset,
                "issuer": record.issuer,
                "clientId": record.client_id,
                "emailDomains": record.email_domains,
                "claims": record.claims,
                "allowJit": record.allow_jit,
                "allowPassword": record.allow_password,
                "protocol": if record.saml.is_some() { "saml" } else { "oidc" },
                "saml": record.saml.as_ref().map(|s| serde_json::json!({
                    "ssoUrl": s.sso_url,
                    "certificates": s.certificates.len(),
                    "wantAssertionsSigned": s.want_assertions_signed,
                    "wantResponseSigned": s.want_response_signed,
                    "clockSkewSeconds": s.clock_skew_seconds,
                })),
            }));
        let id = self
            .store
            .save_sso_connection(&record, &claims_to_add, to_millis(now), &audit)
            .await?;
        let saved = SsoConnectionRecord { id, ..record };
        self.view(saved).await
    }

    /// An OpenID connection's issuer (checked against the network policy) and client id.
    async fn oidc_provider(&self, request: &SsoRequest) -> DomainResult<(String, String)> {
        let issuer = Url::parse(request.issuer.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
            .ok_or_else(|| DomainError::invalid("issuer must be an http(s) URL"))?;
        self.providers
            .policy()
            .check_issuer(&issuer)
            .await
            .map_err(DomainError::Invalid)?;
        let client_id = request.client_id.trim();
        if client_id.is_empty() || client_id.len() > 255 {
            return Err(DomainError::invalid("clientId must be 1-255 characters"));
        }
        if request.client_secret.is_empty() || request.client_secret.len() > 1024 {
            return Err(DomainError::invalid("clientSecret must be 1-1024 bytes"));
        }
        Ok((
            issuer.as_str().trim_end_matches('/').to_owned(),
            client_id.to_owned(),
        ))
    }

    /// `PUT /admin/orgs/{orgId}/sso`: sets the org's connection named `default`.
    pub async fn configure(
        &self,
        caller: &Principal,
        org_id: i64,
        request: SsoRequest,
        now: OffsetDateTime,
    ) -> DomainResult<ConnectionView> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let existing = self
            .store
            .sso_connections(org_id)
            .await?
            .into_iter()
            .find(|c| c.name == DEFAULT_CONNECTION)
            .map(|c| c.id);
        self.save_connection(caller, org_id, existing, request, now)
            .await
    }

    /// The claims the org must be given for these domains: none for a domain it has verified
    /// already; a verified one when a platform admin sets it or put it on the org; a pending
    /// one otherwise (when it has none), so an org admin cannot point another org's addresses at an identity
    /// provider they control. A platform admin setting a domain another org verified is
    /// refused.
    async fn vet_domains(
        &self,
        caller: &Principal,
        org_id: i64,
        domains: &[String],
        now: OffsetDateTime,
    ) -> DomainResult<Vec<DomainClaimRecord>> {
        let held = self.store.domain_claims(org_id).await?;
        let mut claims = Vec::new();
        for domain in domains {
            let claim = held.iter().find(|c| &c.domain == domain);
            if claim.is_some_and(|c| c.verified_at.is_some()) {
                continue;
            }
            let approved = self.approved(caller, org_id, domain).await?;
            if claim.is_none() || approved {
                // A pending claim is verified by the upsert of a verified one.
                claims.push(new_claim(org_id, domain, approved, now)?);
            }
        }
        Ok(claims)
    }

    /// Which of the connection's domains count.
    async fn view(&self, connection: SsoConnectionRecord) -> DomainResult<ConnectionView> {
        let held = self.store.domain_claims(connection.org_id).await?;
        Ok(ConnectionView::of(connection, &held))
    }

    pub async fn connections(
        &self,
        caller: &Principal,
        org_id: i64,
    ) -> DomainResult<Vec<ConnectionView>> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        // The org's claims once, for all its connections.
        let held = self.store.domain_claims(org_id).await?;
        let connections = self.store.sso_connections(org_id).await?;
        Ok(connections
            .into_iter()
            .map(|connection| ConnectionView::of(connection, &held))
            .collect())
    }

    /// One of the org's connections; `None` for the one `PUT /admin/orgs/{orgId}/sso` set
    /// (or, without it, the org's first).
    pub async fn connection(
        &self,
        caller: &Principal,
        org_id: i64,
        connection_id: Option<i64>,
    ) -> DomainResult<ConnectionView> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let connection = match connection_id {
            Some(id) => self.connection_of(org_id, Some(id)).await?,
            None => {
                let all = self.store.sso_connections(org_id).await?;
                let default = all.iter().position(|c| c.name == DEFAULT_CONNECTION);
                all.into_iter()
                    .nth(default.unwrap_or(0))
                    .ok_or(DomainError::NotFound("SSO configuration"))?
            }
        };
        self.view(connection).await
    }

    /// Removes one of the org's connections, or all of them (`None`): its users sign in with
    /// passwords again. Its claims to domains stay.
    pub async fn remove(
        &self,
        caller: &Principal,
        org_id: i64,
        connection_id: Option<i64>,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let audit = NewAuditEvent::new("sso.removed", now)
            .by(caller)
            .org(org_id)
            .details(serde_json::json!({ "connectionId": connection_id }));
        if self
            .store
            .delete_sso_connections(org_id, connection_id, &audit)
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::NotFound("SSO configuration"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::allowed_return;

    #[test]
    fn return_targets_must_match_an_allow_list_entry() {
        let list = vec![
            "https://app.acme.example/".to_owned(),
            "http://localhost:3000/cb".to_owned(),
        ];
        assert!(allowed_return(
            "https://app.acme.example/after-login",
            &list
        ));
        assert!(allowed_return("http://localhost:3000/cb?x=1", &list));
        assert!(!allowed_return("https://evil.example/", &list));
        assert!(!allowed_return(
            "https://app.acme.example.evil.example/",
            &list
        ));
        assert!(!allowed_return("http://app.acme.example/", &list), "scheme");
        assert!(
            !allowed_return("https://app.acme.example:444/", &list),
            "port"
        );
        assert!(
            !allowed_return("http://localhost:3000/other", &list),
            "path"
        );
        assert!(
            !allowed_return("https://user@app.acme.example/", &list),
            "userinfo"
        );
        assert!(!allowed_return("//evil.example", &list));
        assert!(!allowed_return("javascript:alert(1)", &list));
        assert!(
            !allowed_return("http://localhost:3000/cbevil", &list),
            "segments"
        );
        assert!(allowed_return("http://localhost:3000/cb/next", &list));
        assert!(
            !allowed_return("http://localhost:3000/cb#x", &list),
            "fragment"
        );
        assert!(
            !allowed_return("http://localhost:3000/cb\r\nX-Evil: 1", &list),
            "control characters"
        );
        let long = format!("https://app.acme.example/{}", "a".repeat(3000));
        assert!(!allowed_return(&long, &list), "length");
    }
}
