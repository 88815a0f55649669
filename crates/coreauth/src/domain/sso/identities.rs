//! Links between accounts and identities at an org's providers, as a platform admin manages
//! them: the other way an existing account gets linked (besides its owner proving it from a
//! password session), and the way a wrong link is undone.

use time::OffsetDateTime;

use super::Sso;
use crate::domain::audit::NewAuditEvent;
use crate::domain::clock::to_millis;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::session::Principal;
use crate::store::{SsoIdentityRecord, StoreError};

/// The longest subject a provider sends that we keep (Entra's and ADFS's are far shorter).
const MAX_SUBJECT: usize = 255;

fn platform_admin(caller: &Principal) -> DomainResult<()> {
    if caller.is_platform_admin {
        Ok(())
    } else {
        Err(DomainError::ForbiddenBecause(
            "only a platform admin links accounts to identities; an account's owner links it \
             from a session opened with its password (POST /user/authenticate/sso/link)"
                .into(),
        ))
    }
}

fn subject_of(subject: &str) -> DomainResult<&str> {
    let subject = subject.trim();
    if subject.is_empty() || subject.len() > MAX_SUBJECT || subject.chars().any(char::is_control) {
        return Err(DomainError::invalid(format!(
            "subject must be 1-{MAX_SUBJECT} characters, as the provider sends it in `sub`"
        )));
    }
    Ok(subject)
}

impl Sso {
    pub async fn identities_of(
        &self,
        caller: &Principal,
        user_id: i64,
    ) -> DomainResult<Vec<SsoIdentityRecord>> {
        platform_admin(caller)?;
        if self.store.user_by_id(user_id).await?.is_none() {
            return Err(DomainError::NotFound("user"));
        }
        Ok(self.store.sso_identities_of(user_id).await?)
    }

    /// Links the user to `subject` at a connection's provider: the user must be an active
    /// member of the connection's org.
    pub async fn link_identity(
        &self,
        caller: &Principal,
        user_id: i64,
        connection_id: i64,
        subject: &str,
        now: OffsetDateTime,
    ) -> DomainResult<SsoIdentityRecord> {
        platform_admin(caller)?;
        let subject = subject_of(subject)?;
        let connection = self
            .store
            .sso_connection(connection_id)
            .await?
            .ok_or(DomainError::NotFound("SSO connection"))?;
        if self.store.user_by_id(user_id).await?.is_none() {
            return Err(DomainError::NotFound("user"));
        }
        match self.store.membership(user_id, connection.org_id).await? {
            Some(m) if m.is_active => {}
            _ => {
                return Err(DomainError::Conflict(
                    "the user is not an active member of the connection's org".into(),
                ));
            }
        }
        let audit = NewAuditEvent::new("sso.linked", now)
            .by(caller)
            .org(connection.org_id)
            .subject_user(user_id)
            .details(serde_json::json!({
                "connectionId": connection.id,
                "issuer": connection.issuer,
                "subject": subject,
                "via": "platform-admin",
            }));
        let identity = (connection.issuer.as_str(), subject);
        self.store
            .link_sso_identity(connection.org_id, identity, user_id, to_millis(now), &audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(message) => DomainError::Conflict(message),
                other => other.into(),
            })?;
        Ok(SsoIdentityRecord {
            org_id: connection.org_id,
            issuer: connection.issuer,
            subject: subject.to_owned(),
            user_id,
            created_at: to_millis(now),
        })
    }

    /// Removes the user's link to `subject` at a connection's provider.
    pub async fn unlink_identity(
        &self,
        caller: &Principal,
        user_id: i64,
        connection_id: i64,
        subject: &str,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        platform_admin(caller)?;
        let subject = subject_of(subject)?;
        let connection = self
            .store
            .sso_connection(connection_id)
            .await?
            .ok_or(DomainError::NotFound("SSO connection"))?;
        let audit = NewAuditEvent::new("sso.unlinked", now)
            .by(caller)
            .org(connection.org_id)
            .subject_user(user_id)
            .details(serde_json::json!({
                "connectionId": connection.id,
                "issuer": connection.issuer,
                "subject": subject,
            }));
        let identity = (connection.issuer.as_str(), subject);
        if self
            .store
            .unlink_sso_identity(user_id, connection.org_id, identity, &audit)
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::NotFound("linked identity"))
        }
    }
}
