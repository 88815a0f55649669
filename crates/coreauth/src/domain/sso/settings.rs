//! An org's SSO settings: who may set them, which email domains count (verified ones only:
//! an org admin's additions wait for a platform admin), and where a sign-in may return to.

use time::OffsetDateTime;
use url::Url;

use super::{Sso, sealed_binding};
use crate::domain::audit::NewAuditEvent;
use crate::domain::clock::to_millis;
use crate::domain::email::EmailDomain;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::session::Principal;
use crate::store::SsoConfigRecord;

/// SSO settings as an admin sends them.
#[derive(Debug)]
pub struct SsoRequest {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub email_domains: Vec<String>,
    pub allow_jit: bool,
    pub allow_password: bool,
    pub redirect_allow_list: Vec<String>,
}

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
    pub async fn configure(
        &self,
        caller: &Principal,
        org_id: i64,
        request: SsoRequest,
        now: OffsetDateTime,
    ) -> DomainResult<SsoConfigRecord> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
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
        let (email_domains, pending_domains) = self.vet_domains(caller, org_id, domains).await?;
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
        let record = SsoConfigRecord {
            org_id,
            issuer: issuer.as_str().trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            sealed_client_secret: self
                .secrets
                .seal(request.client_secret.as_bytes(), &sealed_binding(org_id))?,
            email_domains,
            pending_domains,
            allow_jit: request.allow_jit,
            allow_password: request.allow_password,
            redirect_allow_list: request.redirect_allow_list,
        };
        let audit = NewAuditEvent::new("sso.configured", now)
            .by(caller)
            .org(org_id)
            .details(serde_json::json!({
                "issuer": record.issuer,
                "clientId": record.client_id,
                "emailDomains": record.email_domains,
                "pendingDomains": record.pending_domains,
                "allowJit": record.allow_jit,
                "allowPassword": record.allow_password,
            }));
        self.store
            .save_sso_config(&record, to_millis(now), &audit)
            .await?;
        Ok(record)
    }

    /// Splits the domains asked for into those that count at once and those held pending. A
    /// domain counts when a platform admin sets it, when a platform admin put it on the org, or
    /// when it was verified for this org before; one an org admin adds otherwise waits, so an
    /// org admin cannot point another org's addresses at an identity provider they control. A
    /// domain another org holds is refused.
    async fn vet_domains(
        &self,
        caller: &Principal,
        org_id: i64,
        domains: Vec<String>,
    ) -> DomainResult<(Vec<String>, Vec<String>)> {
        if self.store.org(org_id).await?.is_none() {
            return Err(DomainError::NotFound("org"));
        }
        let (mut verified, mut pending) = (Vec::new(), Vec::new());
        for domain in domains {
            // The org's own domains and its verified SSO domains, as for account creation.
            let holders = self.store.orgs_holding_domain(&domain).await?;
            if holders.iter().any(|&holder| holder != org_id) {
                return Err(DomainError::Conflict(format!(
                    "the domain {domain} belongs to another org"
                )));
            }
            let approved = caller.is_platform_admin || holders.contains(&org_id);
            if approved {
                verified.push(domain);
            } else {
                pending.push(domain);
            }
        }
        Ok((verified, pending))
    }

    pub async fn config(&self, caller: &Principal, org_id: i64) -> DomainResult<SsoConfigRecord> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        self.store
            .sso_config(org_id)
            .await?
            .ok_or(DomainError::NotFound("SSO configuration"))
    }

    pub async fn remove(
        &self,
        caller: &Principal,
        org_id: i64,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let audit = NewAuditEvent::new("sso.removed", now)
            .by(caller)
            .org(org_id);
        if self.store.delete_sso_config(org_id, &audit).await? {
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
