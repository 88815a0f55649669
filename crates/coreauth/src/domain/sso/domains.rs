//! An org's claims to email domains, and their proof. A domain does nothing for an org
//! (strategy discovery, linking, accounts created by its admins) until its claim is verified:
//! by a TXT record `coreauth-verification=<token>` at the domain, looked up in the DNS, or by a
//! platform admin's approval. Any number of orgs may claim a domain; one may have it verified,
//! so an org admin cannot point another org's people at an identity provider they control.

use time::OffsetDateTime;

use super::Sso;
use crate::dns::LookupFailure;
use crate::domain::audit::NewAuditEvent;
use crate::domain::clock::to_millis;
use crate::domain::email::EmailDomain;
use crate::domain::error::{DomainError, DomainResult, SsoFailure};
use crate::domain::session::Principal;
use crate::store::{DomainClaimRecord, StoreError};

/// What precedes the token in the TXT record.
pub const TXT_PREFIX: &str = "coreauth-verification=";

/// How a verified claim was proven.
pub const BY_DNS: &str = "dns";
pub const BY_PLATFORM_ADMIN: &str = "platform-admin";

/// A new claim to `domain`, verified at once when `approved` (a platform admin's word).
pub(super) fn new_claim(
    org_id: i64,
    domain: &str,
    approved: bool,
    now: OffsetDateTime,
) -> DomainResult<DomainClaimRecord> {
    let mut token = [0u8; 16];
    getrandom::fill(&mut token).map_err(DomainError::internal)?;
    let at = to_millis(now);
    Ok(DomainClaimRecord {
        org_id,
        domain: domain.to_owned(),
        token: token.iter().map(|b| format!("{b:02x}")).collect(),
        created_at: at,
        verified_at: approved.then_some(at),
        verified_by: approved.then(|| BY_PLATFORM_ADMIN.to_owned()),
    })
}

/// The TXT record that proves the claim.
pub fn verification_record(claim: &DomainClaimRecord) -> String {
    format!("{TXT_PREFIX}{}", claim.token)
}

