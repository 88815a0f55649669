//! Which account a provider's verified identity signs in as: the one linked to it, the one
//! being linked, or a new one; never an existing account on the provider's word alone.

use time::OffsetDateTime;

use super::{Sso, failure};
use crate::domain::audit::NewAuditEvent;
use crate::domain::clock::to_millis;
use crate::domain::email::Email;
use crate::domain::error::{DomainResult, SsoFailure};
use crate::domain::org::{Name, Role};
use crate::domain::origin::RequestOrigin;
use crate::domain::user::{NewUser, UserRecord};
use crate::store::{SsoConfigRecord, SsoLoginRecord, StoreError};

impl Sso {
    /// The account behind the provider's identity, as an active member of the org: the one
    /// linked to it; or, in a sign-on started to link, the caller's account when the asserted
    /// email is its own; or a new account when none has this email and the org allows
    /// just-in-time provisioning. An existing account that is not linked is refused, whatever
    /// the provider asserts: an org admin controls their provider and could assert anyone.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn account_for(
        &self,
        config: &SsoConfigRecord,
        login: &SsoLoginRecord,
        identity: (&str, &str),
        email: &Email,
        (given, family): (Option<String>, Option<String>),
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<(UserRecord, Role)> {
        let org_id = config.org_id;
        let (issuer, subject) = identity;
        if let Some(user_id) = self.store.sso_identity(org_id, issuer, subject).await? {
            if login.link_user_id.is_some_and(|linking| linking != user_id) {
                return Err(failure(SsoFailure::LinkMismatch));
            }
            let user = self.store.user_by_id(user_id).await?;
            return self.active_member(user, org_id).await;
        }
        if let Some(linking) = login.link_user_id {
            let user = self.store.user_by_id(linking).await?;
            let same_email = user
                .as_ref()
                .is_some_and(|u| Email::parse(&u.email).is_ok_and(|e| e.key() == email.key()));
            if !same_email {
                return Err(failure(SsoFailure::LinkMismatch));
            }
            let (user, role) = self.active_member(user, org_id).await?;
            let audit = NewAuditEvent::new("sso.linked", now)
                .from(origin)
                .org(org_id)
                .subject_user(user.id)
                .details(serde_json::json!({ "issuer": issuer, "email": email.as_str() }));
            self.store
                .link_sso_identity(org_id, identity, user.id, to_millis(now), &audit)
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(_) => failure(SsoFailure::LinkMismatch),
                    other => other.into(),
                })?;
            return Ok((user, role));
        }
        if self.store.user_by_email(&email.key()).await?.is_some() {
            return Err(failure(SsoFailure::NotLinked));
        }
        if !config.allow_jit {
            return Err(failure(SsoFailure::NoAccount));
        }
        let first = Name::parse("first", given.as_deref().unwrap_or(""), true)?;
        let last = Name::parse("last", family.as_deref().unwrap_or(""), true)?;
        let audit = NewAuditEvent::new("user.created", now)
            .from(origin)
            .org(org_id)
            .details(serde_json::json!({ "email": email.as_str(), "via": "sso" }));
        let user = self
            .store
            .create_user(
                NewUser {
                    membership: Some((org_id, Role::Member)),
                    sso_identity: Some((issuer.to_owned(), subject.to_owned())),
                    ..NewUser::person(email, first, last, to_millis(now))
                },
                &audit,
            )
            .await?;
        Ok((user, Role::Member))
    }

    /// The user's role in the org, when both the user and the membership are active.
    async fn active_member(
        &self,
        user: Option<UserRecord>,
        org_id: i64,
    ) -> DomainResult<(UserRecord, Role)> {
        let Some(user) = user.filter(|u| u.is_active) else {
            return Err(failure(SsoFailure::NoAccount));
        };
        match self.store.membership(user.id, org_id).await? {
            Some(m) if m.is_active => Ok((user, m.role)),
            _ => Err(failure(SsoFailure::NoAccount)),
        }
    }
}