impl Sso {
    pub async fn domain_claims(
        &self,
        caller: &Principal,
        org_id: i64,
    ) -> DomainResult<Vec<DomainClaimRecord>> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        Ok(self.store.domain_claims(org_id).await?)
    }

    /// Whether a claim to `domain` counts at once: a platform admin makes it, or one put the
    /// domain on the org. `Conflict` when it does but another org holds the domain.
    pub(super) async fn approved(
        &self,
        caller: &Principal,
        org_id: i64,
        domain: &str,
    ) -> DomainResult<bool> {
        let org = self
            .store
            .org(org_id)
            .await?
            .ok_or(DomainError::NotFound("org"))?;
        let approved = caller.is_platform_admin || org.email_domains.iter().any(|d| d == domain);
        if approved && self.held_elsewhere(org_id, domain).await? {
            return Err(DomainError::Conflict(format!(
                "the domain {domain} belongs to another org"
            )));
        }
        Ok(approved)
    }

    /// Whether another org than `org_id` holds `domain`: set on it by a platform admin, or
    /// verified.
    async fn held_elsewhere(&self, org_id: i64, domain: &str) -> DomainResult<bool> {
        let holders = self.store.orgs_holding_domain(domain).await?;
        Ok(holders.iter().any(|&holder| holder != org_id))
    }

    async fn claim_of(&self, org_id: i64, domain: &str) -> DomainResult<DomainClaimRecord> {
        let domain = EmailDomain::parse(domain)?;
        self.store
            .domain_claims(org_id)
            .await?
            .into_iter()
            .find(|c| c.domain == domain.as_str())
            .ok_or(DomainError::NotFound("domain claim"))
    }

    /// Claims a domain for the org: pending, with the token to publish; verified at once when
    /// a platform admin claims it. Answers the claim and whether it is new (a domain the org
    /// claimed already answers its claim as it stands).
    pub async fn claim_domain(
        &self,
        caller: &Principal,
        org_id: i64,
        domain: &str,
        now: OffsetDateTime,
    ) -> DomainResult<(DomainClaimRecord, bool)> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let domain = EmailDomain::parse(domain)?;
        if let Ok(held) = self.claim_of(org_id, domain.as_str()).await {
            return Ok((held, false));
        }
        let approved = self.approved(caller, org_id, domain.as_str()).await?;
        let claim = new_claim(org_id, domain.as_str(), approved, now)?;
        let audit = NewAuditEvent::new("domain.claimed", now)
            .by(caller)
            .org(org_id)
            .subject(format!("domain:{}", claim.domain))
            .details(serde_json::json!({ "verifiedBy": claim.verified_by }));
        self.store
            .save_domain_claim(&claim, &audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => DomainError::Conflict(format!(
                    "the domain {} is verified by another org",
                    claim.domain
                )),
                other => other.into(),
            })?;
        Ok((claim, true))
    }

    /// Looks for the claim's TXT record at the domain and, when it is there, verifies the
    /// claim. Every outcome is audited; a failed lookup's detail goes to the audit trail only.
    pub async fn verify_domain(
        &self,
        caller: &Principal,
        org_id: i64,
        domain: &str,
        now: OffsetDateTime,
    ) -> DomainResult<DomainClaimRecord> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let claim = self.claim_of(org_id, domain).await?;
        if claim.verified_at.is_some() {
            return Ok(claim);
        }
        let expected = verification_record(&claim);
        let failed = |reason: &str, detail: Option<String>| {
            NewAuditEvent::new("domain.verified", now)
                .by(caller)
                .org(org_id)
                .subject(format!("domain:{}", claim.domain))
                .failed(reason)
                .details(serde_json::json!({ "method": BY_DNS, "detail": detail }))
        };
        let found = match self.dns.txt(&claim.domain).await {
            Ok(records) => records.iter().any(|r| r.trim() == expected),
            Err(LookupFailure::Unreachable(detail)) => {
                let error = SsoFailure::DnsUnreachable(detail.clone());
                self.store
                    .record_audit(&failed(error.code(), Some(detail)))
                    .await?;
                return Err(DomainError::Sso(error));
            }
            Err(LookupFailure::InvalidName) => false,
        };
        if !found {
            let error = SsoFailure::DomainNotProven;
            self.store.record_audit(&failed(error.code(), None)).await?;
            return Err(DomainError::Sso(error));
        }
        self.mark_verified(caller, claim, BY_DNS, now).await
    }

    /// A platform admin's word that the org owns the domain: its claim (made now when there is
    /// none) is verified.
    pub async fn approve_domain(
        &self,
        caller: &Principal,
        org_id: i64,
        domain: &str,
        now: OffsetDateTime,
    ) -> DomainResult<DomainClaimRecord> {
        if !caller.is_platform_admin {
            return Err(DomainError::ForbiddenBecause(
                "only a platform admin approves a domain; an org admin proves it by DNS".into(),
            ));
        }
        let claim = match self.claim_of(org_id, domain).await {
            Ok(claim) => claim,
            Err(DomainError::NotFound(_)) => {
                if self.store.org(org_id).await?.is_none() {
                    return Err(DomainError::NotFound("org"));
                }
                new_claim(org_id, EmailDomain::parse(domain)?.as_str(), false, now)?
            }
            Err(other) => return Err(other),
        };
        if claim.verified_at.is_some() {
            return Ok(claim);
        }
        self.mark_verified(caller, claim, BY_PLATFORM_ADMIN, now)
            .await
    }

    async fn mark_verified(
        &self,
        caller: &Principal,
        claim: DomainClaimRecord,
        method: &str,
        now: OffsetDateTime,
    ) -> DomainResult<DomainClaimRecord> {
        let verified = DomainClaimRecord {
            verified_at: Some(to_millis(now)),
            verified_by: Some(method.to_owned()),
            ..claim
        };
        let audit = NewAuditEvent::new("domain.verified", now)
            .by(caller)
            .org(verified.org_id)
            .subject(format!("domain:{}", verified.domain))
            .details(serde_json::json!({ "method": method }));
        // Another org's verified claim is refused by the store; a domain a platform admin set
        // on another org is checked here.
        let saved = if self
            .held_elsewhere(verified.org_id, &verified.domain)
            .await?
        {
            Err(StoreError::Conflict(String::new()))
        } else {
            self.store.save_domain_claim(&verified, &audit).await
        };
        match saved {
            Ok(()) => Ok(verified),
            Err(StoreError::Conflict(_)) => {
                let refused = NewAuditEvent::new("domain.verified", now)
                    .by(caller)
                    .org(verified.org_id)
                    .subject(format!("domain:{}", verified.domain))
                    .failed("conflict")
                    .details(serde_json::json!({ "method": method }));
                self.store.record_audit(&refused).await?;
                Err(DomainError::Conflict(format!(
                    "the domain {} is verified by another org",
                    verified.domain
                )))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Withdraws the org's claim: the domain no longer signs in through its connections.
    pub async fn withdraw_domain(
        &self,
        caller: &Principal,
        org_id: i64,
        domain: &str,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let claim = self.claim_of(org_id, domain).await?;
        let audit = NewAuditEvent::new("domain.withdrawn", now)
            .by(caller)
            .org(org_id)
            .subject(format!("domain:{}", claim.domain));
        if self
            .store
            .delete_domain_claim(org_id, &claim.domain, &audit)
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::NotFound("domain claim"))
        }
    }
}
